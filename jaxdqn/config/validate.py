"""The checks that need the environment or the agent; the sections check their own values when built."""

from __future__ import annotations

import difflib
from typing import NamedTuple

from jaxdqn.config.build import settings_type
from jaxdqn.config.schema import Config, ConfigError, DQNSettings, TabularSettings, require

NATURE_CNN_MIN_SIZE = 36
"""The smallest image side the Nature CNN's three VALID convolutions (8/4, 4/2, 3/1) leave a pixel of."""


class EnvFacts(NamedTuple):
    """What the checks read of an environment (the fields of the same names in jaxdqn.envs' EnvSpec)."""

    env_id: str
    obs_shape: tuple
    obs_dtype: object
    num_actions: int
    num_states: int | None
    """Number of states of a Discrete observation space; None for array observations."""


def validate(cfg: Config) -> Config:
    """Check `cfg` against its agent and its environment; raise one ConfigError naming the first problem.

    Runs before anything is compiled or any file is written. Returns `cfg`.
    """
    kind = settings_type(cfg.agent)
    require(isinstance(cfg.settings, kind), "settings", f"agent {cfg.agent} takes {kind.__name__}",
            type(cfg.settings).__name__)
    facts = env_facts(cfg.env.env_id)
    check = _AGENT_CHECKS.get(kind)
    if check is not None:
        check(cfg, facts)
    return cfg


def env_facts(env_id: str) -> EnvFacts:
    """Raise ConfigError unless `env_id` is an EnvPool or Gymnasium task with a discrete action space; else its facts."""
    import envpool
    import gymnasium
    import numpy as np

    from jaxdqn.envs import env_spaces

    all_ids = envpool.list_all_envs()
    if env_id not in all_ids and env_id not in gymnasium.envs.registry:
        known = sorted(set(all_ids) | set(gymnasium.envs.registry))
        close = difflib.get_close_matches(env_id, known, n=5, cutoff=0.5)
        hint = (f"closest: {', '.join(close)}" if close
                else "run `python -c 'import envpool; print(envpool.list_all_envs())'` for the list")
        raise ConfigError(f"env_id: {env_id!r} is not an EnvPool or Gymnasium environment; {hint}")
    try:
        obs_space, action_space, _ = env_spaces(env_id)
    except Exception as error:  # a Gymnasium id whose dependencies are missing, for example
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ConfigError(f"env_id: {env_id!r} cannot be created: {message}") from None
    if not isinstance(action_space, gymnasium.spaces.Discrete):
        raise ConfigError(f"env_id: {env_id!r} has a {type(action_space).__name__} action space; "
                          "jaxdqn needs a discrete (Discrete) action space")
    num_states = int(obs_space.n) if isinstance(obs_space, gymnasium.spaces.Discrete) else None
    return EnvFacts(env_id, tuple(obs_space.shape), np.dtype(obs_space.dtype), int(action_space.n), num_states)


def _check_dqn(cfg: Config, facts: EnvFacts) -> None:
    """The dqn agent: array observations, the replay's constraints, the torso against the observations."""
    from jaxdqn.replay import is_frame_stack

    if facts.num_states is not None:
        raise ConfigError(f"env_id: {facts.env_id!r} has a Discrete observation space ({facts.num_states} states); "
                          "the dqn agent needs array observations: use --agent tabular")
    num_envs, loop, replay = cfg.env.num_envs, cfg.loop, cfg.settings.replay
    require(loop.train_frequency % num_envs == 0 or num_envs % loop.train_frequency == 0, "train_frequency",
            f"must divide num_envs ({num_envs}) or be a multiple of it", loop.train_frequency)
    require(replay.buffer_size >= num_envs, "buffer_size",
            f"must hold at least one step of all environments (num_envs={num_envs})", replay.buffer_size)
    require(loop.learning_starts >= replay.batch_size, "learning_starts",
            f"must be >= batch_size ({replay.batch_size}) so the first batch has data to sample",
            loop.learning_starts)
    shape = facts.obs_shape
    if cfg.settings.network.torso == "nature_cnn":
        require(len(shape) == 3 and min(shape[1:]) >= NATURE_CNN_MIN_SIZE, "torso",
                f"nature_cnn needs image observations shaped (frames, height, width) of at least "
                f"{NATURE_CNN_MIN_SIZE}x{NATURE_CNN_MIN_SIZE}, but {facts.env_id} has shape {shape}; "
                "allowed here: mlp", cfg.settings.network.torso)
    if is_frame_stack(shape, facts.obs_dtype):
        require(replay.buffer_size % num_envs == 0 and replay.buffer_size // num_envs >= 8, "buffer_size",
                f"must be a multiple of num_envs ({num_envs}) with at least 8 per environment for "
                f"{facts.env_id} (its replay keeps one frame ring per environment)", replay.buffer_size)


def _check_tabular(cfg: Config, facts: EnvFacts) -> None:
    """The tabular agent: a Discrete observation space (it learns from every step, without replay)."""
    if facts.num_states is None:
        raise ConfigError(f"agent: tabular needs a Discrete observation space, but {facts.env_id!r} has "
                          f"Box{facts.obs_shape}: use --agent dqn")


# The integrator moves these into the agents, as `resolve_agent(cfg.agent).check(cfg, spec)`.
_AGENT_CHECKS = {DQNSettings: _check_dqn, TabularSettings: _check_tabular}
