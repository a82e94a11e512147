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


def test_lambda_returns_known_values():
    r, discount, v = jnp.array([1.0, 2.0, 3.0]), jnp.full(3, 0.5), jnp.array([10.0, 20.0, 30.0])
    # G2 = 3 + 0.5 * 30 = 18 (the last step bootstraps fully); G1 = 2 + 0.5 * (0.5 * 20 + 0.5 * 18) = 11.5;
    # G0 = 1 + 0.5 * (0.5 * 10 + 0.5 * 11.5) = 6.375
    np.testing.assert_allclose(losses.lambda_returns(r, discount, v, jnp.full(3, 0.5)), [6.375, 11.5, 18.0])
    # lambda 0: one-step targets r + discount * v; lambda 1: discounted rewards bootstrapped at the end
    np.testing.assert_allclose(losses.lambda_returns(r, discount, v, jnp.zeros(3)), [6.0, 12.0, 18.0])
    np.testing.assert_allclose(losses.lambda_returns(r, discount, v, jnp.ones(3)), [6.5, 11.0, 18.0])


def test_lambda_returns_stop_where_lambda_is_cut_and_pass_no_gradient():
    # lambda 0 at step 1 (an episode's end): G1 = 2 + 0.5 * 20 = 12, and G0 = 1 + 0.5 * (0.5 * 10 + 0.5 * 12) = 6.5
    r, discount, v = jnp.array([1.0, 2.0, 3.0]), jnp.full(3, 0.5), jnp.array([10.0, 20.0, 30.0])
    lambdas = jnp.array([0.5, 0.0, 0.5])
    np.testing.assert_allclose(losses.lambda_returns(r, discount, v, lambdas), [6.5, 12.0, 18.0])
    grad = jax.grad(lambda v: losses.lambda_returns(r, discount, v, lambdas).sum())(v)
    np.testing.assert_array_equal(grad, np.zeros(3))


def test_categorical_projection_known_values_including_the_edges():
    atoms = jnp.array([-1.0, 0.0, 1.0])
    probs = jnp.array([0.2, 0.3, 0.5])
    # r 0.5, discount 1: values -0.5, 0.5, 1.5 -> clipped to 1 (the top edge takes all of its 0.5);
    # -0.5 splits 0.1/0.1 between atoms -1 and 0, 0.5 splits 0.15/0.15 between 0 and 1
    np.testing.assert_allclose(losses.categorical_projection(0.5 + atoms, probs, atoms), [0.1, 0.25, 0.65], rtol=1e-6)
    # below the bottom edge everything lands on atom -1; a value on an atom keeps all of its mass there
    np.testing.assert_allclose(losses.categorical_projection(atoms - 5.0, probs, atoms), [1.0, 0.0, 0.0])
    np.testing.assert_allclose(losses.categorical_projection(atoms, probs, atoms), probs, rtol=1e-6)


def test_categorical_q_learning_terminal_step_targets_the_reward_alone():
    atoms = jnp.array([-1.0, 0.0, 1.0])
    logits_tm1 = jnp.log(jnp.array([[0.2, 0.3, 0.5], [0.6, 0.2, 0.2]]))
    logits_t = jnp.zeros((2, 3))  # whatever the next state's distribution: discount 0 leaves r
    # terminal: target mass all at r = 0.5 -> half on atom 0, half on atom 1; action 1 predicts [0.6, 0.2, 0.2]
    loss = losses.categorical_q_learning(logits_tm1, 1, 0.5, 0.0, logits_t, jnp.zeros(2), atoms)
    assert float(loss) == pytest.approx(-(0.5 * np.log(0.2) + 0.5 * np.log(0.2)), rel=1e-6)
    # non-terminal, discount 1, r 0: the target is the selected next action's own distribution
    target_logits = jnp.log(jnp.array([[0.1, 0.1, 0.8], [0.7, 0.2, 0.1]]))
    loss = losses.categorical_q_learning(logits_tm1, 0, 0.0, 1.0, target_logits, jnp.array([0.0, 5.0]), atoms)
    assert float(loss) == pytest.approx(-(0.7 * np.log(0.2) + 0.2 * np.log(0.3) + 0.1 * np.log(0.5)), rel=1e-5)


def test_quantile_huber_loss_known_value():
    # tau = 0.25, 0.75; predicted quantiles of action 0: [0, 1]; target samples r + discount * [0.5, 2] = [0.5, 2]
    # u = [[0.5, 2], [-0.5, 1]]; huber(1): [[0.125, 1.5], [0.125, 0.5]]; weights [[0.25, 0.25], [0.25, 0.75]]
    # -> sum_i mean_j = (0.03125 + 0.375) / 2 + (0.03125 + 0.375) / 2 = 0.40625
    dist_tm1 = jnp.array([[0.0, 1.0], [9.0, 9.0]])
    dist_t = jnp.array([[0.5, 2.0], [-3.0, -3.0]])
    loss = losses.quantile_q_learning(dist_tm1, 0, 0.0, 1.0, dist_t, jnp.array([1.0, 0.0]), 1.0)
    assert float(loss) == pytest.approx(0.40625)
    # terminal: every target sample is r; predicted [0, 1] against r = 0 -> u = [[0], [-1]]: 0 + 0.25 * 0.5
    loss = losses.quantile_q_learning(dist_tm1, 0, 0.0, 0.0, dist_t, jnp.array([1.0, 0.0]), 1.0)
    assert float(loss) == pytest.approx(0.125)
