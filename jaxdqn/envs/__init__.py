"""Environment backends: the registry and factory, the one place that names them.

Every backend follows `base.EnvBackend`: a pool of environments with a spec, a host-side reset and a
pure step usable inside jit. `gymnax/NAME` and import paths `module:attribute` run as JAX environments on
the device (`jax_env`); an id EnvPool has runs through EnvPool; any other through Gymnasium.
"""

from __future__ import annotations

import functools

import numpy as np

from jaxdqn.envs.base import (EVAL_STREAM, TRAIN_STREAM, DevicePools, EnvBackend, EnvSpec, StepResult, UnsupportedEnv,
                              env_seeds, training_stream)
from jaxdqn.envs.envpool import ATARI_PREPROCESSING, EnvPoolBackend, is_atari
from jaxdqn.envs.gymnasium import GYMNASIUM_NOTE, GymnasiumBackend
from jaxdqn.envs.jax_env import GYMNAX_PREFIX, JaxBackend, JaxEnv

BACKENDS = {"jax": JaxBackend, "envpool": EnvPoolBackend, "gymnasium": GymnasiumBackend}
"""Backends in order of preference; each class has `has(env_id)`, `env_spec(env_id)` and `known_ids()`."""


def backend_name(env_id: str) -> str:
    """The first backend that has `env_id` ("envpool" when EnvPool has it); "gymnasium" when none does,
    so that its error says why."""
    return next((name for name, backend in BACKENDS.items() if backend.has(env_id)), "gymnasium")


def env_spec(env_id: str) -> EnvSpec:
    """`env_id`'s spec from the backend that runs it; raises that backend's error for an unknown id."""
    return BACKENDS[backend_name(env_id)].env_spec(env_id)


def make_env(env_id: str, seeds, num_threads: int = 0, episodic_life: bool = False, reward_clip: bool = False,
             render: bool = False, repeat_action_probability: float = 0.0, devices: int = 1) -> EnvBackend:
    """A pool of `env_id` with one environment per seed in `seeds` (see `env_seeds`), from the backend that
    has it. Call its `reset()` before stepping. With `devices` > 1 (a run sharded over devices), a backend other
    than JAX's gets one pool per device, each of an equal block of the seeds (`DevicePools`; with several
    processes, each builds its own devices' pools); a JAX pool is split over the devices as it is."""
    backend = BACKENDS[backend_name(env_id)]

    def pool(pool_seeds):
        return backend(env_id, pool_seeds, num_threads=num_threads, episodic_life=episodic_life,
                       reward_clip=reward_clip, render=render, repeat_action_probability=repeat_action_probability)

    if devices == 1 or backend is JaxBackend:
        return pool(seeds)
    import jax

    from jaxdqn.core.optim import DEVICE_AXIS

    # with several processes, devices counts every process's; each builds the pools of its own
    here = [device.process_index == jax.process_index() for device in jax.devices()[:devices]]
    return DevicePools([pool(block) if mine else None
                        for block, mine in zip(np.split(np.asarray(seeds), devices), here)], DEVICE_AXIS)


def known_env_ids() -> list[str]:
    """Every backend's environment ids, sorted (for "closest:" suggestions)."""
    return list(_known_env_ids())


@functools.cache
def _known_env_ids() -> tuple[str, ...]:
    # listing every registry takes about 0.6 s, and validation asks on every command
    return tuple(sorted({env_id for backend in BACKENDS.values() for env_id in backend.known_ids()}))


__all__ = ["ATARI_PREPROCESSING", "BACKENDS", "DevicePools", "EVAL_STREAM", "TRAIN_STREAM", "GYMNASIUM_NOTE", "EnvBackend", "EnvPoolBackend", "EnvSpec",
           "GYMNAX_PREFIX", "GymnasiumBackend", "JaxBackend", "JaxEnv", "StepResult", "UnsupportedEnv", "backend_name", "env_seeds", "env_spec", "is_atari", "known_env_ids",
           "make_env", "training_stream"]
