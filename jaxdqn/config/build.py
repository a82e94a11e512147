"""Configs from flat field names: `make_config(preset, agent, learning_rate=..., num_envs=...)`."""

from __future__ import annotations

import dataclasses

from jaxdqn.agents import resolve_agent
from jaxdqn.config.presets import get_preset
from jaxdqn.config.schema import Config, ConfigError, flat_dict, from_dict, from_flat, leaf_paths


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
    return from_flat({**values, **flat, "agent": name}, kind)


def config_from_dict(data: dict) -> Config:
    """A Config from a config.json's contents (format 2, or the flat format 1), whatever its agent."""
    agent = data.get("agent", "dqn") if isinstance(data, dict) else "dqn"
    return from_dict(data, settings_type(agent))
