"""Prioritized replay: sampling frequencies, importance weights, entry at max priority, empty and
non-finite cases, hyperparameters as data. The sum tree itself: tests/test_sumtree.py."""


import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import chisquare

from jaxdqn.core.replay import make_replay
from jaxdqn.core.sumtree import sumtree_leaves, sumtree_total


def _add(replay, state, steps, num_envs=1, real=None):
    """Add `steps` steps of every environment (obs = step number), all real unless `real` (steps, envs) says."""
    add = jax.jit(replay.add)
    for t in range(steps):
        ones = jnp.ones(num_envs)
        state = add(state, t * ones[:, None], jnp.zeros(num_envs, jnp.int32), ones, ones < 0,
                    ones > 0 if real is None else jnp.asarray(real[t]))
    return state


def _replay_with(priorities, alpha=1.0, batch_size=256, capacity=None):
    """One environment whose slots 0..n-1 are sampleable (n + 1 steps written) with priorities p^alpha."""
    n = len(priorities)
    replay = make_replay(capacity or n + 1, batch_size, 1, (1,), jnp.float32, True)
    state = _add(replay, replay.init(jnp.zeros(1)), n + 1)
    # eps 0: |td| = p gives priority p^alpha
    state = jax.jit(replay.update)(state, jnp.arange(n), jnp.asarray(priorities, jnp.float32), alpha, 0.0)
    return replay, state


def _frequencies(replay, state, draws=200, beta=0.4):
    sample = jax.jit(jax.vmap(replay.sample, in_axes=(None, 0, None)))
    out = sample(state, jax.random.split(jax.random.PRNGKey(0), draws), beta)
    counts = np.bincount(np.asarray(out.indices).ravel(), minlength=sumtree_leaves(state.priorities).size)
    return counts, out


@pytest.mark.parametrize("alpha", [0.5, 1.0])
def test_sampling_frequencies_match_p_alpha(alpha):
    raw = np.array([1.0, 2.0, 4.0, 8.0, 0.5, 3.0, 6.0, 1.5, 0.25, 10.0])
    replay, state = _replay_with(raw, alpha=alpha)
    counts, out = _frequencies(replay, state)  # 200 x 256 = 51,200 draws
    expected = raw**alpha / (raw**alpha).sum()
    assert counts[len(raw):].sum() == 0  # the newest slot has no next_obs yet
    # Stratified sampling is less variable than i.i.d. draws, so the chi-square test is conservative.
    assert chisquare(counts[:len(raw)], expected * counts.sum()).pvalue > 0.001
    np.testing.assert_allclose(counts[:len(raw)] / counts.sum(), expected, atol=0.01)
    np.testing.assert_array_equal(out.batch.obs[..., 0], out.indices)  # slot t holds obs t
    np.testing.assert_array_equal(out.batch.next_obs[..., 0], out.indices + 1)


def test_alpha_zero_is_uniform():
    raw = np.array([1.0, 100.0, 0.01, 5.0, 7.0, 0.3, 2.0, 9.0])
    replay, state = _replay_with(raw, alpha=0.0)
    counts, out = _frequencies(replay, state)
    assert chisquare(counts[:8]).pvalue > 0.001 and counts[8:].sum() == 0
    np.testing.assert_allclose(out.weights, 1.0, rtol=1e-5)


def test_priority_update_shifts_frequencies():
    replay, state = _replay_with(np.ones(4))
    before, _ = _frequencies(replay, state, draws=50)
    state = replay.update(state, jnp.array([2]), jnp.array([7.0]), 1.0, 0.0)  # slot 2: 7 of total 10
    after, _ = _frequencies(replay, state, draws=50)
    assert abs(before[2] / before.sum() - 0.25) < 0.02
    assert abs(after[2] / after.sum() - 0.7) < 0.02


def test_duplicate_indices_in_one_update():
    replay, state = _replay_with(np.ones(8))
    state = replay.update(state, jnp.array([3, 3, 3, 5]), jnp.array([2.0, 2.0, 2.0, 4.0]), 1.0, 0.0)
    leaves = np.asarray(sumtree_leaves(state.priorities))
    np.testing.assert_allclose(leaves[:8], [1, 1, 1, 2, 1, 4, 1, 1])
    assert (leaves[8:] == 0).all()
    assert float(sumtree_total(state.priorities)) == pytest.approx(leaves.sum())
    # with conflicting duplicates one value wins, and the tree stays consistent with its leaves
    state = replay.update(state, jnp.array([0, 0]), jnp.array([3.0, 5.0]), 1.0, 0.0)
    leaves = np.asarray(sumtree_leaves(state.priorities))
    assert leaves[0] in (3.0, 5.0)
    assert float(sumtree_total(state.priorities)) == pytest.approx(leaves.sum())


