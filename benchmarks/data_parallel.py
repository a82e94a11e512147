"""One agent's learner on one device against `--data-parallel 2`, at a small and at a large batch.

Each case trains one agent on gymnax CartPole-v1 as a `jaxdqn train` process, once with `--data-parallel 1` and
once with `--data-parallel 2`, alternating, `--pairs` times; both processes see the same 2 devices
(`XLA_FLAGS=--xla_force_host_platform_device_count=2` unless XLA_FLAGS is set). The figures are the run's own:
the run's time after compiling (`summary.json`'s wall_seconds - compile_seconds) and its updates and env steps per
second of it, the compile time and the process wall time. On a CPU the devices are simulated and share the host's
cores: the rows show what splitting a learner costs and whether it uses the other core, not what two GPUs would do
(the result file says `simulated`).

    python benchmarks/data_parallel.py [--pairs 2] [--cases dqn-batch32 dqn-batch512 pqn-minibatch2048]
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

_DQN = ["--preset", "cartpole", "--env-id", "gymnax/CartPole-v1", "--num-envs", "8", "--train-frequency", "8",
        "--learning-starts", "2000", "--total-steps", "100000", "--log-interval", "10000", "--eval-episodes", "2",
        "--checkpoint-interval", "0"]
CASES = {
    "dqn-batch32": [*_DQN, "--batch-size", "32"],
    "dqn-batch512": [*_DQN, "--batch-size", "512", "--buffer-size", "20000"],
    "pqn-minibatch2048": ["--preset", "pqn-cartpole", "--env-id", "gymnax/CartPole-v1", "--num-envs", "64",
                          "--train-frequency", "8192", "--num-minibatches", "4", "--total-steps", "163840",
                          "--log-interval", "16384", "--eval-episodes", "2", "--checkpoint-interval", "0"],
}


def run_once(command: list[str], args: list[str], out: Path, env: dict) -> dict:
    """One `jaxdqn train` process; its summary's speed figures and its wall time."""
    start = time.perf_counter()
    subprocess.run([*command, "train", *args, "--out", str(out)], check=True, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    summary = json.loads((out / "summary.json").read_text())
    run_seconds = summary["wall_seconds"] - summary["compile_seconds"]
    return {"process_seconds": wall, "compile_seconds": summary["compile_seconds"], "run_seconds": run_seconds,
            "updates_per_second": summary["updates"] / run_seconds, "sps": summary["env_steps"] / run_seconds,
            "eval_return_mean": summary["eval_return_mean"][0]}


def main() -> None:
    """Run the cases in alternating pairs and write the JSON result."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--cases", nargs="*", choices=list(CASES))
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    args = parser.parse_args()
    env = {**os.environ, "XLA_FLAGS": os.environ.get("XLA_FLAGS", "--xla_force_host_platform_device_count=2")}
    command = [jaxdqn_command()]
    facts = machine_facts()
    simulated = facts["backend"] == "cpu"
    record = {"benchmark": "data-parallel", "script": "python benchmarks/data_parallel.py "
              + " ".join(shlex.quote(a) for a in sys.argv[1:]), "xla_flags": env["XLA_FLAGS"],
              "simulated_devices": simulated, "machine": facts, "results": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.cases or list(CASES):
            runs = {1: [], 2: []}
            for pair in range(args.pairs):
                for shards in (1, 2):
                    out = Path(tmp) / f"{name}-{shards}-{pair}"
                    runs[shards].append(run_once(command, [*CASES[name], "--data-parallel", str(shards)], out, env))
            medians = {shards: {key: float(np.median([r[key] for r in rs])) for key in rs[0]}
                       for shards, rs in runs.items()}
            ratio = medians[2]["updates_per_second"] / medians[1]["updates_per_second"]
            record["results"][name] = {
                "command": "jaxdqn train " + " ".join(CASES[name]) + " --data-parallel {1,2}",
                "runs": {str(k): v for k, v in runs.items()}, "medians": {str(k): v for k, v in medians.items()},
                "updates_per_second_ratio_2_over_1": ratio}
            print(f"{name:>18}: updates/s 1 device {medians[1]['updates_per_second']:.0f}, 2 devices "
                  f"{medians[2]['updates_per_second']:.0f} (x{ratio:.2f}); compile {medians[1]['compile_seconds']:.1f} / {medians[2]['compile_seconds']:.1f} s", flush=True)
            write_result(record, args.out, "data-parallel")


if __name__ == "__main__":
    main()
