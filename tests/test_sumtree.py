"""The 16-ary sum tree: totals equal leaves, parents equal children, the search agrees with a cumsum."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdqn.core.sumtree import BRANCHING, sumtree_find, sumtree_init, sumtree_leaves, sumtree_set, sumtree_total


def test_shape_and_set_by_hand():
    tree = sumtree_init(40)  # 40 leaves padded to 48: 3 rows of 16 under one root row
    assert [level.shape for level in tree.levels] == [(1, BRANCHING), (3, BRANCHING)]
    tree = sumtree_set(tree, jnp.array([0, 17, 39, 5]), jnp.array([1.0, 2.0, 4.0, 8.0]),
                       jnp.array([True, True, True, False]))  # the last row is skipped
    np.testing.assert_array_equal(tree.levels[0][0, :4], [1, 2, 4, 0])
    assert float(sumtree_total(tree)) == 7
    # targets in [0, 1) find slot 0, [1, 3) slot 17, [3, 7) slot 39
    np.testing.assert_array_equal(sumtree_find(tree, jnp.array([0.0, 0.5, 1.0, 1.5, 3.0, 6.9, 7.0])),
                                  [0, 0, 0, 17, 17, 39, 39])


def test_zero_mass_leaves_are_never_found():
    tree = sumtree_set(sumtree_init(1000), jnp.array([3, 700]), jnp.array([1e-6, 1e-6]))
    found = np.asarray(sumtree_find(tree, jnp.linspace(0.0, 1.0, 101) * sumtree_total(tree) * 1.01))
    assert set(found.tolist()) == {3, 700}  # even targets rounded past the total land on a positive leaf


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
