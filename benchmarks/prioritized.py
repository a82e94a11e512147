"""Prioritized-replay benchmark.

1. Sample + priority update time per step against capacity (10^3 ... 10^6), batch 32 and 256.
2. The full train step with prioritized replay against the uniform one at capacity 10^6 (MLP, batch 64).

Timings: warm-up (compile) excluded, `block_until_ready` before the clock stops, several repetitions
of a `lax.scan` over many steps, median and spread reported. Usage:

    python benchmarks/prioritized.py [--out benchmarks/results] [--quick]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp

from benchmarks.machine import machine_facts, machine_tag  # noqa: E402

from jaxdqn.config import Config  # noqa: E402
from jaxdqn.learner import LearnerParts, init_agent, make_optimizer, make_train_step  # noqa: E402
from jaxdqn.networks import make_network  # noqa: E402
from jaxdqn.replay import Transition, make_prioritized_replay, make_replay  # noqa: E402


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
    """A prioritized replay of `capacity` scalar items, full, with random priorities."""
    replay = make_prioritized_replay(capacity, batch, alpha=0.6)
    state = replay.init({"x": jnp.zeros((), jnp.float32)})
    state = replay.add(state, {"x": jnp.arange(capacity, dtype=jnp.float32)}, jnp.ones(capacity, bool))
    state = replay.update(state, jnp.arange(capacity),
                          jax.random.uniform(jax.random.PRNGKey(0), (capacity,), maxval=10.0))
    return replay, state


def sample_update_scaling(capacities, batches, steps, repeats) -> list:
    """Sample a batch and write back new priorities for it, per step, at each capacity and batch size."""
    rows = []
    for batch in batches:
        for capacity in capacities:
            replay, state = filled_per_state(capacity, batch)

            def step(state, key, replay=replay):
                sample = replay.sample(state, key, 0.5)
                return replay.update(state, sample.indices, sample.batch["x"] * 1e-3 + sample.weights)

            row = {"capacity": capacity, "batch": batch, **time_scan(step, state, steps, repeats)}
            print(f"sample+update capacity {capacity:>8} batch {batch:>3}: {row['median_us']:8.1f} us/step", flush=True)
            rows.append(row)
    return rows


def train_step_comparison(capacity: int, steps: int, repeats: int) -> dict:
    """Full train step (LunarLander-sized MLP 128-128, batch 64) with uniform vs prioritized replay."""
    out = {}
    for prioritized in (False, True):
        cfg = dataclasses.replace(Config(), buffer_size=capacity, batch_size=64, hidden_sizes=(128, 128),
                                  prioritized=prioritized, learning_starts=64)
        parts = LearnerParts(make_network(cfg, 4), make_optimizer(cfg), make_replay(cfg))
        example = jnp.zeros(8)
        state = init_agent(parts, jax.random.PRNGKey(0), example,
                           Transition(example, jnp.int32(0), jnp.float32(0), example, jnp.bool_(False)))
        fill = Transition(jax.random.normal(jax.random.PRNGKey(1), (capacity, 8)), jnp.zeros(capacity, jnp.int32),
                          jnp.ones(capacity), jax.random.normal(jax.random.PRNGKey(2), (capacity, 8)),
                          jnp.zeros(capacity, bool))
        state = state._replace(replay=jax.jit(parts.replay.add)(state.replay, fill, jnp.ones(capacity, bool)))
        train_step = make_train_step(cfg, parts)
        name = "prioritized" if prioritized else "uniform"
        out[name] = time_scan(lambda s, k: train_step(s, k, 0.5)[0], state, steps, repeats)
        print(f"train step {name:>11} capacity {capacity}: {out[name]['median_us']:8.1f} us/step", flush=True)
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
    suffix = "-quick" if args.quick else ""
    path = Path(args.out) / f"prioritized-{machine_tag(facts)}{suffix}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
