"""What resuming costs: a run of `--steps` steps (the `cartpole` preset, 1 environment) resumed for one more
training period, fresh (the default) and exact (`--exact`, which replays every logged action).

Each resume is its own `jaxdqn train --resume` process on a copy of the same run directory; the figures are
the process's wall time and `compile_seconds` from summary.json (restoring the state, replaying the actions
in exact mode, and compiling the chunk). Usage:

    python benchmarks/resume.py [--steps 500000] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from jaxdqn.bench.machine import machine_facts, write_result
from jaxdqn.bench.runs import jaxdqn_command

PERIOD = 10
"""The cartpole preset's training period in steps: a resume runs exactly one more."""


def timed(args: list[str]) -> float:
    """Run `jaxdqn ARGS` and return its wall seconds; raise with its stderr if it fails."""
    start = time.perf_counter()
    result = subprocess.run([jaxdqn_command(), *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"jaxdqn {' '.join(args)} failed:\n{result.stderr[-2000:]}")
    return time.perf_counter() - start


def main() -> None:
    """Train once, resume copies of the run in both modes, print and store the figures."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=500_000)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    args = parser.parse_args()
    record = {"benchmark": "resume", "script": "python benchmarks/resume.py " + " ".join(sys.argv[1:]),
              "machine": machine_facts(), "steps": args.steps, "results": {}}
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        train = ["train", "--preset", "cartpole", "--total-steps", str(args.steps), "--checkpoint-interval", "0",
                 "--eval-episodes", "1", "--out", str(run)]
        record["results"]["train_seconds"] = timed(train)
        for mode, extra in (("fresh", []), ("exact", ["--exact"])):
            copy = Path(tmp) / mode
            shutil.copytree(run, copy)
            wall = timed(["train", "--resume", str(copy), "--total-steps", str(args.steps + PERIOD), *extra])
            summary = json.loads((copy / "summary.json").read_text())
            record["results"][mode] = {"wall_seconds": wall, "restore_and_compile_seconds": summary["compile_seconds"]}
            print(f"{mode:>6}: resume of a {args.steps}-step run for {PERIOD} more steps: {wall:.1f} s "
                  f"(restore + compile {summary['compile_seconds']:.1f} s)", flush=True)
    write_result(record, args.out, "resume")


if __name__ == "__main__":
    main()
