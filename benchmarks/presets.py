"""End-to-end preset benchmarks, each configuration as its own `jaxdqn train` process.

Suites:
- cartpole: the `cartpole` preset at 1 and 10 environments, 1 and 4 seeds (4 seeds are sharded over the CPU
  split into devices by default, 2 seeds on each core of a 2-core machine, and also run on one device,
  `--cpu-devices 1`; at 10 environments, 1 and 4 seeds with XLA's CPU thread pool sized for one core,
  `--cpu-threads 1`); 1 seed overlapped with EnvPool, `--env-overlap`, whose default is that one thread, and at
  10 environments with a thread per core as well; 1 seed at 1 environment, whose default is one thread too, also
  with a thread per core);
- lunarlander: the `lunarlander` and `lunarlander-per` presets: wall time, SPS, step at which the
  100-episode mean first reached 200, greedy evaluation;
- atari: the `breakout` preset (its 2^14 prioritized replay, 8 envs, 1 update of batch 32 per 4 agent
  steps) filled to learning_starts and then trained for 4096 steps; `learning_sps` is the median SPS of
  the log chunks that lie wholly after learning starts (the issue-4 figure; the host-loop CleanRL DQN
  runs about 100 SPS on the 2-core CPU), without and with `--env-overlap` (EnvPool steps while the agent learns).

Compile time is measured cold (a fresh process per case); figures come from the run's summary.json.
Usage:

    python benchmarks/presets.py --suite cartpole|lunarlander|atari [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from jaxdqn.bench.machine import machine_facts, write_result
from jaxdqn.bench.runs import run_case

BREAKOUT_LEARNING = ["--preset", "breakout", "--learning-starts", "16384", "--total-steps", "20480", "--log-interval",
                     "512", "--eval-episodes", "1", "--checkpoint-interval", "0"]
SUITES = {
    "cartpole": {
        "1env-1seed": ["--preset", "cartpole", "--num-envs", "1"],
        "1env-1seed-allthreads": ["--preset", "cartpole", "--num-envs", "1", "--cpu-threads",
                                  str(len(os.sched_getaffinity(0)))],
        "10env-1seed": ["--preset", "cartpole", "--num-envs", "10"],
        "10env-4seeds": ["--preset", "cartpole", "--num-envs", "10", "--num-seeds", "4"],
        "1env-4seeds": ["--preset", "cartpole", "--num-envs", "1", "--num-seeds", "4"],
        "10env-4seeds-1device": ["--preset", "cartpole", "--num-envs", "10", "--num-seeds", "4", "--cpu-devices", "1"],
        "1env-4seeds-1device": ["--preset", "cartpole", "--num-envs", "1", "--num-seeds", "4", "--cpu-devices", "1"],
        "10env-1seed-overlap": ["--preset", "cartpole", "--num-envs", "10", "--env-overlap"],
        "1env-1seed-overlap": ["--preset", "cartpole", "--num-envs", "1", "--env-overlap"],
        "10env-1seed-overlap-allthreads": ["--preset", "cartpole", "--num-envs", "10", "--env-overlap", "--cpu-threads",
                                           str(len(os.sched_getaffinity(0)))],
        "10env-1seed-1thread": ["--preset", "cartpole", "--num-envs", "10", "--cpu-threads", "1"],
        "10env-4seeds-1thread": ["--preset", "cartpole", "--num-envs", "10", "--num-seeds", "4", "--cpu-threads", "1"],
    },
    "lunarlander": {
        "lunarlander": ["--preset", "lunarlander"],
        "lunarlander-per": ["--preset", "lunarlander-per"],
    },
    "atari": {
        "breakout-learning": BREAKOUT_LEARNING,
        "breakout-learning-overlap": [*BREAKOUT_LEARNING, "--env-overlap"],
    },
}


def main() -> None:
    """Run every case, print a table, and write the JSON result file."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    parser.add_argument("--suite", choices=list(SUITES), default="cartpole")
    parser.add_argument("--cases", nargs="*", help="run only these cases of the suite")
    args = parser.parse_args()
    cases = {name: case for name, case in SUITES[args.suite].items() if not args.cases or name in args.cases}
    facts = machine_facts()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, case_args in cases.items():
            results[name] = run_case(case_args, Path(tmp))
            r = results[name]
            print(f"{name:>15}: wall {r['wall_seconds']:6.1f} s (compile {r['compile_seconds']:4.1f} s), "
                  f"{r['sps']:8.0f} SPS (learning phase {r['learning_sps']}), {r['updates_per_second']:6.0f} updates/s, solved at {r['solved_step']}, "
                  f"eval {r['eval_return_mean']}", flush=True)
    for envs in (10, 1):  # 4 seeds against 1, as the CPU layout chooses and on one device
        for devices in ("", "-1device"):
            many, one = results.get(f"{envs}env-4seeds{devices}"), results.get(f"{envs}env-1seed")
            if many and one:
                ratio = many["wall_seconds"] / one["wall_seconds"]
                results[f"seed_scaling_{envs}env_4_vs_1{devices.replace('-', '_')}"] = ratio
                print(f"4 seeds{devices and ' on one device'} / 1 seed wall time ({envs} env{'s' if envs > 1 else ''}): "
                      f"{ratio:.2f}x")
    record = {"benchmark": args.suite, "script": "python benchmarks/presets.py " + " ".join(sys.argv[1:]),
              "machine": facts, "results": results}
    write_result(record, args.out, args.suite)


if __name__ == "__main__":
    main()
