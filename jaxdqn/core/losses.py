"""Per-example TD errors and losses, rlax style: one transition in, batch with `jax.vmap`.

`discount_t` is gamma for a non-terminal next state and 0 for a terminal one, so a time-limit
truncation (not a termination) still bootstraps from the next state's value.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp


def q_learning(q_tm1, a_tm1, r_t, discount_t, q_t):
    """TD error of the one-step Q-learning target r_t + discount_t * max_a q_t[a]."""
    chex.assert_rank([q_tm1, a_tm1, r_t, discount_t, q_t], [1, 0, 0, 0, 1])
    target = jax.lax.stop_gradient(r_t + discount_t * jnp.max(q_t))
    return target - q_tm1[a_tm1]


def double_q_learning(q_tm1, a_tm1, r_t, discount_t, q_t_value, q_t_selector):
    """TD error of the double Q-learning target: q_t_selector picks the action, q_t_value values it."""
    chex.assert_rank([q_tm1, a_tm1, r_t, discount_t, q_t_value, q_t_selector], [1, 0, 0, 0, 1, 1])
    best = jnp.argmax(q_t_selector)
    target = jax.lax.stop_gradient(r_t + discount_t * q_t_value[best])
    return target - q_tm1[a_tm1]


def l2(td_error):
    """0.5 * td^2."""
    return 0.5 * jnp.square(td_error)


def huber(td_error, delta: float = 1.0):
    """Huber (smooth-L1) loss: quadratic within |td| <= delta, linear beyond."""
    abs_td = jnp.abs(td_error)
    quadratic = jnp.minimum(abs_td, delta)
    return 0.5 * jnp.square(quadratic) + delta * (abs_td - quadratic)


def weighted_loss(td_errors, weights, kind: str = "l2", delta: float = 1.0):
    """Mean over the batch of importance-weighted per-example losses."""
    chex.assert_equal_shape([td_errors, weights])
    per_example = huber(td_errors, delta) if kind == "huber" else l2(td_errors)
    return jnp.mean(weights * per_example)
