"""`jaxdqn bench`: throughput of every layer, measured the same way on CPU, GPU and TPU.

Measures, separately and end to end:
- environment steps/s: EnvPool stepped from Python, and EnvPool's XLA step inside a compiled scan;
- `train_step` updates/s: MLP and Nature CNN, batch 32/64/256, uniform and prioritized replay, at
  several replay capacities; and each variant of the DQN family (n-step, C51, QR-DQN, noisy, Rainbow, PQN's
  update epochs over a rollout) on the MLP;
- end-to-end SPS of presets at their replay ratio, with 1 and several seeds at once, and the host-loop
  reference DQN (hostloop.py) at the same setting;
- compile time of each measured function, and peak host and device memory.

Every timing excludes warm-up (the first call compiles), waits with `block_until_ready` before the
clock stops, repeats, and reports the median with min and max. No code path depends on the backend:
JAX picks it.
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxdqn.agents import resolve_agent
from jaxdqn.agents.dqn import make_train_step, num_atoms
from jaxdqn.bench import default_results_dir
from jaxdqn.bench.machine import machine_facts, write_result
from jaxdqn.config.build import make_config
from jaxdqn.config.presets import PRESETS
from jaxdqn.config.schema import plan, replace
from jaxdqn.core import threefry
from jaxdqn.core.networks import make_network
from jaxdqn.core.replay import is_frame_stack, make_replay
from jaxdqn.envs import EnvSpec, backend_name, env_seeds, make_env

SCHEMA_VERSION = 1
REQUIRED_FIELDS = ("schema_version", "command", "machine", "env_steps", "train_step", "end_to_end", "memory")
REQUIRED_MACHINE_FIELDS = ("backend", "devices", "device_count", "cpu_model", "cpu_cores", "versions", "git_commit")

SIZES = {
    "full": {
        "env_cases": [("CartPole-v1", 1), ("CartPole-v1", 16), ("LunarLander-v3", 16), ("gymnax/CartPole-v1", 1),
                      ("gymnax/CartPole-v1", 16)],
        "env_steps": 20_000, "repeats": 5,
        "mlp_capacities": [10**4, 10**5, 10**6], "cnn_capacities": [10**3, 10**4],
        "batches": [32, 64, 256], "train_steps": 500, "cnn_train_steps": 4, "cnn_repeats": 3,
        "presets": [("cartpole", ["--num-envs", "10"], 1), ("cartpole", ["--num-envs", "10"], 4),
                    ("cartpole", ["--num-envs", "10", "--env-overlap"], 1),
                    ("cartpole", ["--num-envs", "10", "--env-id", "gymnax/CartPole-v1"], 1),
                    ("cartpole", ["--num-envs", "10", "--env-id", "gymnax/CartPole-v1"], 4),
                    ("lunarlander", [], 1), ("lunarlander-per", [], 1)],
        "host_loop_steps": 100_000,
        "variants": ["double+dueling", "n-step 3", "c51", "qr", "noisy", "rainbow", "pqn"], "variant_batch": 128,
        "variant_capacity": 10**5,
    },
    "tiny": {
        "env_cases": [("CartPole-v1", 4), ("gymnax/CartPole-v1", 4)],
        "env_steps": 500, "repeats": 2,
        "mlp_capacities": [1_000], "cnn_capacities": [256],
        "batches": [32], "train_steps": 5, "cnn_train_steps": 2, "cnn_repeats": 2,
        "presets": [("cartpole", ["--num-envs", "10", "--total-steps", "12000"], 1)],
        "host_loop_steps": 6_000,
        "variants": ["n-step 3", "pqn"], "variant_batch": 32, "variant_capacity": 1_000,
    },
}


def _spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "repeats": len(values)}


def time_compiled(fn, args: tuple, repeats: int) -> tuple[dict, float]:
    """Run the jitted `fn(*args)` once to compile (timed), then `repeats` more; seconds per call. The program is
    lowered as the training loop's chunk is (`threefry.unrolled`; `jaxdqn train` keeps JAX's loop for noisy
    networks, see `jaxdqn.run.driver.has_noisy_layers`)."""
    jitted = jax.jit(fn)
    start = time.perf_counter()
    with threefry.unrolled():
        lowered = jitted.lower(*args)
    compiled = lowered.compile()
    compile_seconds = time.perf_counter() - start
    jax.block_until_ready(compiled(*args))  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - start)
    return _spread(times), compile_seconds


def python_loop_seconds(env_id: str, seeds, iterations: int, repeats: int) -> list[float]:
    """Seconds for `iterations` steps of a pool called step by step from Python: EnvPool's own `step`, or a
    JAX environment's step jitted alone."""
    num_envs = len(seeds)
    if backend_name(env_id) == "jax":
        env = make_env(env_id, seeds)
        step = jax.jit(env.step)
        env_state, _ = env.reset()
        actions = jnp.zeros(num_envs, jnp.int32)

        def one(state):
            return step(state, actions)[0]
    else:
        import envpool

        env = envpool.make(env_id, env_type="gymnasium", num_envs=num_envs, batch_size=num_envs,
                           seed=[int(s) for s in seeds], num_threads=min(num_envs, os.cpu_count() or 1))
        env.reset()
        env_state, actions = None, np.zeros(num_envs, np.int32)

        def one(state):
            env.step(actions)
            return state
    env_state = jax.block_until_ready(one(env_state))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(iterations):
            env_state = one(env_state)
        jax.block_until_ready(env_state)
        times.append(time.perf_counter() - start)
    env.close()
    return times


