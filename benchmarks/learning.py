"""Learning quality of the presets over many seeds, for before/after comparisons of a change.

Each case is one `jaxdqn train --preset NAME --num-seeds 10` process (`--num-seeds` sets another count); the
figure is the final greedy evaluation return of every seed (`summary.json`'s `eval_return_mean`), summarised as the mean, the
interquartile mean (IQM: the mean of the middle 50%, as in Agarwal et al. 2021) and a 95% percentile
bootstrap confidence interval of the mean (10,000 resamples, fixed seed). `--compare A.json B.json`
prints both side by side and whether the intervals overlap.

`--seed-per-process` runs each seed as its own `--seed S` process instead, one after another, for the wall time
of one training run as a user types it (beside peers that publish a single run's time): each seed's process
wall time and compile time are stored with its return. With `--fresh-compile-cache` the run starts from an
empty compile cache of its own, so the first process compiles cold and the others load from the cache.

Usage:

    python benchmarks/learning.py --label before [--cases cartpole ...] [--jaxdqn "python -m jaxdqn.cli"]
    python benchmarks/learning.py --label pqn-wall --cases pqn-cartpole --num-seeds 5 --seed-per-process
    python benchmarks/learning.py --compare results/learning-before-X.json results/learning-after-X.json
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from jaxdqn.bench.machine import machine_facts, write_result
from jaxdqn.bench.runs import jaxdqn_command
from jaxdqn.compile_cache import CACHE_ENV_VAR
from jaxdqn.sweep_results import bootstrap_interval, interquartile_mean

NUM_SEEDS = 10
_LUNAR_C51 = ["--distributional", "c51", "--num-atoms", "101", "--v-min", "-200", "--v-max", "200"]
CASES = {
    "cartpole": ["--preset", "cartpole"],
    "cartpole-10env": ["--preset", "cartpole", "--num-envs", "10"],
    "cartpole-gymnax-10env": ["--preset", "cartpole", "--num-envs", "10", "--env-id", "gymnax/CartPole-v1"],
    "lunarlander": ["--preset", "lunarlander"],
    "lunarlander-per": ["--preset", "lunarlander-per"],
    "frozenlake": ["--preset", "frozenlake"],
    "highway": ["--preset", "highway"],
    "pqn-cartpole": ["--preset", "pqn-cartpole"],
    "c51-cartpole": ["--preset", "c51-cartpole"],
    "rainbow-cartpole": ["--preset", "rainbow-cartpole"],
    "qrdqn-cartpole": ["--preset", "qrdqn-cartpole"],
    # C51 and Rainbow on lunarlander-per's loop (the seeds' agent), for the step at which the 100-episode mean first
    # reaches 200 ("solved_step") beside lunarlander-per's
    "c51-lunarlander": ["--preset", "lunarlander-per", *_LUNAR_C51, "--prioritized", "False", "--dueling", "False",
                        "--double-q", "False"],
    "rainbow-lunarlander": ["--preset", "lunarlander-per", *_LUNAR_C51, "--noisy", "True", "--n-step", "3",
                            "--adam-eps", "1.5e-4", "--epsilon-schedule", "constant", "--epsilon-start", "0",
                            "--epsilon-end", "0"],
}


def summarise(returns) -> dict:
    """Mean, IQM and bootstrap interval of per-seed returns."""
    low, high = bootstrap_interval(returns)
    return {"returns": [float(r) for r in returns], "mean": float(np.mean(returns)),
            "iqm": interquartile_mean(returns), "ci95": [low, high]}


def run_case(command: list[str], args: list[str], out: Path, num_seeds: int = NUM_SEEDS) -> dict:
    """Train one case with `num_seeds` seeds into `out` and summarise its final greedy returns."""
    full = [*command, "train", *args, "--num-seeds", str(num_seeds), "--out", str(out)]
    start = time.perf_counter()
    subprocess.run(full, check=True, capture_output=True, text=True)
    summary = json.loads((out / "summary.json").read_text())
    solved = [step for step in summary.get("solved_step", []) if step is not None]
    return {"command": " ".join(["jaxdqn", *full[len(command):-2]]), "process_seconds": time.perf_counter() - start,
            **summarise(summary["eval_return_mean"]), "solved_step": summary.get("solved_step"),
            "seeds_solved": len(solved), "median_solved_step": float(np.median(solved)) if solved else None}


def run_seed_per_process(command: list[str], args: list[str], out: Path, num_seeds: int) -> dict:
    """Train seeds 0..num_seeds-1 of one case as separate processes, one after another; summarise their returns
    and each process's wall time."""
    runs = []
    for seed in range(num_seeds):
        full = [*command, "train", *args, "--seed", str(seed), "--out", str(out / f"s{seed}")]
        start = time.perf_counter()
        subprocess.run(full, check=True, capture_output=True, text=True)
        wall = time.perf_counter() - start
        summary = json.loads((out / f"s{seed}" / "summary.json").read_text())
        solved_return = json.loads((out / f"s{seed}" / "config.json").read_text())["loop"]["solved_return"]
        runs.append({"seed": seed, "process_seconds": wall, "compile_seconds": summary["compile_seconds"],
                     "train_seconds": summary["wall_seconds"], "eval_return": summary["eval_return_mean"][0],
                     "solved_step": summary["solved_step"][0],
                     "greedy_at_least_solved_return": summary["eval_return_mean"][0] >= solved_return})
    returns = [r["eval_return"] for r in runs]
    walls = [r["process_seconds"] for r in runs]
    return {"command": " ".join(["jaxdqn", "train", *args, "--seed", "S"]), "runs": runs, **summarise(returns),
            "median_process_seconds": float(np.median(walls)),
            "solved_return": solved_return, "seeds_greedy_at_least_solved_return":
                sum(r["greedy_at_least_solved_return"] for r in runs)}


