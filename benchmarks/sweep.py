"""A sweep as one program against the runs a user would otherwise start (issue 13's benchmark).

12 configurations (4 learning rates x 3 discounts) x 4 seeds of the `cartpole` preset with `--num-envs 10`, 500k
steps per agent:

- the sweep: one `jaxdqn sweep` process (48 agents in one compiled group; its compile is cold, timed inside), on
  its default of one CPU device per core, or once for each count given by `--cpu-devices N [N ...]`;
- the alternative: 12 `jaxdqn train --num-seeds 4` processes, one per configuration, one after another, with a
  warm compile cache (every configuration has the same program, so a warm-up run fills the cache first);
- 48 single-seed processes: a few are timed and the total is extrapolated.

Every wall time is the whole process (start-up, compile, training, final evaluation, files). The sweep's
agents are then checked against the separate runs: configuration c's seeds must have the same final
parameters, bit for bit, and the same evaluation returns.

Usage: python benchmarks/sweep.py [--steps 500000] [--singles 3] [--cpu-devices N [N ...]] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from jaxdqn.bench.machine import machine_facts, write_result
from jaxdqn.bench.runs import jaxdqn_command

LEARNING_RATES = ["1e-4", "2.5e-4", "5e-4", "1e-3"]
GAMMAS = ["0.98", "0.99", "0.995"]
SEEDS = 4
BASE = ["--preset", "cartpole", "--num-envs", "10", "--checkpoint-interval", "0"]


def timed(command: list[str], env: dict) -> float:
    """Run `command` to completion; its wall seconds."""
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, text=True, env=env)
    return time.perf_counter() - start


def params_of(run: Path) -> dict:
    """The final checkpoint's online parameters, by leaf path."""
    checkpoint = sorted((run / "checkpoints").glob("step_*"))[-1]
    leaves = json.loads((checkpoint / "meta.json").read_text())["leaves"]
    with np.load(checkpoint / "arrays.npz") as data:
        return {leaf["path"]: data[f"leaf_{i:05d}"] for i, leaf in enumerate(leaves)
                if leaf["path"].startswith(".agents.params")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=500_000)
    parser.add_argument("--singles", type=int, default=3, help="single-seed processes timed (then extrapolated)")
    parser.add_argument("--cpu-devices", type=int, nargs="+", default=None,
                        help="time one sweep per value of its --cpu-devices (default: one sweep, with its default)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    jaxdqn = jaxdqn_command()
    work = Path(tempfile.mkdtemp(prefix="jaxdqn-sweep-bench-"))
    env = {**os.environ, "JAXDQN_COMPILE_CACHE": str(work / "xla")}
    steps = ["--total-steps", str(args.steps)]
    configs = [(lr, gamma) for lr in LEARNING_RATES for gamma in GAMMAS]

    warm_up = timed([jaxdqn, "train", *BASE, *steps, "--num-seeds", str(SEEDS), "--out", str(work / "warm")], env)
    print(f"warm-up run (fills the compile cache): {warm_up:.1f} s", flush=True)
    runs = []
    for index, (lr, gamma) in enumerate(configs):
        out = work / f"run-{index}"
        seconds = timed([jaxdqn, "train", *BASE, *steps, "--num-seeds", str(SEEDS), "--learning-rate", lr,
                         "--gamma", gamma, "--out", str(out)], env)
        summary = json.loads((out / "summary.json").read_text())
        runs.append({"learning_rate": lr, "gamma": gamma, "wall_seconds": seconds,
                     "compile_seconds": summary["compile_seconds"], "eval_return_mean": summary["eval_return_mean"]})
        print(f"train lr {lr} gamma {gamma} x{SEEDS} seeds: {seconds:.1f} s", flush=True)
    def sweep(cpu_devices: int | None) -> dict:
        """One timed sweep process (with --cpu-devices when given), checked against the separate runs."""
        sweep_dir = work / f"sweep-{cpu_devices or 'default'}"
        command = ["sweep", *BASE, *steps, "--num-seeds", str(SEEDS), "--learning-rate", ",".join(LEARNING_RATES),
                   "--gamma", ",".join(GAMMAS), *(["--cpu-devices", str(cpu_devices)] if cpu_devices else [])]
        seconds = timed([jaxdqn, *command, "--out", str(sweep_dir)], env)
        summary = json.loads((sweep_dir / "group-0" / "summary.json").read_text())
        params = params_of(sweep_dir / "group-0")
        same_params, same_returns = [], []
        for index, run in enumerate(runs):
            agents = slice(index * SEEDS, (index + 1) * SEEDS)
            alone = params_of(work / f"run-{index}")
            same_params.append(all(np.array_equal(params[name][agents], alone[name]) for name in alone))
            same_returns.append(summary["eval_return_mean"][agents] == run["eval_return_mean"])
        print(f"sweep of {len(configs)} x {SEEDS} on {summary['devices']} device(s): {seconds:.1f} s "
              f"({runs_total / seconds:.2f}x the separate runs); identical parameters in {sum(same_params)}/"
              f"{len(runs)} configurations, identical returns in {sum(same_returns)}/{len(runs)}", flush=True)
        return {"sweep_command": "jaxdqn " + " ".join(command), "sweep_devices": summary["devices"],
                "env_steps_per_agent": summary["env_steps"], "sweep_wall_seconds": seconds,
                "sweep_compile_seconds": summary["compile_seconds"],
                "sweep_agent_steps_per_second": len(configs) * SEEDS * summary["env_steps"] / seconds,
                "speedup_over_separate_runs": runs_total / seconds,
                "same_params_as_separate_runs": same_params, "same_eval_returns_as_separate_runs": same_returns,
                "sweep_eval_return_mean": [summary["eval_return_mean"][i * SEEDS:(i + 1) * SEEDS]
                                           for i in range(len(configs))],
                "sweep_table": (sweep_dir / "sweep.md").read_text()}

    runs_total = sum(r["wall_seconds"] for r in runs)
    sweeps = [sweep(count) for count in args.cpu_devices or [None]]
    singles = []
    for index in range(args.singles):
        lr, gamma = configs[index * len(configs) // max(args.singles, 1)]
        seconds = timed([jaxdqn, "train", *BASE, *steps, "--learning-rate", lr, "--gamma", gamma,
                         "--out", str(work / f"single-{index}")], env)
        singles.append({"learning_rate": lr, "gamma": gamma, "wall_seconds": seconds})
        print(f"train lr {lr} gamma {gamma} x1 seed: {seconds:.1f} s", flush=True)
    singles_total = float(np.mean([s["wall_seconds"] for s in singles])) * len(configs) * SEEDS if singles else None
    first = sweeps[0]
    record = {
        "command": "python benchmarks/sweep.py" + (f" --steps {args.steps}" if args.steps != 500_000 else "")
                   + (f" --singles {args.singles}" if args.singles != 3 else "")
                   + (" --cpu-devices " + " ".join(map(str, args.cpu_devices)) if args.cpu_devices else ""),
        "machine": machine_facts(),
        "agents": len(configs) * SEEDS,
        **first,  # the first sweep's figures at the top level, as results before several sweeps were timed
        "sweeps": sweeps,
        "separate_runs": runs, "separate_runs_devices": 1, "separate_runs_total_seconds": runs_total,
        "warm_up_seconds": warm_up,
        "single_seed_processes_timed": singles, "single_seed_processes_extrapolated_seconds": singles_total,
        "speedup_over_single_seed_processes": singles_total / first["sweep_wall_seconds"] if singles_total else None,
    }
    write_result(record, args.out, "sweep")

if __name__ == "__main__":
    main()
