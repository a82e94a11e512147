"""The checks that need the environment, the agent or an optional package; the sections check their own values
when built."""

from __future__ import annotations

import difflib
import importlib.util

from jaxdqn.agents import resolve_agent
from jaxdqn.config.schema import Config, ConfigError, require
from jaxdqn.envs import EnvSpec, UnsupportedEnv, env_spec, is_atari, known_env_ids


def validate(cfg: Config) -> Config:
    """Check `cfg` against its agent and its environment; raise one ConfigError naming the first problem.

    Runs before anything is compiled or any file is written, from Python (`run_training`) and from the CLI
    alike. Returns `cfg`.
    """
    agent = resolve_agent(cfg.agent)
    require(isinstance(cfg.settings, agent.settings_type), "settings", f"agent {cfg.agent} takes "
            f"{agent.settings_type.__name__}", type(cfg.settings).__name__)
    agent.check(cfg, checked_env_spec(cfg.env.env_id))
    require(cfg.env.repeat_action_probability == 0 or is_atari(cfg.env.env_id), "repeat_action_probability",
            f"sticky actions exist for Atari tasks only, and {cfg.env.env_id} is not one; allowed here: 0",
            cfg.env.repeat_action_probability)
    if cfg.tracking.track and importlib.util.find_spec("wandb") is None:
        raise ConfigError("track: needs the wandb package; pip install 'jaxdqn[wandb]'")
    return cfg


def checked_env_spec(env_id: str) -> EnvSpec:
    """`env_id`'s spec; ConfigError unless a backend has it, it can be created and its actions are discrete."""
    known = known_env_ids()
    if env_id not in known:
        close = difflib.get_close_matches(env_id, known, n=5, cutoff=0.5)
        hint = (f"closest: {', '.join(close)}" if close
                else "run `python -c 'import envpool; print(envpool.list_all_envs())'` for the list")
        raise ConfigError(f"env_id: {env_id!r} is not an EnvPool or Gymnasium environment; {hint}")
    try:
        spec = env_spec(env_id)
    except UnsupportedEnv as error:
        raise ConfigError(f"env_id: {env_id!r} {error}") from None
    except Exception as error:  # a Gymnasium id whose dependencies are missing, or a continuous action space
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ConfigError(f"env_id: {env_id!r} cannot be created: {message}") from None
    return spec
