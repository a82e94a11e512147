"""EnvPool factory, its XLA step for use inside jit, and environment facts read from the spec."""

from __future__ import annotations

import os
import warnings
from typing import Any, NamedTuple

import numpy as np


class EnvInfo(NamedTuple):
    """What the agent needs to know about an environment before building anything."""

    obs_shape: tuple
    obs_dtype: Any
    num_actions: int
    max_episode_steps: int


def _quiet_envpool():
    # gymnasium warns about float64 bounds being cast when EnvPool builds its spaces; harmless.
    warnings.filterwarnings("ignore", message=".*precision lowered by casting.*")
    import envpool

    return envpool


def env_info(env_id: str) -> EnvInfo:
    """Observation shape/dtype, number of actions and episode step limit, from EnvPool's spec."""
    envpool = _quiet_envpool()
    spec = envpool.make_spec(env_id)
    obs_space = spec.observation_space
    return EnvInfo(tuple(obs_space.shape), np.dtype(obs_space.dtype), int(spec.action_space.n),
                   int(getattr(spec.config, "max_episode_steps", 0) or 0))


def make_pool(env_id: str, num_envs: int, seed: int, num_threads: int = 0):
    """A synchronous EnvPool (Gymnasium API) of `num_envs` environments, already reset.

    Environment i is seeded with seed + i. Reset happens here because stepping through `env.xla()`
    inside jit after an `async_reset()` hangs.
    """
    envpool = _quiet_envpool()
    threads = num_threads or min(num_envs, os.cpu_count() or 1)
    env = envpool.make(env_id, env_type="gymnasium", num_envs=num_envs, batch_size=num_envs,
                       seed=seed, num_threads=threads)
    obs, _ = env.reset()
    return env, obs


def make_xla_step(env):
    """Return (handle, step) where `step(handle, actions) -> handle, (obs, reward, terminated, truncated)`.

    `step` runs inside jit. EnvPool resets an environment on the step after it ended; that step's
    transition is not real, and callers must track it (see `train.py`).
    """
    handle, _recv, _send, xla_step = env.xla()

    def step(handle, actions):
        handle, (obs, reward, terminated, truncated, _info) = xla_step(handle, actions)
        return handle, (obs, reward, terminated, truncated)

    return handle, step


def replay_actions(env_step, handle, reset_obs, actions: np.ndarray):
    """Step the pool through `actions` (iterations x pool size) in one jitted scan; return (handle, obs).

    Used on resume to bring a freshly reset pool (whose reset observation is `reset_obs`) to the exact
    state of a checkpointed run: an EnvPool environment's trajectory depends only on its seed and the
    actions it received. `obs` is the pool's observation after the last row of `actions`.
    """
    import jax

    def scan(handle, obs, actions):
        def one(carry, row):
            handle, _ = carry
            handle, (obs, _reward, _terminated, _truncated) = env_step(handle, row.astype(np.int32))
            return (handle, obs), None

        (handle, obs), _ = jax.lax.scan(one, (handle, obs), actions)
        return handle, obs

    return jax.jit(scan)(handle, reset_obs, actions)
