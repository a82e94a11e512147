"""Prioritized replay: sum-tree exactness, sampling frequencies, importance weights, empty slots."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdqn.config import Config
from jaxdqn.replay import (make_prioritized_replay, sumtree_find, sumtree_init, sumtree_leaves, sumtree_set,
                           sumtree_total)


def _replay_with(priorities, alpha=1.0, beta0=0.4, batch_size=256, capacity=None):
    """A prioritized replay holding len(priorities) items x = slot index, with the given raw priorities."""
    n = len(priorities)
    replay = make_prioritized_replay(capacity or n, batch_size, alpha=alpha, beta0=beta0, priority_eps=0.0)
    state = replay.init({"x": jnp.zeros((), jnp.int32)})
    state = replay.add(state, {"x": jnp.arange(n)}, jnp.ones(n, bool))
    # |td| = p gives priority p^alpha
    state = replay.update(state, jnp.arange(n), jnp.asarray(priorities, jnp.float32))
    return replay, state


def _frequencies(replay, state, draws=200, progress=0.0):
    sample = jax.jit(jax.vmap(lambda k: replay.sample(state, k, progress)))
    out = sample(jax.random.split(jax.random.PRNGKey(0), draws))
    counts = np.bincount(np.asarray(out.indices).ravel(), minlength=state.storage["x"].shape[0])
    return counts, out


def _chi_square_p_value(counts, expected_probabilities):
    from math import erf, sqrt

    total = counts.sum()
    expected = expected_probabilities * total
    mask = expected > 0
    statistic = ((counts[mask] - expected[mask]) ** 2 / expected[mask]).sum()
    dof = mask.sum() - 1
    # Wilson-Hilferty normal approximation of the chi-square tail
    z = ((statistic / dof) ** (1 / 3) - (1 - 2 / (9 * dof))) / sqrt(2 / (9 * dof))
    return 0.5 * (1 - erf(z / sqrt(2)))


@pytest.mark.parametrize("alpha", [0.5, 1.0])
def test_sampling_frequencies_match_p_alpha(alpha):
    raw = np.array([1.0, 2.0, 4.0, 8.0, 0.5, 3.0, 6.0, 1.5, 0.25, 10.0])
    replay, state = _replay_with(raw, alpha=alpha)
    counts, _ = _frequencies(replay, state)  # 200 x 256 = 51,200 draws
    expected = raw**alpha / (raw**alpha).sum()
    # Stratified sampling is less variable than i.i.d. draws, so the chi-square test is conservative.
    assert _chi_square_p_value(counts, expected) > 0.001
    np.testing.assert_allclose(counts / counts.sum(), expected, atol=0.01)


def test_alpha_zero_is_uniform():
    raw = np.array([1.0, 100.0, 0.01, 5.0, 7.0, 0.3, 2.0, 9.0])
    replay, state = _replay_with(raw, alpha=0.0)
    counts, out = _frequencies(replay, state)
    assert _chi_square_p_value(counts, np.full(8, 1 / 8)) > 0.001
    np.testing.assert_allclose(out.weights, 1.0, rtol=1e-5)


def test_priority_update_shifts_frequencies():
    replay, state = _replay_with(np.ones(4))
    before, _ = _frequencies(replay, state, draws=50)
    state = replay.update(state, jnp.array([2]), jnp.array([7.0]))  # slot 2: 7 of total 10
    after, _ = _frequencies(replay, state, draws=50)
    assert abs(before[2] / before.sum() - 0.25) < 0.02
    assert abs(after[2] / after.sum() - 0.7) < 0.02


def test_duplicate_indices_in_one_update():
    replay, state = _replay_with(np.ones(8))
    state = replay.update(state, jnp.array([3, 3, 3, 5]), jnp.array([2.0, 2.0, 2.0, 4.0]))
    leaves = np.asarray(sumtree_leaves(state.priorities))
    np.testing.assert_allclose(leaves[:8], [1, 1, 1, 2, 1, 4, 1, 1])
    assert (leaves[8:] == 0).all()
    assert float(sumtree_total(state.priorities)) == pytest.approx(leaves.sum())
    # with conflicting duplicates one value wins, and the tree stays consistent with its leaves
    state = replay.update(state, jnp.array([0, 0]), jnp.array([3.0, 5.0]))
    leaves = np.asarray(sumtree_leaves(state.priorities))
    assert leaves[0] in (3.0, 5.0)
    assert float(sumtree_total(state.priorities)) == pytest.approx(leaves.sum())


def test_importance_weights_by_hand():
    raw = np.array([1.0, 3.0])  # alpha 1: P = [0.25, 0.75], N = 2
    replay, state = _replay_with(raw, alpha=1.0, beta0=0.5, batch_size=8)
    probabilities = np.array([0.25, 0.75])
    for progress, beta in [(0.0, 0.5), (0.5, 0.75), (1.0, 1.0)]:  # beta annealed linearly to 1
        sample = replay.sample(state, jax.random.PRNGKey(0), progress)
        drawn = np.asarray(sample.indices)
        assert set(drawn.tolist()) == {0, 1}
        w = (2 * probabilities[drawn]) ** -beta
        np.testing.assert_allclose(sample.weights, w / w.max(), rtol=1e-5)
    # by hand at beta 0.5: slot 0 weight (0.5)^-0.5 = 1.414, slot 1 (1.5)^-0.5 = 0.816 -> 1 and 0.577
    sample = replay.sample(state, jax.random.PRNGKey(0), 0.0)
    np.testing.assert_allclose(np.asarray(sample.weights)[np.asarray(sample.indices) == 1], 0.57735, rtol=1e-4)


def test_new_transitions_enter_at_max_priority():
    replay, state = _replay_with([1.0, 9.0, 2.0], capacity=8)
    state = replay.add(state, {"x": jnp.array([3, 4])}, jnp.array([True, True]))
    np.testing.assert_allclose(np.asarray(sumtree_leaves(state.priorities)[:5]), [1, 9, 2, 9, 9])


def test_empty_and_zero_priority_slots_never_sampled():
    capacity = 1000
    replay = make_prioritized_replay(capacity, 512, alpha=0.6, priority_eps=1e-6)
    state = replay.init({"x": jnp.zeros((), jnp.int32)})
    state = replay.add(state, {"x": jnp.arange(5)}, jnp.array([True, False, True, True, False]))
    # three written slots 0, 1, 2 of 1000; tiny priorities invite rounding past the last leaf
    state = replay.update(state, jnp.array([0, 1, 2]), jnp.array([1e-6, 1e-6, 1e3]))
    counts, _ = _frequencies(replay, state, draws=100)
    assert counts[3:].sum() == 0
    assert counts[:3].sum() == 100 * 512


def test_tree_total_matches_leaves_after_many_random_updates():
    capacity, batch = 4096, 128
    tree = sumtree_init(capacity)
    update = jax.jit(lambda tree, slots, values: sumtree_set(tree, slots, values))

    def many(tree, key):
        def body(tree, key):
            k1, k2 = jax.random.split(key)
            slots = jax.random.randint(k1, (batch,), 0, capacity)
            values = jax.random.uniform(k2, (batch,), maxval=100.0) ** 2
            return update(tree, slots, values), None
        return jax.lax.scan(body, tree, jax.random.split(key, 800))[0]

    tree = jax.jit(many)(tree, jax.random.PRNGKey(0))  # 800 x 128 = 102,400 leaf updates
    leaves = np.asarray(sumtree_leaves(tree), np.float64)
    assert float(sumtree_total(tree)) == pytest.approx(leaves.sum(), rel=1e-5)
    # every internal node equals the sum of its 16 children (up to float32 summation order)
    for parents, children in zip(tree.levels[:-1], tree.levels[1:]):
        row_sums = np.asarray(jnp.sum(children, axis=1))
        flat_parents = np.asarray(parents).reshape(-1)
        np.testing.assert_allclose(flat_parents[:len(row_sums)], row_sums, rtol=1e-6)
        assert (flat_parents[len(row_sums):] == 0).all()
    # the leaf search agrees with a cumulative-sum search
    targets = np.random.default_rng(0).random(1000) * leaves.sum()
    found = np.asarray(sumtree_find(tree, jnp.asarray(targets, jnp.float32)))
    reference = np.searchsorted(np.cumsum(leaves), targets, side="left")
    assert (found == reference).mean() > 0.99  # float32 rounding may move a target across a boundary


def test_prioritized_train_step_compiles_once_and_updates_priorities():
    from jaxdqn.learner import LearnerParts, init_agent, make_optimizer, make_train_step
    from jaxdqn.networks import make_network
    from jaxdqn.replay import Transition, make_replay

    cfg = dataclasses.replace(Config(), prioritized=True, batch_size=32, buffer_size=256, double_q=True,
                              dueling=True)
    parts = LearnerParts(make_network(cfg, 2), make_optimizer(cfg), make_replay(cfg))
    example = jnp.zeros(4)
    state = init_agent(parts, jax.random.PRNGKey(0), example,
                       Transition(example, jnp.int32(0), jnp.float32(0), example, jnp.bool_(False)))
    n = 100
    rng = np.random.default_rng(0)
    batch = Transition(jnp.asarray(rng.normal(size=(n, 4)), jnp.float32), jnp.zeros(n, jnp.int32),
                       jnp.asarray(rng.normal(size=n), jnp.float32), jnp.asarray(rng.normal(size=(n, 4)), jnp.float32),
                       jnp.zeros(n, bool))
    state = state._replace(replay=parts.replay.add(state.replay, batch, jnp.ones(n, bool)))
    assert np.allclose(np.asarray(sumtree_leaves(state.replay.priorities)[:n]), 1.0)
    traces = []

    def counted(state, key, progress):
        traces.append(1)
        return make_train_step(cfg, parts)(state, key, progress)

    step = jax.jit(counted, donate_argnums=0)
    for i in range(4):
        state, _ = step(state, jax.random.PRNGKey(i), jnp.float32(i / 4))
    assert len(traces) == 1
    leaves = np.asarray(sumtree_leaves(state.replay.priorities)[:n])
    assert not np.allclose(leaves, 1.0)  # sampled slots got |td|-based priorities
    assert float(sumtree_total(state.replay.priorities)) == pytest.approx(leaves.sum(), rel=1e-5)