def bench_env_steps(env_id: str, num_envs: int, steps: int, repeats: int) -> dict:
    """Steps/s of a pool from a Python loop and from its step inside a compiled scan. Where EnvPool has no XLA
    op on this platform, the scan steps through a host callback, and the row says so (`xla_scan_note`)."""
    seeds = env_seeds(0, range(1), num_envs)
    iterations = max(1, steps // num_envs)
    python_times = python_loop_seconds(env_id, seeds, iterations, repeats)
    env = make_env(env_id, seeds)
    env_state, _obs = env.reset()

    def scan_steps(env_state):
        def body(env_state, _):
            env_state, out = env.step(env_state, jnp.zeros(num_envs, jnp.int32))
            return env_state, out.reward.sum()
        return jax.lax.scan(body, env_state, None, length=iterations)

    timing, compile_seconds = time_compiled(scan_steps, (env_state,), repeats)
    host_step = bool(env.host_step)
    env.close()
    python = _spread([iterations * num_envs / t for t in python_times])
    xla = {k: (iterations * num_envs / v if k in ("median", "min", "max") else v) for k, v in timing.items()}
    xla["min"], xla["max"] = xla["max"], xla["min"]  # a shorter time is a higher rate
    row = {"env_id": env_id, "num_envs": num_envs, "python_steps_per_second": python,
           "xla_scan_steps_per_second": xla, "xla_compile_seconds": compile_seconds, "host_step": host_step}
    if host_step:
        row["xla_scan_note"] = (f"host callback: EnvPool has no XLA op on {jax.default_backend()}"
                                if backend_name(env_id) == "envpool" else "host callback: a Gymnasium environment")
    return row


TRAIN_STEP_NUM_ENVS = 8
"""Environments per seed of the train-step measurements' replay (one ring each, as in a run with 8
environments); every capacity measured is a multiple of it."""

TRAIN_STEP_SPECS = {
    "mlp": EnvSpec("bench-mlp", (8,), np.dtype(np.float32), 4, None, 0, None),  # LunarLander-sized
    "nature_cnn": EnvSpec("bench-atari", (4, 84, 84), np.dtype(np.uint8), 6, None, 0, None),  # Atari-sized
}
"""The observations and actions of the train-step measurements (no environment is made)."""


def train_step_config(torso: str, batch: int, capacity: int, prioritized: bool, **flat):
    """A dqn Config with the given torso, batch, replay capacity and kind, and one update per training period
    (the other DQN fields at their defaults, unless `flat` names them)."""
    network = {"hidden_sizes": (128, 128)} if torso == "mlp" else {"torso": "nature_cnn", "hidden_sizes": (512,)}
    return make_config(**{**network, **flat}, batch_size=batch, buffer_size=capacity, prioritized=prioritized,
                       learning_starts=batch, num_envs=TRAIN_STEP_NUM_ENVS, train_frequency=TRAIN_STEP_NUM_ENVS,
                       gradient_steps=1)


VARIANTS = {
    "double+dueling": dict(double_q=True, dueling=True),
    "n-step 3": dict(n_step=3),
    "c51": dict(distributional="c51"),
    "qr": dict(distributional="qr"),
    "noisy": dict(noisy=True, epsilon_schedule="constant", epsilon_start=0.0),
    "rainbow": dict(double_q=True, dueling=True, prioritized=True, n_step=3, distributional="c51", noisy=True,
                    epsilon_schedule="constant", epsilon_start=0.0),
}
"""The DQN-family variants `jaxdqn bench` times (flat config fields on the dqn agent); PQN is timed apart."""


def _replay(cfg, spec: EnvSpec):
    replay = cfg.settings.replay
    return make_replay(replay.buffer_size, replay.batch_size, cfg.env.num_envs, spec.obs_shape, spec.obs_dtype,
                       replay.prioritized, cfg.settings.n_step)


def filled_agent_state(cfg, spec: EnvSpec, key=None):
    """A fresh dqn agent state for `cfg` on an environment with `spec`, its replay full of random steps.

    Every environment's ring gets one step per slot, all real and none terminal, with random actions and
    observations (frame stacks shift in one random frame per step, as EnvPool's do), so every slot but the
    newest `history + 1` per ring is sampleable.
    """
    key = jax.random.PRNGKey(1) if key is None else key
    fns = resolve_agent("dqn").build(cfg, spec)
    state = jax.jit(fns.init)(jax.random.PRNGKey(0), fns.hyperparameters)
    replay, num_envs = _replay(cfg, spec), cfg.env.num_envs
    frames = is_frame_stack(spec.obs_shape, spec.obs_dtype)

    def add(carry, key):
        replay_state, obs = carry
        k_obs, k_action = jax.random.split(key)
        if frames:
            frame = jax.random.randint(k_obs, (num_envs, 1, *spec.obs_shape[1:]), 0, 256).astype(spec.obs_dtype)
            obs = jnp.concatenate([obs[:, 1:], frame], axis=1)
        else:
            obs = jax.random.normal(k_obs, obs.shape).astype(spec.obs_dtype)
        action = jax.random.randint(k_action, (num_envs,), 0, spec.num_actions)
        replay_state = replay.add(replay_state, obs, action, jnp.ones(num_envs), jnp.zeros(num_envs, bool),
                                  jnp.ones(num_envs, bool))
        return (replay_state, obs), None

    @jax.jit
    def fill(replay_state, key):
        obs = jnp.zeros((num_envs, *spec.obs_shape), spec.obs_dtype)
        return jax.lax.scan(add, (replay_state, obs), jax.random.split(key, replay.slots_per_env))[0][0]

    return state._replace(replay=fill(state.replay, key))


def single_update(cfg, spec: EnvSpec, network=None):
    """`update(state, key) -> (state, metrics)`: one dqn gradient update for `cfg` (with `network` in place of
    the config's if given), halfway through the run (prioritized replay's beta half annealed)."""
    settings = cfg.settings
    network = make_network(settings.network, spec.num_actions, num_atoms(settings)) if network is None else network
    total = plan(cfg).total_env_steps
    train_step = make_train_step(settings, network, _replay(cfg, spec), total)
    return lambda state, key: train_step(state, key, total // 2)


def bench_train_step(torso: str, batch: int, capacity: int, prioritized: bool, steps: int, repeats: int,
                     variant: str = "dqn") -> dict:
    """Updates/s of `steps` train steps in a compiled scan, with a full replay of `capacity`; `variant` names a
    `VARIANTS` entry (its flags set on top; a prioritized variant is prioritized whatever `prioritized` says)."""
    flat = VARIANTS.get(variant, {})
    cfg = train_step_config(torso, batch, capacity, flat.get("prioritized", prioritized),
                            **{k: v for k, v in flat.items() if k != "prioritized"})
    spec = TRAIN_STEP_SPECS[torso]
    state, update = filled_agent_state(cfg, spec), single_update(cfg, spec)

    def many(state, key):
        return jax.lax.scan(lambda s, k: (update(s, k)[0], None), state, jax.random.split(key, steps))[0]

    timing, compile_seconds = time_compiled(many, (state, jax.random.PRNGKey(2)), repeats)
    rate = _per_second(timing, steps)
    row = {"torso": torso, "batch": batch, "capacity": capacity,
           "replay": "prioritized" if cfg.settings.replay.prioritized else "uniform",
           "updates_per_second": rate, "compile_seconds": compile_seconds, "steps_per_repeat": steps}
    return row if variant == "dqn" else {**row, "variant": variant}


def _per_second(timing: dict, count: int) -> dict:
    """A `time_compiled` spread of seconds turned into a spread of `count` per second (min and max swap)."""
    rate = {k: (count / v if k in ("median", "min", "max") else v) for k, v in timing.items()}
    rate["min"], rate["max"] = rate["max"], rate["min"]
    return rate


def bench_pqn_update(batch: int, steps: int, repeats: int) -> dict:
    """Updates/s of PQN's learning on the `pqn-cartpole` preset's network (MLP 120-84, LayerNorm): `steps` learn
    calls, each the Q(lambda) targets of a rollout of 4 minibatches of `batch` and 4 epochs over it."""
    spec = TRAIN_STEP_SPECS["mlp"]
    cfg = make_config("pqn-cartpole", num_envs=4, train_frequency=4 * batch, num_minibatches=4, update_epochs=4)
    fns = resolve_agent("pqn").build(cfg, spec)
    state = jax.jit(fns.init)(jax.random.PRNGKey(0), fns.hyperparameters)
    rollout = state.rollout
    state = state._replace(rollout=rollout._replace(
        obs=jax.random.normal(jax.random.PRNGKey(1), rollout.obs.shape), real=jnp.ones_like(rollout.real)))
    updates_per_learn = cfg.settings.update_epochs * cfg.settings.num_minibatches

    def many(state, key):
        return jax.lax.scan(lambda s, k: (fns.learn(s, k, 4 * batch)[0], None), state, jax.random.split(key, steps))[0]

    timing, compile_seconds = time_compiled(many, (state, jax.random.PRNGKey(2)), repeats)
    return {"torso": "mlp", "batch": batch, "capacity": 4 * batch, "replay": "rollout", "variant": "pqn",
            "updates_per_second": _per_second(timing, steps * updates_per_learn), "compile_seconds": compile_seconds,
            "steps_per_repeat": steps * updates_per_learn}


def bench_end_to_end(preset: str, extra_args: list[str], num_seeds: int) -> dict:
    """One `jaxdqn train` process for the preset: wall, compile, SPS and updates/s from its summary."""
    import tempfile

    from jaxdqn.bench.runs import run_case

    with tempfile.TemporaryDirectory() as tmp:
        try:
            result = run_case(["--preset", preset, *extra_args, "--num-seeds", str(num_seeds)], Path(tmp))
        except subprocess.CalledProcessError as error:
            if error.returncode != 2:  # 2: refused before compiling (the case cannot run here); else a failure
                raise
            reason = (error.stderr or "").strip().splitlines()[-1].removeprefix("jaxdqn: error: ")
            return {"preset": preset, "args": extra_args, "num_seeds": num_seeds, "unsupported": reason}
    return {"preset": preset, "args": extra_args, **result}


def bench_host_loop(preset: str, extra_args: list[str], steps: int) -> dict:
    """The host-loop reference DQN at the preset's setting (first `steps` env steps)."""
    from jaxdqn.bench.hostloop import run_host_loop

    cfg = PRESETS[preset]
    if "--num-envs" in extra_args:
        cfg = replace(cfg, num_envs=int(extra_args[extra_args.index("--num-envs") + 1]))
    cfg = replace(cfg, learning_starts=min(cfg.loop.learning_starts, steps // 5))
    return {"preset": preset, "args": extra_args, **run_host_loop(cfg, steps)}


def peak_memory() -> dict:
    """Peak resident host memory of this process and its finished children, and device peak bytes."""
    self_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    stats = jax.devices()[0].memory_stats() or {}
    return {"host_peak_rss_mb": self_kb / 1024, "children_peak_rss_mb": children_kb / 1024,
            "device_peak_bytes": stats.get("peak_bytes_in_use")}


def run_bench(size: str = "full", out_dir: str | Path | None = None, command: str | None = None,
              log=print) -> Path:
    """Run every measurement at `size` ('full' or 'tiny') and write one JSON result; return its path.

    `out_dir` defaults to `default_results_dir()` (a user data folder, not the current directory).
    """
    spec = SIZES[size]
    record = {"schema_version": SCHEMA_VERSION, "size": size, "sizes": spec,
              "command": command or " ".join(["jaxdqn", "bench", *sys.argv[2:]]),
              "machine": machine_facts(), "env_steps": [], "train_step": [], "end_to_end": [], "host_loop": []}
    for env_id, num_envs in spec["env_cases"]:
        row = bench_env_steps(env_id, num_envs, spec["env_steps"], spec["repeats"])
        record["env_steps"].append(row)
        log(f"env {env_id} x{num_envs}: python {row['python_steps_per_second']['median']:.0f}/s, "
            f"xla scan {row['xla_scan_steps_per_second']['median']:.0f}/s")
    for torso, capacities, steps, repeats in [
            ("mlp", spec["mlp_capacities"], spec["train_steps"], spec["repeats"]),
            ("nature_cnn", spec["cnn_capacities"], spec["cnn_train_steps"], spec["cnn_repeats"])]:
        for batch in spec["batches"]:
            for capacity in capacities:
                for prioritized in (False, True):
                    row = bench_train_step(torso, batch, capacity, prioritized, steps, repeats)
                    record["train_step"].append(row)
                    log(f"train_step {torso} batch {batch} capacity {capacity} {row['replay']}: "
                        f"{row['updates_per_second']['median']:.0f} updates/s (compile {row['compile_seconds']:.1f} s)")
    for variant in spec["variants"]:
        row = (bench_pqn_update(spec["variant_batch"], max(1, spec["train_steps"] // 16), spec["repeats"])
               if variant == "pqn" else bench_train_step("mlp", spec["variant_batch"], spec["variant_capacity"], False,
                                                          spec["train_steps"], spec["repeats"], variant))
        record["train_step"].append(row)
        log(f"train_step {variant} mlp batch {row['batch']}: {row['updates_per_second']['median']:.0f} updates/s "
            f"(compile {row['compile_seconds']:.1f} s)")
    for preset, extra_args, num_seeds in spec["presets"]:
        row = bench_end_to_end(preset, extra_args, num_seeds)
        record["end_to_end"].append(row)
        log(f"end-to-end {preset} {' '.join(extra_args)} x{num_seeds} seeds: " + (
            f"not supported here: {row['unsupported']}" if "unsupported" in row else
            f"{row['sps']:.0f} SPS, wall {row['wall_seconds']:.1f} s (compile {row['compile_seconds']:.1f} s)"))
    row = bench_host_loop("cartpole", ["--num-envs", "10"], spec["host_loop_steps"])
    record["host_loop"].append(row)
    log(f"host loop cartpole --num-envs 10: {row['sps']:.0f} SPS over {row['env_steps']} steps")
    record["memory"] = peak_memory()
    return write_result(record, default_results_dir() if out_dir is None else out_dir,
                        "bench" if size == "full" else "bench-tiny")