def test_importance_weights_by_hand():
    replay, state = _replay_with([1.0, 3.0], alpha=1.0, batch_size=8)  # P = [0.25, 0.75], n = 2
    probabilities = np.array([0.25, 0.75])
    for beta in (0.5, 0.75, 1.0):
        sample = replay.sample(state, jax.random.PRNGKey(0), jnp.float32(beta))
        drawn = np.asarray(sample.indices)
        assert set(drawn.tolist()) == {0, 1}
        w = (2 * probabilities[drawn]) ** -beta
        np.testing.assert_allclose(sample.weights, w / w.max(), rtol=1e-5)
    # by hand at beta 0.5: slot 0 weight (0.5)^-0.5 = 1.414, slot 1 (1.5)^-0.5 = 0.816 -> 1 and 0.577
    sample = replay.sample(state, jax.random.PRNGKey(0), 0.5)
    np.testing.assert_allclose(np.asarray(sample.weights)[np.asarray(sample.indices) == 1], 0.57735, rtol=1e-4)


def test_new_transitions_enter_at_max_priority():
    replay, state = _replay_with([1.0, 9.0, 2.0], capacity=8)
    state = _add(replay, state, 2)  # slot 3 gets its next obs, slot 4 is written, slot 5 is the newest
    np.testing.assert_allclose(np.asarray(sumtree_leaves(state.priorities)[:8]), [1, 9, 2, 9, 9, 0, 0, 0])


def test_per_environment_rows_auto_reset_and_newest_slots_have_no_mass():
    replay = make_replay(3 * 6, 16, 3, (1,), jnp.float32, True)  # 6 slots per environment
    real = np.ones((9, 3), bool)
    real[2, 0] = real[7, 1] = real[5, 2] = False
    state = _add(replay, replay.init(jnp.zeros(1)), 9, 3, real)  # wrapped: newest slot 2 (step 8)
    mass = np.asarray(sumtree_leaves(state.priorities))[:18].reshape(3, 6) > 0
    expected = np.ones((3, 6), bool)
    expected[:, 2] = False  # newest
    expected[1, 1] = expected[2, 5] = False  # steps 7 (slot 1) and 5 (slot 5); step 2 was overwritten
    np.testing.assert_array_equal(mass, expected)
    counts, _ = _frequencies(replay, state, draws=20)
    assert (counts[:18].reshape(3, 6)[~expected] == 0).all() and (counts[:18].reshape(3, 6)[expected] > 0).all()


def test_empty_and_zero_priority_slots_never_sampled():
    replay = make_replay(1000, 512, 1, (1,), jnp.float32, True)
    state = replay.init(jnp.zeros(1))
    out = jax.jit(replay.sample)(state, jax.random.PRNGKey(0), 0.4)
    assert float(jnp.abs(out.weights).max()) == 0  # nothing sampleable: finite weights of 0
    state = _add(replay, state, 5, real=np.array([[True], [False], [True], [True], [False]]))
    # sampleable slots 0, 2, 3 of 1000; tiny priorities invite rounding past the last leaf
    state = replay.update(state, jnp.array([0, 2, 3]), jnp.array([1e-6, 1e-6, 1e3]), 0.6, 1e-6)
    counts, out = _frequencies(replay, state, draws=20)
    assert counts[[1, *range(4, counts.size)]].sum() == 0
    assert counts[[0, 2, 3]].sum() == 20 * 512
    assert np.isfinite(out.weights).all()


def test_non_finite_td_errors_never_reach_the_tree():
    replay, state = _replay_with([1.0, 4.0, 2.0, 3.0, 1.0])
    state = jax.jit(replay.update)(state, jnp.array([0, 1, 2, 3]), jnp.array([jnp.nan, jnp.inf, -jnp.inf, 1e30]),
                                   2.0, 1e-6)
    leaves = np.asarray(sumtree_leaves(state.priorities))
    assert np.isfinite(leaves).all() and np.isfinite(float(sumtree_total(state.priorities)))
    # each non-finite |td| (and (1e30)^2, which overflows float32) takes the max priority, 4
    np.testing.assert_allclose(leaves[:5], [4, 4, 4, 4, 1])
    assert float(state.priorities.max_priority) == 4
    assert np.isfinite(np.asarray(jax.jit(replay.sample)(state, jax.random.PRNGKey(0), 0.4).weights)).all()


def test_update_skips_slots_no_longer_sampleable():
    replay, state = _replay_with([1.0, 2.0], capacity=3)  # slots 0, 1 sampleable, slot 2 newest
    state = _add(replay, state, 1)  # the ring wraps: slot 0 is the newest again
    state = replay.update(state, jnp.array([0, 1]), jnp.array([5.0, 6.0]), 1.0, 0.0)
    np.testing.assert_allclose(np.asarray(sumtree_leaves(state.priorities)[:3]), [0, 6, 2])


