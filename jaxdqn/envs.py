"""EnvPool factory, its XLA step for use inside jit, and environment facts read from the spec.

Environments EnvPool lacks but Gymnasium has run through a Gymnasium vector environment instead:
`make_pool` and `make_xla_step` return the same kinds of objects for both, and the Gymnasium step
is a host callback inside the compiled chunk, so the training code is the same. That path steps its
environments one by one in Python, with a device-host round trip per step: on the 2-core CPU,
CartPole-v1 stepped 26x slower than through EnvPool with 1 environment, 14x with 8 and 8x with 64
(env steps alone, in a jitted scan; `python benchmarks/gym_fallback.py`).
"""

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


GYMNASIUM_NOTE = ("note: EnvPool has no {env_id!r}; it runs through a Gymnasium vector environment that a host "
                  "callback steps one environment at a time: a slower path than EnvPool's threaded in-jit step "
                  "(8-26x slower for CartPole, benchmarks/gym_fallback.py)")
"""Printed when a run takes the Gymnasium path."""


def is_envpool_env(env_id: str) -> bool:
    """True when EnvPool has `env_id` (else jaxdqn falls back to Gymnasium)."""
    return env_id in _quiet_envpool().list_all_envs()


def env_spaces(env_id: str):
    """(observation space, action space, episode step limit or 0) of `env_id`, from EnvPool or Gymnasium."""
    if is_envpool_env(env_id):
        spec = _quiet_envpool().make_spec(env_id)
        return (spec.observation_space, spec.action_space,
                int(getattr(spec.config, "max_episode_steps", 0) or 0))
    import gymnasium

    with warnings.catch_warnings():  # deprecation notices for old versions; validation reports real problems
        warnings.simplefilter("ignore")
        env = gymnasium.make(env_id)
    spaces = (env.observation_space, env.action_space, int(env.spec.max_episode_steps or 0))
    env.close()
    return spaces


def env_info(env_id: str) -> EnvInfo:
    """Observation shape/dtype, number of actions and episode step limit, from EnvPool's or Gymnasium's spec."""
    obs_space, action_space, max_episode_steps = env_spaces(env_id)
    return EnvInfo(tuple(obs_space.shape), np.dtype(obs_space.dtype), int(action_space.n), max_episode_steps)


ATARI_PREPROCESSING = dict(img_height=84, img_width=84, gray_scale=True, frame_skip=4, stack_num=4, noop_max=30,
                          use_fire_reset=True, repeat_action_probability=0.0)
"""EnvPool options for the standard DQN Atari preprocessing (Mnih et al. 2015; Machado et al. 2018
without sticky actions): 84x84 grey frames, each observation the max of the last two of 4 repeated
frames, 4 stacked, up to 30 no-op starts, FIRE on reset."""


def is_atari(env_id: str) -> bool:
    """True for EnvPool's Atari tasks (ids like Pong-v5), recognised by their episodic_life option."""
    return "episodic_life" in _quiet_envpool().make_spec(env_id).config._fields


def make_pool(env_id: str, num_envs: int, seed: int, num_threads: int = 0, episodic_life: bool = False,
              reward_clip: bool = False, render_mode: str | None = None):
    """A synchronous EnvPool (Gymnasium API) of `num_envs` environments, already reset.

    Environment i is seeded with seed + i. Reset happens here because stepping through `env.xla()`
    inside jit after an `async_reset()` hangs. An id EnvPool lacks gives a Gymnasium vector environment.
    Atari tasks get `ATARI_PREPROCESSING`; for training, `episodic_life` ends an episode at every lost
    life and `reward_clip` clips rewards to their sign (EnvPool still reports the raw reward and the
    real game over in its info, see `make_xla_step`). Both are ignored for other tasks.
    `render_mode="rgb_array"` enables rendering (see `render_first_env`).
    """
    if not is_envpool_env(env_id):
        return make_gymnasium_pool(env_id, num_envs, seed, render_mode)
    envpool = _quiet_envpool()
    threads = num_threads or min(num_envs, os.cpu_count() or 1)
    options = {}
    if is_atari(env_id):
        options = dict(ATARI_PREPROCESSING, episodic_life=episodic_life, reward_clip=reward_clip)
    env = envpool.make(env_id, env_type="gymnasium", num_envs=num_envs, batch_size=num_envs,
                       seed=seed, num_threads=threads, render_mode=render_mode, **options)
    obs, _ = env.reset()
    return env, obs


def render_first_env(env) -> np.ndarray:
    """The RGB frame (H, W, 3) of environment 0 of a pool made with `render_mode="rgb_array"`."""
    import gymnasium

    if isinstance(env, gymnasium.vector.SyncVectorEnv):  # the fallback pool; EnvPool's are VectorEnvs too
        return np.asarray(env.envs[0].render())
    return env.render(env_ids=[0])[0]


