"""Prioritized-replay benchmark.

1. Sample + priority update time per step against capacity (10^3 ... 10^6), batch 32 and 256, on a
   prioritized replay of scalar observations in 8 per-environment rings.
2. The full train step with prioritized replay against the uniform one at capacity 10^6 (MLP, batch 64).

Timings: warm-up (compile) excluded, `block_until_ready` before the clock stops, several repetitions
of a `lax.scan` over many steps, median and spread reported. Usage:

    python benchmarks/prioritized.py [--out benchmarks/results] [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp

from jaxdqn.bench.machine import machine_facts, write_result
from jaxdqn.core.replay import make_replay

NUM_ENVS = 8
"""Environments (rings) of the sample + update replay; every capacity measured is a multiple of it."""
ALPHA, EPS = 0.6, 1e-6


def time_scan(step_fn, state, steps: int, repeats: int) -> dict:
    """Median/min/max microseconds per step of `step_fn(state, key) -> state` run in a compiled scan."""
    run = jax.jit(lambda s, k: jax.lax.scan(lambda c, key: (step_fn(c, key), None), s, jax.random.split(k, steps))[0])
    jax.block_until_ready(run(state, jax.random.PRNGKey(0)))  # compile + warm-up
    times = []
    for r in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(run(state, jax.random.PRNGKey(r + 1)))
        times.append((time.perf_counter() - start) / steps * 1e6)
    return {"median_us": statistics.median(times), "min_us": min(times), "max_us": max(times), "repeats": repeats,
            "steps_per_repeat": steps}


def filled_per_state(capacity: int, batch: int):
    """A prioritized replay of `capacity` scalar observations, full (every ring written once round), with
    random priorities on every sampleable slot."""
    replay = make_replay(capacity, batch, NUM_ENVS, (), jnp.float32, prioritized=True)

    @jax.jit
    def fill(state):
        def add(state, t):  # a real, non-terminal step of every environment
            obs = (t * NUM_ENVS + jnp.arange(NUM_ENVS)).astype(jnp.float32)
            return replay.add(state, obs, jnp.zeros(NUM_ENVS, jnp.int32), jnp.ones(NUM_ENVS),
                              jnp.zeros(NUM_ENVS, bool), jnp.ones(NUM_ENVS, bool)), None

        state = jax.lax.scan(add, state, jnp.arange(replay.slots_per_env))[0]
        td = jax.random.uniform(jax.random.PRNGKey(0), (capacity,), maxval=10.0)
        return replay.update(state, jnp.arange(capacity), td, ALPHA, EPS)

    return replay, fill(replay.init(jnp.zeros((), jnp.float32)))


def sample_update_scaling(capacities, batches, steps, repeats) -> list:
    """Sample a batch and write back new priorities for it, per step, at each capacity and batch size."""
    rows = []
    for batch in batches:
        for capacity in capacities:
            replay, state = filled_per_state(capacity, batch)

            def step(state, key, replay=replay):
                sample = replay.sample(state, key, 0.5)
                return replay.update(state, sample.indices, sample.batch.obs * 1e-3 + sample.weights, ALPHA, EPS)

            row = {"capacity": capacity, "batch": batch, **time_scan(step, state, steps, repeats)}
            print(f"sample+update capacity {capacity:>8} batch {batch:>3}: {row['median_us']:8.1f} us/step", flush=True)
            rows.append(row)
    return rows


def train_step_comparison(capacity: int, steps: int, repeats: int) -> dict:
    """Full train step (MLP 128-128, batch 64) with uniform vs prioritized replay, via the bench harness."""
    from jaxdqn.bench.harness import bench_train_step

    out = {}
    for prioritized in (False, True):
        row = bench_train_step("mlp", 64, capacity, prioritized, steps, repeats)
        rate = row["updates_per_second"]
        out[row["replay"]] = {"median_us": 1e6 / rate["median"], "min_us": 1e6 / rate["max"],
                              "max_us": 1e6 / rate["min"], "repeats": repeats, "steps_per_repeat": steps,
                              "compile_seconds": row["compile_seconds"]}
        print(f"train step {row['replay']:>11} capacity {capacity}: {out[row['replay']]['median_us']:8.1f} us/step",
              flush=True)
    out["ratio_prioritized_over_uniform"] = out["prioritized"]["median_us"] / out["uniform"]["median_us"]
    print(f"prioritized / uniform: {out['ratio_prioritized_over_uniform']:.2f}x")
    return out


def main() -> None:
    """Run both measurements and write the JSON result file."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for the test suite")
    args = parser.parse_args()
    if args.quick:
        capacities, batches, steps, repeats, train_capacity = [1_000, 10_000], [32], 50, 2, 10_000
    else:
        capacities, batches, steps, repeats, train_capacity = [10**3, 10**4, 10**5, 10**6], [32, 256], 2000, 5, 10**6
    facts = machine_facts()
    record = {
        "benchmark": "prioritized",
        "script": "python benchmarks/prioritized.py " + " ".join(sys.argv[1:]),
        "machine": facts,
        "sample_update": sample_update_scaling(capacities, batches, steps, repeats),
        "train_step": train_step_comparison(train_capacity, steps, repeats),
    }
    write_result(record, args.out, "prioritized-quick" if args.quick else "prioritized")


if __name__ == "__main__":
    main()
