"""An agent given by import path, reduced to what jaxdqn.config reads of it: a name and a settings dataclass.

Its settings check themselves in their own `__post_init__`, as a fork's agent would, without jaxdqn's base class.
"""

from __future__ import annotations

from dataclasses import dataclass

from jaxdqn.config.schema import ConfigError


@dataclass(frozen=True)
class ToySettings:
    """Settings of the toy agent."""

    toy_rate: float = 0.01
    """Step size of the toy agent, > 0."""
    gamma: float = 0.99
    """Discount factor, in (0, 1]."""

    def __post_init__(self):
        if not self.toy_rate > 0:
            raise ConfigError(f"toy_rate: must be > 0 (got {self.toy_rate!r})")


class ToyAgent:
    """The toy agent (only its name and settings type)."""

    name = "toy"
    settings_type = ToySettings