class GameSignal(NamedTuple):
    """What the reported episode statistics use: the raw (unclipped) reward and whether the whole game
    ended (all lives lost, or truncated). For tasks without lives or clipping, the step's own values."""

    reward: Any
    over: Any


def make_xla_step(env, game_signal: bool = False):
    """Return (handle, step) where `step(handle, actions) -> handle, (obs, reward, terminated, truncated)`,
    with a fifth element `GameSignal` when `game_signal` is set.

    `step` runs inside jit. EnvPool resets an environment on the step after it ended; that step's
    transition is not real, and callers must track it (see `train.py`). An Atari pool with episodic
    life and reward clipping reports the raw reward in info["reward"] and the real game over in
    info["terminated"]; `GameSignal` carries those.
    """
    # EnvPool's pools pass isinstance(env, gymnasium.vector.VectorEnv) too; only they have `xla`.
    if not hasattr(env, "xla"):
        return make_gymnasium_step(env, game_signal)
    handle, _recv, _send, xla_step = env.xla()

    def step(handle, actions):
        handle, (obs, reward, terminated, truncated, info) = xla_step(handle, actions)
        if not game_signal:
            return handle, (obs, reward, terminated, truncated)
        game_reward = info["reward"] if "reward" in info else reward
        game_over = (info["terminated"].astype(bool) if "terminated" in info else terminated) | truncated
        return handle, (obs, reward, terminated, truncated, GameSignal(game_reward, game_over))

    return handle, step


def _host_dtype(dtype) -> np.dtype:
    # what jax holds an array of this dtype as (int64 -> int32 unless x64 is enabled)
    import jax

    return np.dtype(jax.dtypes.canonicalize_dtype(dtype))


def make_gymnasium_pool(env_id: str, num_envs: int, seed: int, render_mode: str | None = None):
    """A Gymnasium `SyncVectorEnv` of `num_envs` copies of `env_id`, reset with seeds seed + i.

    Its autoreset mode is NEXT_STEP, like EnvPool's: the step after an episode ends returns the reset
    observation (reward 0, not done), so the same "skip the step after done" logic applies.
    """
    import gymnasium

    env = gymnasium.vector.SyncVectorEnv([lambda: gymnasium.make(env_id, render_mode=render_mode)
                                          for _ in range(num_envs)],
                                         autoreset_mode=gymnasium.vector.AutoresetMode.NEXT_STEP)
    obs, _ = env.reset(seed=[seed + i for i in range(num_envs)])
    return env, obs.astype(_host_dtype(obs.dtype))


def make_gymnasium_step(env, game_signal: bool = False):
    """`make_xla_step` for a Gymnasium vector env: an ordered `io_callback` that steps it on the host.

    The handle is a step counter, threaded through like EnvPool's so that callers cannot tell the two apart.
    """
    import jax
    import jax.numpy as jnp
    from jax.experimental import io_callback

    num_envs = env.num_envs
    obs_space = env.single_observation_space
    obs_dtype = _host_dtype(obs_space.dtype)
    result_shapes = (jax.ShapeDtypeStruct((), jnp.int32),
                     jax.ShapeDtypeStruct((num_envs, *obs_space.shape), obs_dtype),
                     jax.ShapeDtypeStruct((num_envs,), jnp.float32),
                     jax.ShapeDtypeStruct((num_envs,), jnp.bool_),
                     jax.ShapeDtypeStruct((num_envs,), jnp.bool_))

    def host_step(handle, actions):
        obs, reward, terminated, truncated, _info = env.step(np.asarray(actions))
        return (np.asarray(handle + 1, np.int32), np.asarray(obs, obs_dtype), np.asarray(reward, np.float32),
                np.asarray(terminated, bool), np.asarray(truncated, bool))

    def step(handle, actions):
        handle, obs, reward, terminated, truncated = io_callback(host_step, result_shapes, handle, actions,
                                                                 ordered=True)
        if game_signal:
            return handle, (obs, reward, terminated, truncated, GameSignal(reward, terminated | truncated))
        return handle, (obs, reward, terminated, truncated)

    return jnp.zeros((), jnp.int32), step


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
            handle, (obs, *_rest) = env_step(handle, row.astype(np.int32))  # 4 or 5 outputs (GameSignal)
            return (handle, obs), None

        (handle, obs), _ = jax.lax.scan(one, (handle, obs), actions)
        return handle, obs

    return jax.jit(scan)(handle, reset_obs, actions)
