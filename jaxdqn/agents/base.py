"""The agent protocol: what every agent gives the shared loop, the checkpoints and the evaluation.

An agent is a registry entry (`Agent`) that checks a config against an environment and builds
`AgentFns`: pure functions over the agent's own state pytree, for ONE agent (no seed axis). The loop
vmaps them over its leading agent axis (seeds, later sweep configurations), so nothing here knows how
many agents run at once.

Data flow of one training iteration (see `jaxdqn/loop/rollout.py`)::

    actions = act(state, obs, key, env_steps)             # obs: (num_envs, *obs_shape)
    ... the environment backend steps ...
    state = observe(state, step, env_steps, learning)     # step: `Step`, one row per environment
    every period, once learning has started:
    state, metrics = learn(state, key, env_steps)         # metrics: dict of float32 scalars

Hyperparameters a sweep could vary live in the state as arrays (`init(key, hyperparameters)`), never as
Python constants closed over at trace time, so agents with different values share one compiled program.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Protocol

from jaxdqn.config.schema import require


class Step(NamedTuple):
    """One environment step per environment (leading (num_envs,) axis), as the agent observes it.

    `obs` is o_t (what `act` saw), `action` a_t, `reward` r_{t+1}, `terminated`/`truncated` of that step,
    `next_obs` o_{t+1}. `real` is False for EnvPool's auto-reset step (the step after an episode ended: its
    action was ignored and `next_obs` is a reset observation), which is not a transition.
    """

    obs: Any
    action: Any
    reward: Any
    terminated: Any
    truncated: Any
    next_obs: Any
    real: Any


class AgentFns(NamedTuple):
    """The pure functions of one agent, built for one config and environment."""

    hyperparameters: Any
    """Pytree of float32/int32 scalars from the config: the values a sweep may vary per agent."""
    init: Callable
    """init(key, hyperparameters) -> state."""
    act: Callable
    """act(state, obs, key, env_steps) -> int32 actions, one per environment."""
    observe: Callable
    """observe(state, step: Step, env_steps, learning: bool scalar) -> state (store, or learn online where
    `learning`); env_steps counts the steps before this one."""
    learn: Callable
    """learn(state, key, env_steps) -> (state, metrics): called once per period after learning starts."""
    policy: Callable
    """policy(state) -> the parameters that `evaluate_act` needs (what evaluation and `restore_params` load)."""
    evaluate_act: Callable
    """evaluate_act(params, obs, key, epsilon) -> actions: the evaluation policy (epsilon 0: greedy)."""
    report: Callable
    """report(state, env_steps) -> dict of float32 scalars logged at each log point (epsilon, beta, ...)."""
    optional_fields: tuple = ()
    """State fields a checkpoint may leave out (`checkpoint_replay False`), refilled from a fresh `init`."""
    updates_per_learn: int = 0
    """Gradient updates one `learn` makes, as counted in the logs and summary; 0: the loop's
    `Plan.updates_per_period` (gradient_steps per training period)."""


class Agent(Protocol):
    """A registry entry: `AGENTS[name]`, or an object given by import path (`module:attribute`)."""

    name: str
    settings_type: type
    """Frozen dataclass of this agent's own settings; its fields are `jaxdqn train` flags."""
    run_time_fields: frozenset
    """Flat config fields whose values reach the agent only through its hyperparameters, not its program:
    configurations that differ only in them train as one compiled program in a sweep (optional; without it every
    configuration of a sweep compiles on its own). A clip that 0 turns off (`core.optim.SWITCHED_OFF_BY_ZERO`)
    changes the program between 0 and > 0."""

    def check(self, cfg, spec) -> None:
        """Raise ConfigError (one line) if this agent cannot train `cfg` on an environment with `spec`."""

    def build(self, cfg, spec) -> AgentFns:
        """The agent's pure functions for a validated `cfg` and the environment's `spec`."""


def check_data_parallel(cfg, **sizes: int) -> None:
    """ConfigError (one line) unless `cfg.loop.data_parallel` devices split each of `sizes` (config field name ->
    value: the environments, the batch, ...) evenly."""
    shards = cfg.loop.data_parallel
    for name, value in sizes.items():
        require(value % shards == 0, name, f"must split evenly over the data_parallel devices ({shards})", value)


def no_report(state, env_steps) -> dict:
    """`AgentFns.report` for agents with nothing to log beyond their learn metrics."""
    del state, env_steps
    return {}
