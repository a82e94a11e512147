"""Epsilon schedules evaluated inside jit from the step counter, and batched epsilon-greedy."""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp


def make_epsilon_schedule(cfg) -> Callable:
    """Return `epsilon(step)` for the schedule `cfg.epsilon_schedule`; jit-safe in `step`."""
    start, end, steps = cfg.epsilon_start, cfg.epsilon_end, cfg.epsilon_decay_steps
    kind = cfg.epsilon_schedule

    if kind == "constant":
        return lambda step: jnp.full((), start, jnp.float32)
    if kind == "linear":
        def linear(step):
            fraction = jnp.clip(jnp.asarray(step, jnp.float32) / steps, 0.0, 1.0)
            return start + fraction * (end - start)
        return linear
    if kind == "exponential":
        def exponential(step):
            fraction = jnp.clip(jnp.asarray(step, jnp.float32) / steps, 0.0, 1.0)
            return start * (end / start) ** fraction
        return exponential
    if kind == "piecewise":
        boundaries = jnp.asarray(cfg.epsilon_boundaries, jnp.float32)
        values = jnp.asarray(cfg.epsilon_values, jnp.float32)
        return lambda step: jnp.interp(jnp.asarray(step, jnp.float32), boundaries, values)
    raise ValueError(f"epsilon_schedule: unknown schedule {kind!r}")


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
