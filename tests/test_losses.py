"""Known-answer tests for the TD targets and losses, on tiny hand-computed arrays."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdqn.core import losses


def test_q_learning_non_terminal_bootstraps_from_max():
    # target = 1 + 0.9 * max(2, 5) = 5.5; q_tm1[a=1] = 3 -> td = 2.5
    td = losses.q_learning(jnp.array([1.0, 3.0]), 1, 1.0, 0.9, jnp.array([2.0, 5.0]))
    assert float(td) == pytest.approx(2.5)


def test_q_learning_terminal_does_not_bootstrap():
    # terminated: discount 0 -> target = r = 1; q_tm1[a=0] = 1.5 -> td = -0.5
    td = losses.q_learning(jnp.array([1.5, 3.0]), 0, 1.0, 0.0, jnp.array([100.0, 200.0]))
    assert float(td) == pytest.approx(-0.5)


def test_truncation_bootstraps_like_a_non_terminal_step():
    # a time-limit truncation keeps discount = gamma, so the next state's value counts
    q_t = jnp.array([4.0, 2.0])
    truncated = losses.q_learning(jnp.array([0.0, 0.0]), 0, 1.0, 0.99, q_t)
    assert float(truncated) == pytest.approx(1.0 + 0.99 * 4.0)


def test_double_q_learning_selects_with_online_values_with_target():
    # selector argmax is action 0 (7 > 1); value of action 0 in q_t_value is 2 -> target 1 + 0.5 * 2 = 2
    td = losses.double_q_learning(jnp.array([0.5, 0.0]), 0, 1.0, 0.5, jnp.array([2.0, 10.0]), jnp.array([7.0, 1.0]))
    assert float(td) == pytest.approx(1.5)
    plain = losses.q_learning(jnp.array([0.5, 0.0]), 0, 1.0, 0.5, jnp.array([2.0, 10.0]))
    assert float(plain) == pytest.approx(1.0 + 5.0 - 0.5)


def test_double_q_learning_terminal():
    td = losses.double_q_learning(jnp.array([0.5, 0.0]), 0, 2.0, 0.0, jnp.array([2.0, 10.0]), jnp.array([7.0, 1.0]))
    assert float(td) == pytest.approx(1.5)


def test_batched_with_vmap_matches_per_example():
    q_tm1 = jnp.array([[1.0, 2.0], [0.0, -1.0]])
    q_t = jnp.array([[3.0, 0.0], [1.0, 2.0]])
    td = jax.vmap(losses.q_learning)(q_tm1, jnp.array([1, 0]), jnp.array([0.0, 1.0]), jnp.array([1.0, 0.0]), q_t)
    np.testing.assert_allclose(td, [3.0 - 2.0, 1.0 - 0.0])


def test_rank_checked_at_trace_time():
    with pytest.raises(AssertionError):
        losses.q_learning(jnp.ones((2, 2)), 0, 1.0, 0.9, jnp.ones(2))


def test_l2_and_huber_known_values():
    td = jnp.array([0.5, -2.0, 3.0])
    np.testing.assert_allclose(losses.l2(td), [0.125, 2.0, 4.5])
    # huber, delta 1: 0.5*0.25; |td|-0.5 for |td|>1
    np.testing.assert_allclose(losses.huber(td, 1.0), [0.125, 1.5, 2.5])
    np.testing.assert_allclose(losses.huber(td, 2.0), [0.125, 2.0, 4.0])


def test_importance_weights_scale_each_example():
    td = jnp.array([1.0, 2.0])
    weights = jnp.array([1.0, 0.5])
    # mean(w * 0.5 td^2) = (0.5 + 0.5 * 2) / 2 = 0.75
    assert float(losses.weighted_loss(td, weights, "l2")) == pytest.approx(0.75)
    # huber: (0.5 + 0.5 * 1.5) / 2 = 0.625
    assert float(losses.weighted_loss(td, weights, "huber", 1.0)) == pytest.approx(0.625)
