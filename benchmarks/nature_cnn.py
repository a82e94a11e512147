"""Nature-CNN update speed: XLA's convolutions against convolutions as matrix products (`conv_impl`).

For each convolution path (`jaxdqn.core.networks.CONV_IMPLS`: 'xla', XLA's convolutions, the old code;
'gemm', matrix products forward and backward; 'gemm_grad', XLA forward with matrix-product
gradients, the CPU default) and each replay (uniform, prioritized), it measures the
breakout-style train step (dueling + double Q, batch 32, Adam, a full replay of 10^4 transitions of
(4, 84, 84) uint8 stacks in 8 per-environment frame rings, the state donated):
- standalone: one jitted `train_step` per call;
- in scan: `steps` train steps inside one compiled `lax.scan`, as the training loop runs them;
and the acting forward pass (Q-values for 8 observations).

The implementations are timed round-robin in one process, so a busy shared machine slows them alike.
Warm-up (compile) is excluded, every clock stop follows `block_until_ready`, and each figure is the
median and min over repeats of wall time, plus the process CPU time (both cores, all threads), which
other processes disturb less. Usage:

    python benchmarks/nature_cnn.py [--out benchmarks/results] [--repeats 7] [--steps 4] [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxdqn.bench.harness import TRAIN_STEP_NUM_ENVS, filled_agent_state, single_update, train_step_config
from jaxdqn.bench.machine import machine_facts, write_result
from jaxdqn.core.networks import QNetwork, make_network
from jaxdqn.envs import EnvSpec

IMPLS = ("xla", "gemm", "gemm_grad")
NUM_ACTIONS = 4  # Breakout
SPEC = EnvSpec("Breakout-v5", (4, 84, 84), np.dtype(np.uint8), NUM_ACTIONS, None, 0, None)
"""Breakout's observations and actions under the standard Atari preprocessing (no environment is made)."""


def breakout_like_config(prioritized: bool, capacity: int, batch: int):
    """The update setting the `breakout` preset uses: Nature CNN, dueling (no stream layer), double Q, batch 32."""
    return train_step_config("nature_cnn", batch, capacity, prioritized, dueling=True, double_q=True)


def network(conv_impl: str) -> QNetwork:
    """The breakout Q-network with the given convolution path."""
    return make_network(breakout_like_config(False, 10_000, 32).settings.network, NUM_ACTIONS).clone(
        conv_impl=conv_impl)


def _summary(wall: list[float], cpu: list[float]) -> dict:
    return {"wall_ms_median": statistics.median(wall), "wall_ms_min": min(wall), "wall_ms_max": max(wall),
            "cpu_ms_median": statistics.median(cpu), "cpu_ms_min": min(cpu), "repeats": len(wall)}


def measure(cases: dict, repeats: int) -> dict:
    """Round-robin timing of `cases[name] = (run, per_call)`; `run()` returns when its work is done.

    Returns milliseconds per unit of work (`per_call` units per run) for each case.
    """
    wall = {name: [] for name in cases}
    cpu = {name: [] for name in cases}
    for _ in range(repeats):
        for name, (run, per_call) in cases.items():
            cpu_start, wall_start = time.process_time(), time.perf_counter()
            run()
            wall[name].append((time.perf_counter() - wall_start) / per_call * 1e3)
            cpu[name].append((time.process_time() - cpu_start) / per_call * 1e3)
    return {name: _summary(wall[name], cpu[name]) for name in cases}


