"""EnvPool pools stepped inside jit through EnvPool's XLA op, with the standard Atari preprocessing.

EnvPool's XLA op exists for XLA:CPU and CUDA only; on another JAX platform (TPU), or when asked, the
pool steps through a host callback around its Python `step` instead (`host_step=True`).
"""

from __future__ import annotations

import os
import sys
import warnings

import numpy as np

from jaxdqn.envs.base import (HOST_STEP_STATE, EnvSpec, StepResult, as_seed_list, make_host_step,
                              registered_render_fps, spec_from_spaces)
from jaxdqn.importing import defer_imports

ATARI_PREPROCESSING = dict(img_height=84, img_width=84, gray_scale=True, frame_skip=4, stack_num=4, noop_max=30,
                          use_fire_reset=True)
"""EnvPool options for the standard DQN Atari preprocessing (Mnih et al. 2015): 84x84 grey frames, each
observation the max of the last two of 4 repeated frames, 4 stacked, up to 30 no-op starts, FIRE on
reset. Sticky actions (Machado et al. 2018) are the pool's `repeat_action_probability`."""


ATARI_FRAMES_PER_SECOND = 60
"""The Atari 2600's frame rate; one environment step is `frame_skip` frames."""

BOX2D_RENDER_FPS = 50.0
"""Gymnasium's Box2D tasks (LunarLander, BipedalWalker, CarRacing) render at 50 fps; their classes need Box2D
to be imported, which EnvPool does not."""


JUMANJI_RENDERERS = tuple(f"envpool.jumanji._official_render.{name}"
                          for name in ("logic", "packing", "routing", "swarms"))
"""Jumanji's renderers, which `import envpool` loads (with Matplotlib: about 0.6 s of its 1.5 s) and which only
rendering a Jumanji environment uses."""


def _envpool():
    # gymnasium warns about float64 bounds being cast when EnvPool builds its spaces; harmless.
    warnings.filterwarnings("ignore", message=".*precision lowered by casting.*")
    if "envpool" not in sys.modules:
        defer_imports(JUMANJI_RENDERERS)
    import envpool

    return envpool


def is_atari(env_id: str) -> bool:
    """True for EnvPool's Atari tasks (ids like Pong-v5), recognised by their episodic_life option."""
    envpool = _envpool()
    return env_id in envpool.list_all_envs() and "episodic_life" in envpool.make_spec(env_id).config._fields


def _options(env_id: str, episodic_life: bool = False, reward_clip: bool = False,
             repeat_action_probability: float = 0.0) -> dict:
    # Atari tasks get the standard preprocessing; the Atari options mean nothing elsewhere.
    if not is_atari(env_id):
        return {}
    return dict(ATARI_PREPROCESSING, episodic_life=episodic_life, reward_clip=reward_clip,
                repeat_action_probability=repeat_action_probability)


def _step_result(obs, reward, terminated, truncated, info) -> StepResult:
    # An Atari pool with episodic life and reward clipping reports the raw reward in info["reward"]
    # and the real game over in info["terminated"]. NumPy or JAX arrays alike.
    game_reward = info["reward"] if "reward" in info else reward
    game_over = (info["terminated"].astype(bool) if "terminated" in info else terminated) | truncated
    return StepResult(obs, reward, terminated, truncated, game_reward, game_over)


def _has_xla_op(env) -> bool:
    # EnvPool registers its op for XLA:CPU, and for CUDA when it was built with CUDA (a GPU capsule).
    import jax

    platform = jax.default_backend()
    if platform == "cpu":
        return True
    return platform == "gpu" and all(capsules[1] is not None for _name, (_handle, _specs, capsules) in env._xla())


