"""Environments EnvPool lacks, through a Gymnasium `SyncVectorEnv` stepped by a host callback.

The step is an ordered io_callback inside the compiled chunk, so the loop is the same as EnvPool's,
but it steps the environments one by one in Python with a device-host round trip per step: on the
2-core CPU, CartPole-v1 stepped 26x slower than through EnvPool with 1 environment, 14x with 8 and
8x with 64 (env steps alone, in a jitted scan; `python benchmarks/gym_fallback.py`).
"""

from __future__ import annotations

import warnings

import numpy as np

from jaxdqn.envs.base import HOST_STEP_STATE, EnvSpec, StepResult, as_seed_list, make_host_step, spec_from_spaces

GYMNASIUM_NOTE = ("note: EnvPool has no {env_id!r}; it runs through a Gymnasium vector environment that a host "
                  "callback steps one environment at a time: a slower path than EnvPool's threaded in-jit step "
                  "(8-26x slower for CartPole, benchmarks/gym_fallback.py)")
"""Printed when a run takes the Gymnasium path."""


def _make(env_id: str, render_mode: str | None = None):
    import gymnasium

    with warnings.catch_warnings():  # deprecation notices for old versions; validation reports real problems
        warnings.simplefilter("ignore")
        return gymnasium.make(env_id, render_mode=render_mode)


class GymnasiumBackend:
    """A Gymnasium vector env of one environment per seed, with NEXT_STEP autoreset like EnvPool's (the
    step after an episode ends returns the reset observation, reward 0, not done); see
    `jaxdqn.envs.base.EnvBackend`. `num_threads` and the Atari options are ignored."""

    host_step = True
    can_overlap = False

    def __init__(self, env_id: str, seeds, num_threads: int = 0, episodic_life: bool = False,
                 reward_clip: bool = False, render: bool = False, repeat_action_probability: float = 0.0):
        import gymnasium

        self._seeds = as_seed_list(seeds)
        self.num_envs = len(self._seeds)
        render_mode = "rgb_array" if render else None
        self._env = gymnasium.vector.SyncVectorEnv([lambda: _make(env_id, render_mode)] * self.num_envs,
                                                   autoreset_mode=gymnasium.vector.AutoresetMode.NEXT_STEP)
        self.spec = self.env_spec(env_id, self._env.envs[0])
        fps = self._env.envs[0].metadata.get("render_fps")
        self.render_fps = float(fps) if fps else None
        self._step = make_host_step(self._python_step, self.spec, self.num_envs)

    @staticmethod
    def has(env_id: str) -> bool:
        """True when Gymnasium registers `env_id`."""
        import gymnasium

        return env_id in gymnasium.envs.registry

    @staticmethod
    def known_ids() -> list[str]:
        """Gymnasium's registered environment ids."""
        import gymnasium

        return list(gymnasium.envs.registry)

    @staticmethod
    def env_spec(env_id: str, env=None) -> EnvSpec:
        """`env_id`'s spec, read from `env` (one made for it when None; errors are Gymnasium's own)."""
        made = env is None
        env = _make(env_id) if made else env
        try:
            return spec_from_spaces(env_id, env.observation_space, env.action_space,
                                    env.spec.max_episode_steps, env.spec.reward_threshold)
        finally:
            if made:
                env.close()

    def reset(self):
        """(env_state, obs) right after a full reset; the first reset seeds the environments, later ones
        continue their streams (as EnvPool's do)."""
        obs, _info = self._env.reset(seed=self._seeds)
        self._seeds = None
        return HOST_STEP_STATE, np.asarray(obs, self.spec.obs_dtype)

    def step(self, env_state, actions):
        """Step the pool with int32 `actions`; usable inside jit (a host callback)."""
        return self._step(env_state, actions)

    def _python_step(self, actions: np.ndarray) -> StepResult:
        obs, reward, terminated, truncated, _info = self._env.step(actions)
        return StepResult(obs, reward, terminated, truncated, reward, terminated | truncated)

    def render(self) -> np.ndarray:
        """The RGB frame (H, W, 3) of environment 0 of a pool made with render=True."""
        return np.asarray(self._env.envs[0].render())

    def close(self) -> None:
        """Release the pool."""
        self._env.close()
