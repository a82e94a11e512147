"""jaxdqn against PureJaxRL's DQN on PureJaxRL's own benchmark, side by side, alternating.

The work is PureJaxRL's default DQN config: CartPole-v1, 10 environments, 500,000 steps per seed, 49,000
updates of batch 128, an MLP 120-84, a target copy every 500 steps. jaxdqn's `cartpole` preset with
`--num-envs 10` is the same work (it was written to match). Each pair runs, in its own process each:

- `purejaxrl`: PureJaxRL's unmodified `dqn.py` through the anchors' runner (`run_purejaxrl_dqn.py`, which
  compiles, runs, and runs again); its `run_s` is the first run, its process wall leaves out the second run;
- `purejaxrl-1thread`: the same runner with XLA's CPU thread pools of one thread, as `--cpu-threads 1` sizes
  jaxdqn's (`PJRT_NPROC=1`; the runner and `dqn.py` are unchanged; until 2026-11-29 a bootstrap held the process
  to one core while JAX's backend started, as jaxdqn then did);
- `jaxdqn-envpool`: `jaxdqn train --preset cartpole --num-envs 10` (EnvPool's XLA step), and
  `jaxdqn-envpool-overlap` the same with `--env-overlap` (EnvPool steps while the agent learns; XLA's CPU pool
  then has one thread by default, and EnvPool's programs miss the compilation cache across processes,
  `jaxdqn.compile_cache`, so it compiles again); `jaxdqn-envpool-overlap-allthreads` with a
  thread per core, `--cpu-threads N` (`-1thread` until 2026-11-29, when one thread became the default);
- `jaxdqn-jax-cold` / `jaxdqn-jax-warm`: the same on `--env-id gymnax/CartPole-v1`, first with an empty
  compilation cache, then again with the cache the cold run filled; `jaxdqn-jax-warm-threefry-loop` as
  `jaxdqn-jax-warm` with `JAXDQN_CPU_THREEFRY=loop` (JAX's own random-number hash, a loop, in the training loop
  instead of jaxdqn's straight-line one; its programs differ, so it keeps a cache of its own over the pairs, as
  `jaxdqn-jax-warm-1env` does);
  `jaxdqn-jax-warm-1thread` as `jaxdqn-jax-warm` with `--cpu-threads 1` (since 2026-11-29 the default for one
  agent of a JAX environment), `jaxdqn-jax-warm-allthreads` with a thread per core, and
  `jaxdqn-jax-warm-1thread-threefry-loop` with both; `jaxdqn-jax-warm-1env` the `cartpole` preset as it is, one
  environment (CleanRL's `dqn_jax.py` setting, not PureJaxRL's work: its whole process is the figure to hold
  against CleanRL's). A warm case whose cache no run has filled yet (run
  without its cold case before it, or with variables of its own) runs once untimed first. (Until 2026-11-29 the
  loop was the default and the cases were `-threefry-unrolled`, with `JAXDQN_CPU_THREEFRY=unrolled`.)

jaxdqn's `run_s` is its summary's wall time less its compile time (the chunks, logging and checkpoint
writes; not the final evaluation, which PureJaxRL does not do). Since 694ea8a (2026-11-29) its compile time includes
building the environment pool, as PureJaxRL's runner makes its environment and starts JAX's backend before it
times anything: a JAX environment's pool compiles (or loads) its reset there, the process's first program, 0.1-0.2 s
that were counted in `run_s` before. The process wall is the whole command
(imports, validation, compile, run, evaluation, files). Returns: PureJaxRL's mean episode return over its
last 1,000 updates (its own metric), jaxdqn's greedy evaluation (10 episodes) and 100-episode training mean.

PureJaxRL is not part of jaxdqn: give its checkout (the folder holding `run_purejaxrl_dqn.py` and
`purejaxrl/dqn.py`) with `--purejaxrl` or `$PUREJAXRL_ANCHORS`, and the interpreter of a virtual environment
that has its dependencies (jax, flax, optax, chex, gymnax 0.0.9, flashbax, six) with `--purejaxrl-python`.

    python benchmarks/peers.py --pairs 3 [--num-seeds 1] [--cases purejaxrl jaxdqn-jax-warm] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from jaxdqn.bench.machine import machine_facts, write_result
from jaxdqn.bench.runs import jaxdqn_command

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ANCHORS = REPO.parent / "shared" / "anchors"
JAXDQN_CASES = {
    "jaxdqn-envpool": ["--preset", "cartpole", "--num-envs", "10"],
    "jaxdqn-envpool-overlap": ["--preset", "cartpole", "--num-envs", "10", "--env-overlap"],
    "jaxdqn-envpool-overlap-allthreads": ["--preset", "cartpole", "--num-envs", "10", "--env-overlap",
                                          "--cpu-threads", str(len(os.sched_getaffinity(0)))],
    "jaxdqn-jax-cold": ["--preset", "cartpole", "--num-envs", "10", "--env-id", "gymnax/CartPole-v1"],
    "jaxdqn-jax-warm": ["--preset", "cartpole", "--num-envs", "10", "--env-id", "gymnax/CartPole-v1"],
    "jaxdqn-jax-warm-threefry-loop": ["--preset", "cartpole", "--num-envs", "10", "--env-id", "gymnax/CartPole-v1"],
    "jaxdqn-jax-warm-1thread": ["--preset", "cartpole", "--num-envs", "10", "--env-id", "gymnax/CartPole-v1",
                                "--cpu-threads", "1"],
    "jaxdqn-jax-warm-allthreads": ["--preset", "cartpole", "--num-envs", "10", "--env-id", "gymnax/CartPole-v1",
                                   "--cpu-threads", str(len(os.sched_getaffinity(0)))],
    "jaxdqn-jax-warm-1thread-threefry-loop": ["--preset", "cartpole", "--num-envs", "10", "--env-id",
                                              "gymnax/CartPole-v1", "--cpu-threads", "1"],
    "jaxdqn-jax-warm-1env": ["--preset", "cartpole", "--env-id", "gymnax/CartPole-v1"],
}
CASE_ENVIRONMENT = {case: {"JAXDQN_CPU_THREEFRY": "loop"} for case in JAXDQN_CASES if case.endswith("-threefry-loop")}
"""Environment variables of a case: `-threefry-loop` keeps JAX's random-number hash, a loop, in the training loop
(`jaxdqn.core.threefry`)."""
OWN_CACHE_CASES = {*CASE_ENVIRONMENT, "jaxdqn-jax-warm-1env"}
"""Cases whose programs are not the cold case's (variables of their own, another shape): each keeps a compile cache
of its own over the pairs."""
PUREJAXRL_CASES = ["purejaxrl", "purejaxrl-1thread"]
CASES = [*PUREJAXRL_CASES, *JAXDQN_CASES]
ONE_THREAD_ENVIRONMENT = {"PJRT_NPROC": "1"}
"""Runs a process with XLA's CPU thread pools of one thread, as `jaxdqn.run.distributed.limit_cpu_threads(1)`
sizes them (PureJaxRL's environment has no jaxdqn)."""


def run_purejaxrl(anchors: Path, python: str, num_seeds: int, one_thread: bool = False) -> dict:
    """One PureJaxRL process (`one_thread`: XLA's CPU pool sized for one core): compile, run and return figures
    parsed from the runner's lines."""
    start = time.perf_counter()
    threads = ONE_THREAD_ENVIRONMENT if one_thread else {}
    result = subprocess.run([python, str(anchors / "run_purejaxrl_dqn.py"), str(num_seeds)],
                            capture_output=True, text=True, check=True,
                            env={**os.environ, **threads, "PUREJAXRL_DIR": str(anchors / "purejaxrl")})
    wall = time.perf_counter() - start
    line = next(line for line in result.stdout.splitlines() if line.startswith("purejaxrl_dqn "))
    fields = dict(re.findall(r"(\w+)=(\[[^\]]*\]|\S+)", line))
    run2 = float(fields["run2_s"])
    return {"command": f"{'PJRT_NPROC=1 ' if one_thread else ''}{Path(python).name} run_purejaxrl_dqn.py "
                       f"{num_seeds}",
            "compile_s": float(fields["compile_s"]), "run_s": float(fields["run1_s"]), "second_run_s": run2,
            "process_wall_s": wall - run2, "final_return": json.loads(fields["final_return_last1000updates_per_seed"])}


def run_jaxdqn(args: list[str], num_seeds: int, workdir: Path, cache: Path, environment: dict | None = None) -> dict:
    """One `jaxdqn train` process with its compilation cache in `cache` (and the variables `environment` set);
    figures from its summary.json."""
    out = workdir / "run"
    command = [jaxdqn_command(), "train", *args, "--num-seeds", str(num_seeds), "--out", str(out), "--overwrite"]
    start = time.perf_counter()
    subprocess.run(command, capture_output=True, text=True, check=True,
                   env={**os.environ, "JAXDQN_COMPILE_CACHE": str(cache), **(environment or {})})
    wall = time.perf_counter() - start
    summary = json.loads((out / "summary.json").read_text())
    variables = [f"{name}={value}" for name, value in (environment or {}).items()]
    return {"command": " ".join([*variables, "jaxdqn", *command[1:-3]]), "compile_s": summary["compile_seconds"],
            "run_s": summary["wall_seconds"] - summary["compile_seconds"], "process_wall_s": wall,
            "final_return": summary["eval_return_mean"], "return_mean_100": summary["return_mean_100"]}


def median(values: list[float]) -> float:
    """The median (the mean of the middle two for an even count)."""
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def main() -> None:
    """Run the pairs, print each process's figures and the medians, and write the JSON result file."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--num-seeds", type=int, default=1)
    parser.add_argument("--cases", nargs="*", choices=CASES, default=CASES)
    parser.add_argument("--purejaxrl", default=os.environ.get("PUREJAXRL_ANCHORS", str(DEFAULT_ANCHORS)))
    parser.add_argument("--purejaxrl-python", default=sys.executable)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    args = parser.parse_args()
    anchors = Path(args.purejaxrl)
    if set(PUREJAXRL_CASES) & set(args.cases) and not (anchors / "run_purejaxrl_dqn.py").exists():
        parser.error(f"--purejaxrl: no run_purejaxrl_dqn.py in {anchors}")
    runs: dict[str, list[dict]] = {case: [] for case in args.cases}
    filled = set()  # the compile caches a run has filled
    with tempfile.TemporaryDirectory() as tmp:
        for pair in range(args.pairs):
            cache = Path(tmp) / f"cache-{pair}"  # cold for this pair's first JAX-backend run, warm for the next
            for case in args.cases:
                if case in PUREJAXRL_CASES:
                    figures = run_purejaxrl(anchors, args.purejaxrl_python, args.num_seeds,
                                            one_thread=case == "purejaxrl-1thread")
                else:
                    own_cache = Path(tmp) / f"cache-{case}" if case in OWN_CACHE_CASES else cache
                    if "-warm" in case and own_cache not in filled:  # one untimed run fills it first
                        run_jaxdqn(JAXDQN_CASES[case], args.num_seeds, Path(tmp), own_cache,
                                   CASE_ENVIRONMENT.get(case))
                    figures = run_jaxdqn(JAXDQN_CASES[case], args.num_seeds, Path(tmp), own_cache,
                                         CASE_ENVIRONMENT.get(case))
                    filled.add(own_cache)
                runs[case].append(figures)
                print(f"pair {pair} {case:>16}: compile {figures['compile_s']:5.2f} s, run {figures['run_s']:6.2f} s, "
                      f"process {figures['process_wall_s']:6.2f} s, return {figures['final_return']}", flush=True)
    medians = {case: {key: median([r[key] for r in found]) for key in ("compile_s", "run_s", "process_wall_s")}
               for case, found in runs.items() if found}
    ratios = {}
    if "purejaxrl" in medians:
        base = medians["purejaxrl"]
        for case in CASES[1:]:
            if case in medians:
                ratios[case] = {key: medians[case][key] / base[key] for key in ("run_s", "process_wall_s")}
                print(f"{case}: run {ratios[case]['run_s']:.2f}x, process {ratios[case]['process_wall_s']:.2f}x "
                      "PureJaxRL's (medians)")
    record = {"benchmark": "peers", "script": "python benchmarks/peers.py " + " ".join(sys.argv[1:]),
              "machine": machine_facts(), "num_seeds": args.num_seeds, "runs": runs, "medians": medians,
              "ratios_to_purejaxrl": ratios}
    write_result(record, args.out, f"peers-{args.num_seeds}seed")


if __name__ == "__main__":
    main()
