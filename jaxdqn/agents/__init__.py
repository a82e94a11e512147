"""The agent registry: the one place that names the built-in agents.

`resolve_agent(name)` returns a registry entry, or imports an agent given as `module:attribute` (a class
is instantiated), so a fork's agent runs with `jaxdqn train --agent mypackage.agents:MyAgent` and no edit
to jaxdqn. Adding a built-in agent is one file in this folder plus one line here.
"""

from __future__ import annotations

from jaxdqn.agents.base import Agent, AgentFns, Step
from jaxdqn.agents.dqn import DQN
from jaxdqn.agents.pqn import PQN
from jaxdqn.agents.tabular import Tabular
from jaxdqn.config.schema import ConfigError
from jaxdqn.importing import load_object

AGENTS: dict[str, Agent] = {"dqn": DQN(), "pqn": PQN(), "tabular": Tabular()}

__all__ = ["AGENTS", "Agent", "AgentFns", "Step", "resolve_agent"]


def resolve_agent(name: str) -> Agent:
    """The agent registered as `name`, or the object at import path `module:attribute`; ConfigError otherwise."""
    if name in AGENTS:
        return AGENTS[name]
    if ":" not in name:
        raise ConfigError(f"agent: must be one of {', '.join(AGENTS)} or an import path module:attribute "
                          f"(got {name!r})")
    try:
        agent = load_object(name)
    except ImportError as error:
        raise ConfigError(f"agent: cannot import {name!r} ({error})") from None
    for needed in ("name", "settings_type", "check", "build"):
        if not hasattr(agent, needed):
            raise ConfigError(f"agent: {name!r} is not an agent (it has no {needed!r}; see jaxdqn/agents/base.py)")
    return agent