def compare(before_path: str, after_path: str) -> None:
    """Print the two results side by side with the overlap of their intervals."""
    before, after = (json.loads(Path(p).read_text())["results"] for p in (before_path, after_path))
    print("| case | before mean / IQM [95% CI] | after mean / IQM [95% CI] | overlap |")
    print("|---|---|---|---|")
    for name in before:
        if name not in after:
            continue
        b, a = before[name], after[name]
        overlap = b["ci95"][0] <= a["ci95"][1] and a["ci95"][0] <= b["ci95"][1]
        cell = lambda r: f"{r['mean']:.3g} / {r['iqm']:.3g} [{r['ci95'][0]:.3g}, {r['ci95'][1]:.3g}]"  # noqa: E731
        print(f"| {name} | {cell(b)} | {cell(a)} | {'yes' if overlap else 'NO'} |")


def main() -> None:
    """Run the cases (or compare two result files) and write the JSON result."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--label", default="current", help="name of this measurement (before, after, ...)")
    parser.add_argument("--cases", nargs="*", choices=list(CASES), help="run only these cases")
    parser.add_argument("--jaxdqn", default=None, help="the command that runs jaxdqn (default: the installed one)")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    parser.add_argument("--num-seeds", type=int, default=NUM_SEEDS, help="seeds per case, in one process")
    parser.add_argument("--seed-per-process", action="store_true",
                        help="run each seed as its own process (`--seed S`) and store each process's wall time")
    parser.add_argument("--fresh-compile-cache", action="store_true",
                        help="start from an empty compile cache of the run's own (the first process compiles cold)")
    parser.add_argument("--compare", nargs=2, metavar="JSON", help="compare two result files instead")
    args = parser.parse_args()
    if args.compare:
        compare(*args.compare)
        return
    command = shlex.split(args.jaxdqn) if args.jaxdqn else [jaxdqn_command()]
    record = {"benchmark": f"learning-{args.label}", "script": "python benchmarks/learning.py "
              + " ".join(shlex.quote(a) for a in sys.argv[1:]), "num_seeds": args.num_seeds,
              "seed_per_process": args.seed_per_process, "fresh_compile_cache": args.fresh_compile_cache,
              "machine": machine_facts(), "results": {}}
    with tempfile.TemporaryDirectory() as tmp:
        if args.fresh_compile_cache:
            os.environ[CACHE_ENV_VAR] = str(Path(tmp) / "compile-cache")
        for name in args.cases or list(CASES):
            if args.seed_per_process:
                record["results"][name] = r = run_seed_per_process(command, CASES[name], Path(tmp) / name,
                                                                   args.num_seeds)
                print(f"{name:>16}: returns {r['returns']}, process seconds "
                      f"{[round(run['process_seconds'], 1) for run in r['runs']]}", flush=True)
            else:
                record["results"][name] = r = run_case(command, CASES[name], Path(tmp) / name, args.num_seeds)
                print(f"{name:>16}: mean {r['mean']:.4g}  IQM {r['iqm']:.4g}  95% CI [{r['ci95'][0]:.4g}, "
                      f"{r['ci95'][1]:.4g}]  solved by {r['seeds_solved']} seeds, median step "
                      f"{r['median_solved_step']}  ({r['process_seconds']:.0f} s)", flush=True)
            write_result(record, args.out, f"learning-{args.label}")  # after every case, so a long run keeps its parts


if __name__ == "__main__":
    main()
