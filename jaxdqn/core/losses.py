"""Per-example TD errors, returns and losses, rlax style: one transition (or one sequence) in, batch with
`jax.vmap`.

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


def lambda_returns(r_t, discount_t, v_t, lambda_t):
    """lambda-returns of one sequence (time axis first), computed backwards:

        G_t = r_t + discount_t * ((1 - lambda_t) * v_t + lambda_t * G_{t+1}),   G_T = v_{T-1},

    where v_t is the value of the state reached by step t (for Q(lambda), max_a Q(s_{t+1}, a)). So the last step
    bootstraps fully from v_{T-1}; lambda_t = 0 cuts the sequence after step t (an episode's end: G_t then uses
    v_t alone, and discount_t = 0 at a termination leaves r_t).
    """
    chex.assert_rank([r_t, discount_t, v_t, lambda_t], 1)
    chex.assert_equal_shape([r_t, discount_t, v_t, lambda_t])

    def backwards(g_next, step):
        r, discount, v, lam = step
        g = r + discount * ((1.0 - lam) * v + lam * g_next)
        return g, g

    _, returns = jax.lax.scan(backwards, v_t[-1], (r_t, discount_t, v_t, lambda_t), reverse=True)
    return jax.lax.stop_gradient(returns)


def categorical_projection(z_target, probs, atoms):
    """Project the distribution with probabilities `probs` on values `z_target` onto the evenly spaced `atoms`
    (Bellemare et al. 2017): values are clipped to [atoms[0], atoms[-1]] and each one's mass is split between its
    two neighbouring atoms in proportion to closeness (all of it to an atom it falls on)."""
    chex.assert_rank([z_target, probs, atoms], 1)
    chex.assert_equal_shape([z_target, probs, atoms])
    spacing = atoms[1] - atoms[0]
    position = (jnp.clip(z_target, atoms[0], atoms[-1]) - atoms[0]) / spacing  # in units of atoms
    closeness = jnp.clip(1.0 - jnp.abs(position[None, :] - jnp.arange(atoms.shape[0])[:, None]), 0.0, 1.0)
    return closeness @ probs


def categorical_q_learning(logits_tm1, a_tm1, r_t, discount_t, logits_t, q_t_selector, atoms):
    """C51's per-example loss: the cross-entropy between the projected target distribution of
    r_t + discount_t * Z(s_t, argmax q_t_selector) (from `logits_t`, the target network's) and the predicted
    distribution of action a_tm1. Logits are (num_actions, num_atoms); `q_t_selector` (num_actions,) picks the
    bootstrap action (the target network's expected values, or the online network's for double Q-learning)."""
    chex.assert_rank([logits_tm1, a_tm1, r_t, discount_t, logits_t, q_t_selector, atoms], [2, 0, 0, 0, 2, 1, 1])
    probs_t = jax.nn.softmax(logits_t[jnp.argmax(q_t_selector)])
    target = jax.lax.stop_gradient(categorical_projection(r_t + discount_t * atoms, probs_t, atoms))
    return -jnp.sum(target * jax.nn.log_softmax(logits_tm1[a_tm1]))


def quantile_midpoints(num_quantiles: int):
    """tau_i = (2i + 1) / (2N): the quantile fractions QR-DQN's N outputs estimate."""
    return (jnp.arange(num_quantiles, dtype=jnp.float32) + 0.5) / num_quantiles


def quantile_q_learning(dist_tm1, a_tm1, r_t, discount_t, dist_t, q_t_selector, kappa):
    """QR-DQN's per-example loss (Dabney et al. 2017): the quantile Huber loss of the predicted quantiles of action
    a_tm1 against the target samples r_t + discount_t * theta_j(s_t, argmax q_t_selector), summed over predicted
    quantiles i and averaged over targets j: sum_i mean_j |tau_i - 1{u_ij < 0}| * huber_kappa(u_ij) / kappa, with
    u_ij = target_j - theta_i. `dist_*` are (num_actions, num_quantiles)."""
    chex.assert_rank([dist_tm1, a_tm1, r_t, discount_t, dist_t, q_t_selector], [2, 0, 0, 0, 2, 1])
    target = jax.lax.stop_gradient(r_t + discount_t * dist_t[jnp.argmax(q_t_selector)])
    predicted = dist_tm1[a_tm1]
    u = target[None, :] - predicted[:, None]  # (i: predicted, j: target)
    tau = quantile_midpoints(predicted.shape[0])[:, None]
    weight = jnp.abs(tau - jax.lax.stop_gradient((u < 0).astype(jnp.float32)))
    return jnp.sum(jnp.mean(weight * huber(u, kappa) / kappa, axis=1))
