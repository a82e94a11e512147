"""EnvPool's in-jit XLA step against the Gymnasium fallback (a SyncVectorEnv stepped by a host callback).

Both step CartPole-v1 with random actions inside one jitted `lax.scan`, as the training chunk does,
for 1, 8 and 64 environments. Compile is excluded, every clock stop follows `block_until_ready`, and
each figure is the median (with min and max) of several repeats. This backs the note that
`jaxdqn train` prints for environments only Gymnasium has. Usage:

    python benchmarks/gym_fallback.py [--out benchmarks/results] [--steps 2000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import jax

from jaxdqn.bench.machine import machine_facts, write_result
from jaxdqn.envs import EnvPoolBackend, GymnasiumBackend, env_seeds

ENV_ID = "CartPole-v1"


def steps_per_second(env, num_envs: int, steps: int, repeats: int) -> dict:
    """Env steps/s of `steps` iterations of the backend's step inside one jitted scan."""
    handle, _obs = env.reset()

    def run(handle, key):
        def one(handle, key):
            actions = jax.random.randint(key, (num_envs,), 0, 2)
            handle, _ = env.step(handle, actions)
            return handle, None

        handle, _ = jax.lax.scan(one, handle, jax.random.split(key, steps))
        return handle

    compiled = jax.jit(run).lower(handle, jax.random.PRNGKey(0)).compile()
    handle = jax.block_until_ready(compiled(handle, jax.random.PRNGKey(0)))
    rates = []
    for i in range(repeats):
        start = time.perf_counter()
        handle = jax.block_until_ready(compiled(handle, jax.random.PRNGKey(i + 1)))
        rates.append(steps * num_envs / (time.perf_counter() - start))
    return {"median": statistics.median(rates), "min": min(rates), "max": max(rates), "repeats": repeats}


def main() -> None:
    """Measure both paths at each pool size and write `results/gym_fallback-<machine>.json`."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    results = {}
    for num_envs in (1, 8, 64):
        seeds = env_seeds(0, range(1), num_envs)
        envpool_env, gymnasium_env = EnvPoolBackend(ENV_ID, seeds), GymnasiumBackend(ENV_ID, seeds)
        results[f"{num_envs}env"] = {
            "envpool_xla": steps_per_second(envpool_env, num_envs, args.steps, args.repeats),
            "gymnasium_callback": steps_per_second(gymnasium_env, num_envs, args.steps, args.repeats),
            "envpool_host_step": envpool_env.host_step,  # True where EnvPool has no XLA op for this backend
        }
        envpool_env.close()
        gymnasium_env.close()
        r = results[f"{num_envs}env"]
        ratio = r["envpool_xla"]["median"] / r["gymnasium_callback"]["median"]
        r["envpool_over_gymnasium"] = ratio
        print(f"{num_envs:>3} envs: EnvPool {r['envpool_xla']['median']:10.0f} steps/s, Gymnasium callback "
              f"{r['gymnasium_callback']['median']:10.0f} steps/s ({ratio:.2f}x)", flush=True)
    record = {"benchmark": "gym_fallback", "script": "python benchmarks/gym_fallback.py " + " ".join(sys.argv[1:]),
              "env_id": ENV_ID, "steps_per_call": args.steps, "machine": machine_facts(), "results": results}
    write_result(record, args.out, "gym_fallback")


if __name__ == "__main__":
    main()
