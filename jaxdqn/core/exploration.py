"""Epsilon schedules evaluated inside jit from the step counter, and batched epsilon-greedy.

A schedule is its kind (static: it picks the formula) plus its numbers (`epsilon_schedule_params`: arrays,
so agents with different values share one compiled program).
"""

from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp

SCHEDULES = ("constant", "linear", "exponential", "piecewise")

EXPLORATION_RUN_TIME_FIELDS = frozenset({"epsilon_start", "epsilon_end", "epsilon_decay_steps", "exploration_fraction"})
"""The exploration fields held in `epsilon_schedule_params`' arrays (exploration_fraction through the decay it
derives); the schedule's kind and the piecewise lists' lengths are program structure."""


def epsilon_schedule_params(exploration, decay_steps: int) -> dict:
    """The numbers of an exploration section (`ExplorationConfig`) as float32 arrays, with the decay's length
    in steps (`Plan.epsilon_decay_steps`: it may be a fraction of the run)."""
    boundaries = exploration.epsilon_boundaries or (0,)
    values = exploration.epsilon_values or (exploration.epsilon_start,)
    return {"epsilon_start": jnp.float32(exploration.epsilon_start),
            "epsilon_end": jnp.float32(exploration.epsilon_end),
            "epsilon_decay_steps": jnp.float32(decay_steps),
            "epsilon_boundaries": jnp.asarray(boundaries, jnp.float32),
            "epsilon_values": jnp.asarray(values, jnp.float32)}


def epsilon_at(kind: str, params: dict, step):
    """Epsilon of schedule `kind` with numbers `params` (see `epsilon_schedule_params`) at `step`; jit-safe."""
    step = jnp.asarray(step, jnp.float32)
    start, end = params["epsilon_start"], params["epsilon_end"]
    fraction = jnp.clip(step / params["epsilon_decay_steps"], 0.0, 1.0)
    if kind == "constant":
        return jnp.broadcast_to(start, ()).astype(jnp.float32)
    if kind == "linear":
        return start + fraction * (end - start)
    if kind == "exponential":
        return start * (end / start) ** fraction
    if kind == "piecewise":
        return jnp.interp(step, params["epsilon_boundaries"], params["epsilon_values"])
    raise ValueError(f"epsilon_schedule: unknown schedule {kind!r}; allowed: {', '.join(SCHEDULES)}")


def make_epsilon_schedule(exploration, decay_steps: int) -> Callable:
    """`epsilon(step)` for an exploration section and decay length, with its numbers fixed."""
    return functools.partial(epsilon_at, exploration.epsilon_schedule,
                             epsilon_schedule_params(exploration, decay_steps))


def epsilon_greedy(key, q_values, epsilon):
    """Per row of `q_values` (batch, actions): a uniform random action with probability epsilon, else argmax.

    One uniform draw per row serves both choices (explore when u < epsilon; the random action is
    floor(u / epsilon * actions)), so acting costs a single random-bits call per step.
    """
    batch, num_actions = q_values.shape
    greedy = jnp.argmax(q_values, axis=-1).astype(jnp.int32)
    u = jax.random.uniform(key, (batch,))
    explore = u < epsilon
    random_actions = jnp.minimum((u / jnp.maximum(epsilon, 1e-12) * num_actions).astype(jnp.int32), num_actions - 1)
    return jnp.where(explore, random_actions, greedy)
