"""Configs from flat field names: `make_config(preset, agent, learning_rate=..., num_envs=...)`, with the
values that follow from what was given (`with_intent`)."""

from __future__ import annotations

import dataclasses

from jaxdqn.agents import resolve_agent
from jaxdqn.agents.dqn import fitting_torsos
from jaxdqn.config.presets import get_preset
from jaxdqn.config.schema import (Config, ConfigError, NetworkConfig, flat_dict, from_dict, from_flat, leaf_paths,
                                  replace)
from jaxdqn.core.replay import is_frame_stack
from jaxdqn.envs import env_spec

DEFAULT_HIDDEN_SIZES = {"mlp": NetworkConfig.hidden_sizes, "nature_cnn": (512,), "minatar_cnn": (128,)}
"""The dense layers each torso gets when another environment brings it (the Nature DQN's 512, MinAtar's 128)."""


def default_torso(spec) -> str:
    """The torso an environment's observations call for: the Nature CNN for stacked uint8 frames, the MinAtar CNN
    for other images (height, width, channels) such as gymnax's MinAtar games, else an MLP."""
    if is_frame_stack(spec.obs_shape, spec.obs_dtype):
        return "nature_cnn"
    return "minatar_cnn" if "minatar_cnn" in fitting_torsos(spec.obs_shape) else "mlp"


def settings_type(agent_name: str) -> type:
    """The settings dataclass of the agent registered as `agent_name` or at import path "module:attribute"."""
    agent = resolve_agent(agent_name)
    found = getattr(agent, "settings_type", None)
    if not (isinstance(found, type) and dataclasses.is_dataclass(found)):
        raise ConfigError(f"agent: {agent_name!r} has no settings_type dataclass (got {found!r})")
    return found


def make_config(preset: str | None = None, agent: str | None = None, **flat) -> Config:
    """A checked Config: the preset's values (or the defaults), the agent's settings section, then `flat`.

    `flat` names fields wherever they live (learning_rate=1e-3, num_envs=4). Choosing an agent other than the
    preset's keeps the preset's values of the fields both agents have (environment, loop, gamma, ...).
    """
    base = None
    if preset is not None:
        base = get_preset(preset)
    name = agent if agent is not None else (base.agent if base is not None else "dqn")
    kind = settings_type(name)
    values = {}
    if base is not None:
        names = leaf_paths(kind)
        values = {k: v for k, v in flat_dict(base).items() if k in names}
    cfg = from_flat({**values, **flat, "agent": name}, kind)
    return with_intent(base if base is not None else from_flat({"agent": name}, kind), cfg, set(flat))


def with_intent(base: Config, cfg: Config, given: set[str]) -> Config:
    """`cfg` (the preset `base` with the fields named in `given` set) completed with what the given values imply,
    for the fields not given themselves.

    - `epsilon_decay_steps` given: the decay is that many steps, so a preset's `exploration_fraction` is cleared.
    - another `env_id`: the torso follows its observations (`default_torso`, with `DEFAULT_HIDDEN_SIZES`
      unless hidden_sizes is given), and `solved_return` becomes the environment's registered
      reward threshold (None without one, which also turns `stop_when_solved` off).
    """
    flat, changes = flat_dict(cfg), {}
    if "epsilon_decay_steps" in given and "exploration_fraction" not in given:
        changes["exploration_fraction"] = None
    if cfg.env.env_id != base.env.env_id:
        try:
            spec = env_spec(cfg.env.env_id)
        except Exception:  # an unknown or unsupported id: validation names the problem in one line
            spec = None
        if spec is not None and "torso" in flat and "torso" not in given:
            torso = default_torso(spec)
            if torso != flat["torso"] and "hidden_sizes" not in given:
                changes["hidden_sizes"] = DEFAULT_HIDDEN_SIZES[torso]
            changes["torso"] = torso
        if spec is not None and "solved_return" not in given:
            changes["solved_return"] = spec.reward_threshold
            if spec.reward_threshold is None and "stop_when_solved" not in given:
                changes["stop_when_solved"] = False
    return replace(cfg, **changes) if changes else cfg


def config_from_dict(data: dict) -> Config:
    """A Config from a config.json's contents (format 2, or the flat format 1), whatever its agent."""
    agent = data.get("agent", "dqn") if isinstance(data, dict) else "dqn"
    return from_dict(data, settings_type(agent))
