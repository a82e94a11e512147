"""TEMPORARY stub of the agents registry, for jaxdqn.config's tests; the integrator replaces it."""

from __future__ import annotations

import importlib
from typing import NamedTuple

from jaxdqn.config.schema import DQNSettings, TabularSettings


class AgentEntry(NamedTuple):
    """What jaxdqn.config needs of an agent: its name and its settings dataclass."""

    name: str
    settings_type: type


AGENTS = {"dqn": AgentEntry("dqn", DQNSettings), "tabular": AgentEntry("tabular", TabularSettings)}
"""Registry name -> agent."""


def resolve_agent(name: str):
    """The agent registered as `name`, or the object at import path "module:attribute"."""
    if name in AGENTS:
        return AGENTS[name]
    if ":" not in name:
        raise KeyError(name)
    module, attribute = name.split(":", 1)
    return getattr(importlib.import_module(module), attribute)
