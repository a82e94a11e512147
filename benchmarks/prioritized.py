"""Prioritized-replay benchmark.

1. Sample + priority update time per step against capacity (10^3 ... 10^6), batch 32 and 256, on a
   prioritized replay of scalar observations in 8 per-environment rings.
2. The same for flashbax's prioritised flat buffer (`sample` + `set_priorities`), the reference row, when
   flashbax is installed (`pip install flashbax`; it is not a jaxdqn dependency).
3. The full train step with prioritized replay against the uniform one at capacity 10^6 (MLP, batch 64), and
   at the Atari shape (frame replay of 84x84 frames, Nature CNN, batch 32, capacity 10^6: 7 GB of replay).

Timings: warm-up (compile) excluded, `block_until_ready` before the clock stops, several repetitions
of a `lax.scan` over many steps, median and spread reported. Usage:

    python benchmarks/prioritized.py [--out benchmarks/results] [--quick] [--no-atari]
        [--capacities 1000000] [--batches 64]   (the train step's shape alone: its own result file)
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


def flashbax_sample_update(capacities, batches, steps, repeats) -> list:
    """flashbax's prioritised flat buffer, filled with `capacity` scalar steps from NUM_ENVS environments with
    random priorities: `sample` then `set_priorities` of the sampled rows, per step. [] without flashbax."""
    try:
        import flashbax
    except ImportError:
        print("flashbax is not installed: no reference rows (pip install flashbax)")
        return []
    rows = []
    for batch in batches:
        for capacity in capacities:
            buffer = flashbax.make_prioritised_flat_buffer(max_length=capacity, min_length=batch,
                                                           sample_batch_size=batch, add_batch_size=NUM_ENVS,
                                                           priority_exponent=ALPHA)

            @jax.jit
            def fill(state, buffer=buffer, capacity=capacity):
                def add(state, t):
                    return buffer.add(state, (t * NUM_ENVS + jnp.arange(NUM_ENVS)).astype(jnp.float32)), None

                state = jax.lax.scan(add, state, jnp.arange(capacity // NUM_ENVS + 1))[0]
                indices = jnp.arange(capacity)
                return buffer.set_priorities(state, indices,
                                             jax.random.uniform(jax.random.PRNGKey(0), (capacity,), maxval=10.0))

            state = fill(buffer.init(jnp.zeros((), jnp.float32)))

            def step(state, key, buffer=buffer):
                sample = buffer.sample(state, key)
                new = jnp.abs(sample.experience.first) * 1e-3 + sample.probabilities + EPS
                return buffer.set_priorities(state, sample.indices, new)

            row = {"capacity": capacity, "batch": batch, **time_scan(step, state, steps, repeats)}
            print(f"flashbax sample+set_priorities capacity {capacity:>8} batch {batch:>3}: "
                  f"{row['median_us']:8.1f} us/step", flush=True)
            rows.append(row)
    return rows


def train_step_comparison(capacity: int, steps: int, repeats: int, torso: str = "mlp", batch: int = 64) -> dict:
    """Full train step (MLP 128-128, batch 64; or the Nature CNN on frames) with uniform vs prioritized replay,
    via the bench harness."""
    from jaxdqn.bench.harness import bench_train_step

    out = {"torso": torso, "batch": batch, "capacity": capacity}
    for prioritized in (False, True):
        row = bench_train_step(torso, batch, capacity, prioritized, steps, repeats)
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
    parser.add_argument("--no-atari", action="store_true", help="skip the Atari-shaped train step (7 GB, slow on CPU)")
    parser.add_argument("--capacities", type=int, nargs="*", help="sample+update capacities (default 10^3..10^6)")
    parser.add_argument("--batches", type=int, nargs="*", help="sample+update batch sizes (default 32 and 256)")
    args = parser.parse_args()
    if args.quick:
        capacities, batches, steps, repeats, train_capacity = [1_000, 10_000], [32], 50, 2, 10_000
    else:
        capacities, batches, steps, repeats, train_capacity = [10**3, 10**4, 10**5, 10**6], [32, 256], 2000, 5, 10**6
    capacities, batches = args.capacities or capacities, args.batches or batches
    facts = machine_facts()
    record = {
        "benchmark": "prioritized",
        "script": "python benchmarks/prioritized.py " + " ".join(sys.argv[1:]),
        "machine": facts,
        "sample_update": sample_update_scaling(capacities, batches, steps, repeats),
        "flashbax_sample_update": flashbax_sample_update(capacities, batches, steps, repeats),
        "train_step": train_step_comparison(train_capacity, steps, repeats),
    }
    if not (args.quick or args.no_atari):
        record["train_step_atari"] = train_step_comparison(10**6, 4, 3, torso="nature_cnn", batch=32)
    name = "prioritized-quick" if args.quick else "prioritized"
    if args.capacities or args.batches:
        name += "-" + "-".join(f"b{b}" for b in batches) + "-" + "-".join(f"c{c}" for c in capacities)
    write_result(record, args.out, name)


if __name__ == "__main__":
    main()