class EnvPoolBackend:
    """A synchronous EnvPool (Gymnasium API) of one environment per seed; see `jaxdqn.envs.base.EnvBackend`.

    Atari tasks get `ATARI_PREPROCESSING`; for training, `episodic_life` ends an episode at every lost
    life and `reward_clip` clips rewards to their sign (`game_reward` and `game_over` keep the raw
    reward and the real game over). `host_step` None steps through EnvPool's XLA op where it exists,
    else through a host callback; True or False forces one.
    """

    def __init__(self, env_id: str, seeds, num_threads: int = 0, episodic_life: bool = False,
                 reward_clip: bool = False, render: bool = False, repeat_action_probability: float = 0.0,
                 host_step: bool | None = None):
        seeds = as_seed_list(seeds)
        self.num_envs = len(seeds)
        options = _options(env_id, episodic_life, reward_clip, repeat_action_probability)
        self._env = _envpool().make(env_id, env_type="gymnasium", num_envs=self.num_envs, batch_size=self.num_envs,
                                    seed=seeds, num_threads=num_threads or min(self.num_envs, os.cpu_count() or 1),
                                    render_mode="rgb_array" if render else None, **options)
        self.spec = self.env_spec(env_id, options)
        self._options = options
        self.host_step = not _has_xla_op(self._env) if host_step is None else bool(host_step)
        self.can_overlap = not self.host_step
        if self.host_step:
            self._state, self._step = HOST_STEP_STATE, make_host_step(self._python_step, self.spec, self.num_envs)
        else:
            self._state, self._xla_recv, self._xla_send, self._xla_step = self._env.xla()
            self._step = self._op_step

    @property
    def render_fps(self) -> float | None:
        """Steps per second of real time: Atari 60 / frame skip, else Gymnasium's registered rate."""
        if self._options:
            return ATARI_FRAMES_PER_SECOND / self._options["frame_skip"]
        box2d = self.spec.env_id.startswith(("LunarLander", "BipedalWalker", "CarRacing"))
        return registered_render_fps(self.spec.env_id) or (BOX2D_RENDER_FPS if box2d else None)

    @staticmethod
    def has(env_id: str) -> bool:
        """True when EnvPool has `env_id`."""
        return env_id in _envpool().list_all_envs()

    @staticmethod
    def known_ids() -> list[str]:
        """EnvPool's environment ids."""
        return list(_envpool().list_all_envs())

    @staticmethod
    def env_spec(env_id: str, options: dict | None = None) -> EnvSpec:
        """`env_id`'s spec from EnvPool's, with `options` (default: the preprocessing a pool of it gets)."""
        spec = _envpool().make_spec(env_id, **(_options(env_id) if options is None else options))
        return spec_from_spaces(env_id, spec.observation_space, spec.action_space,
                                getattr(spec.config, "max_episode_steps", 0),
                                getattr(spec.config, "reward_threshold", None))

    def reset(self):
        """(env_state, obs) right after a full reset; call before stepping (an in-jit step after
        EnvPool's `async_reset()` hangs)."""
        obs, _info = self._env.reset()
        return self._state, np.asarray(obs, self.spec.obs_dtype)

    def step(self, env_state, actions):
        """Step the pool with int32 `actions`; usable inside jit."""
        return self._step(env_state, actions)

    def _op_step(self, handle, actions):
        return self.recv(self.send(handle, actions))

    def send(self, env_state, actions):
        """Hand `actions` to EnvPool's threads and return (XLA op; only without `host_step`)."""
        import jax.numpy as jnp

        return self._xla_send(env_state, jnp.asarray(actions, jnp.int32))

    def recv(self, env_state):
        """Wait for the step the last `send` started (XLA op; only without `host_step`)."""
        handle, (obs, reward, terminated, truncated, info) = self._xla_recv(env_state)
        return handle, _step_result(obs, reward, terminated, truncated, info)

    def _python_step(self, actions: np.ndarray) -> StepResult:
        return _step_result(*self._env.step(actions.astype(np.int32)))

    def render(self) -> np.ndarray:
        """The RGB frame (H, W, 3) of environment 0 of a pool made with render=True."""
        return np.asarray(self._env.render(env_ids=[0])[0])

    def close(self) -> None:
        """Release the pool."""
        self._env.close()