def test_hyperparameters_are_data_one_program_for_all_values():
    """alpha, beta and eps are traced: one compilation serves every value, and vmapped agents can each
    have their own."""
    replay, state = _replay_with(np.ones(6))
    traces = []

    def learn(state, key, beta, alpha, eps):
        traces.append(1)
        sample = replay.sample(state, key, beta)
        return replay.update(state, sample.indices, sample.batch.reward + sample.indices, alpha, eps), sample

    learn = jax.jit(learn)
    for alpha, beta, eps in [(0.6, 0.4, 1e-6), (0.0, 1.0, 0.1), (1.0, 0.7, 1e-3)]:
        _, sample = learn(state, jax.random.PRNGKey(0), beta, alpha, eps)
    assert len(traces) == 1
    agents = jax.tree.map(lambda x: jnp.stack([x, x]), state)
    new, _ = jax.vmap(learn)(agents, jax.random.split(jax.random.PRNGKey(1), 2), jnp.array([0.4, 1.0]),
                             jnp.array([0.0, 1.0]), jnp.array([1e-6, 1e-6]))
    leaves = np.asarray(new.priorities.levels[-1]).reshape(2, -1)[:, :6]
    np.testing.assert_allclose(leaves[0], 1.0)  # alpha 0: every priority 1
    assert not np.allclose(leaves[1], 1.0)


def test_prioritized_learn_compiles_once_and_updates_priorities():
    from jaxdqn.agents import resolve_agent
    from jaxdqn.agents.base import Step
    from jaxdqn.config.build import make_config
    from jaxdqn.envs import env_spec

    cfg = make_config(prioritized=True, batch_size=32, buffer_size=256, double_q=True, dueling=True,
                      learning_starts=32)
    fns = resolve_agent("dqn").build(cfg, env_spec("CartPole-v1"))
    state = fns.init(jax.random.PRNGKey(0), fns.hyperparameters)
    rng = np.random.default_rng(0)
    n = 100
    for t in range(n + 1):
        obs = jnp.asarray(rng.normal(size=(1, 4)), jnp.float32)
        step = Step(obs, jnp.zeros(1, jnp.int32), jnp.asarray(rng.normal(size=1), jnp.float32), jnp.zeros(1, bool),
                    jnp.zeros(1, bool), obs, jnp.ones(1, bool))
        state = fns.observe(state, step, t, True)
    assert np.allclose(np.asarray(sumtree_leaves(state.replay.priorities)[:n]), 1.0)  # entered at max priority
    traces = []

    def counted(state, key, env_steps):
        traces.append(1)
        return fns.learn(state, key, env_steps)

    learn = jax.jit(counted, donate_argnums=0)
    for i in range(4):
        state, _ = learn(state, jax.random.PRNGKey(i), jnp.int32(i * 100))
    assert len(traces) == 1
    leaves = np.asarray(sumtree_leaves(state.replay.priorities)[:n])
    assert not np.allclose(leaves, 1.0)  # sampled slots got |td|-based priorities
    assert float(sumtree_total(state.replay.priorities)) == pytest.approx(leaves.sum(), rel=1e-5)


def test_an_updates_priorities_are_in_the_tree_before_the_next_update_samples():
    """The DQN update writes the previous update's priorities before it samples (not after its own loss, which
    made XLA copy the leaf level): after update k+1, the tree holds (|td_k| + eps) ** alpha at update k's
    slots, and update k+1's own wait in `pending` for update k+2."""
    from jaxdqn.agents import resolve_agent
    from jaxdqn.agents.base import Step
    from jaxdqn.config.build import make_config
    from jaxdqn.envs import env_spec

    cfg = make_config(prioritized=True, batch_size=8, buffer_size=256, learning_starts=32, priority_alpha=0.5,
                      priority_eps=0.01)
    fns = resolve_agent("dqn").build(cfg, env_spec("CartPole-v1"))
    state = fns.init(jax.random.PRNGKey(0), fns.hyperparameters)
    rng = np.random.default_rng(1)
    for t in range(120):
        obs = jnp.asarray(rng.normal(size=(1, 4)), jnp.float32)
        step = Step(obs, jnp.zeros(1, jnp.int32), jnp.asarray(rng.normal(size=1), jnp.float32), jnp.zeros(1, bool),
                    jnp.zeros(1, bool), obs, jnp.ones(1, bool))
        state = fns.observe(state, step, t, True)
    learn = jax.jit(fns.learn)
    assert not bool(state.pending.valid)
    first, _ = learn(state, jax.random.PRNGKey(1), 120)
    np.testing.assert_array_equal(sumtree_leaves(first.replay.priorities), sumtree_leaves(state.replay.priorities))
    assert bool(first.pending.valid)
    second, _ = learn(first, jax.random.PRNGKey(2), 120)
    leaves = np.asarray(sumtree_leaves(second.replay.priorities))
    indices, td = np.asarray(first.pending.indices), np.asarray(first.pending.td_errors)
    for slot in set(indices.tolist()):  # a slot drawn twice keeps one of its values
        expected = (np.abs(td[indices == slot]) + 0.01) ** 0.5
        assert np.isclose(leaves[slot], expected, rtol=1e-5).any(), (slot, leaves[slot], expected)
    untouched = np.setdiff1d(np.arange(119), indices)
    np.testing.assert_array_equal(leaves[untouched], np.asarray(sumtree_leaves(state.replay.priorities))[untouched])