def train_step_cases(prioritized: bool, capacity: int, batch: int, steps: int, log=print) -> tuple[dict, dict]:
    """Compiled standalone and in-scan runners for both convolution paths, sharing one filled replay."""
    cfg = breakout_like_config(prioritized, capacity, batch)
    holder = {"state": filled_agent_state(cfg, SPEC)}  # every path has the same parameter tree: one state serves all
    cases, compile_seconds = {}, {}
    for impl in IMPLS:
        update = single_update(cfg, SPEC, network(impl))
        key = jax.random.PRNGKey(0)
        single = jax.jit(lambda s, k, step=update: step(s, k)[0], donate_argnums=0)
        scanned = jax.jit(lambda s, k, step=update: jax.lax.scan(
            lambda c, kk: (step(c, kk)[0], None), s, jax.random.split(k, steps))[0], donate_argnums=0)
        for label, fn in (("standalone", single), ("in_scan", scanned)):
            start = time.perf_counter()
            compiled = fn.lower(holder["state"], key).compile()
            compile_seconds[f"{impl}/{label}"] = time.perf_counter() - start
            holder["state"] = jax.block_until_ready(compiled(holder["state"], key))  # warm-up

            def run(compiled=compiled, label=label, key=key):
                state = holder["state"]
                for _ in range(steps if label == "standalone" else 1):
                    state = compiled(state, key)
                holder["state"] = jax.block_until_ready(state)

            cases[f"{impl}/{label}"] = (run, steps)
        log(f"compiled {impl} ({'prioritized' if prioritized else 'uniform'}): "
            f"standalone {compile_seconds[f'{impl}/standalone']:.1f} s, in scan {compile_seconds[f'{impl}/in_scan']:.1f} s")
    return cases, compile_seconds


def forward_cases(num_obs: int) -> dict:
    """Q-values for `num_obs` observations (the acting forward pass), for both convolution paths."""
    obs = jax.random.randint(jax.random.PRNGKey(3), (num_obs, 4, 84, 84), 0, 256).astype(jnp.uint8)
    params = jax.jit(network("xla").init)(jax.random.PRNGKey(0), obs[:1])
    cases = {}
    for impl in IMPLS:
        compiled = jax.jit(network(impl).apply).lower(params, obs).compile()
        jax.block_until_ready(compiled(params, obs))
        cases[impl] = (lambda compiled=compiled: jax.block_until_ready(compiled(params, obs)), 1)
    return cases


def main() -> None:
    """Measure both convolution paths and write `results/nature_cnn-<machine>.json`."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--steps", type=int, default=4, help="train steps per timed call")
    parser.add_argument("--capacity", type=int, default=10_000,
                        help=f"replay transitions, a multiple of {TRAIN_STEP_NUM_ENVS} (one ring per environment)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to check that it runs")
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.steps, args.capacity = 2, 2, 256
    record = {
        "benchmark": "nature_cnn",
        "command": "python benchmarks/nature_cnn.py " + " ".join(sys.argv[1:]),
        "machine": machine_facts(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "setting": {"batch": 32, "capacity": args.capacity, "obs": "(4, 84, 84) uint8", "dueling": True,
                    "double_q": True, "replay_num_envs": TRAIN_STEP_NUM_ENVS, "steps_per_timed_call": args.steps,
                    "forward_observations": 8},
        "load_average_before": os.getloadavg(),
        "train_step": {},
    }
    for prioritized in (False, True):
        replay = "prioritized" if prioritized else "uniform"
        cases, compile_seconds = train_step_cases(prioritized, args.capacity, 32, args.steps)
        timings = measure(cases, args.repeats)
        record["train_step"][replay] = {name: {**timings[name], "compile_seconds": compile_seconds[name]}
                                        for name in cases}
        for name, row in timings.items():
            print(f"train step {replay:>11} {name:16s}: wall median {row['wall_ms_median']:7.1f} ms "
                  f"(min {row['wall_ms_min']:7.1f}), cpu median {row['cpu_ms_median']:7.1f} ms", flush=True)
        del cases
    record["forward_8_obs"] = measure(forward_cases(8), max(args.repeats, 20))
    for name, row in record["forward_8_obs"].items():
        print(f"forward 8 obs {name:5s}: wall median {row['wall_ms_median']:.2f} ms (min {row['wall_ms_min']:.2f})")
    record["load_average_after"] = os.getloadavg()
    write_result(record, args.out, "nature_cnn-quick" if args.quick else "nature_cnn")


if __name__ == "__main__":
    main()
