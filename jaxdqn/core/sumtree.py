"""A 16-ary sum tree over slot priorities, as pure functions of a `SumTree` pytree.

Sampling a slot with probability proportional to its mass, and changing a batch of masses, both cost
O(batch * 16 * log16 capacity). Used by prioritized replay (`jaxdqn.core.replay`).
"""

from __future__ import annotations

from typing import NamedTuple

import chex
import jax.numpy as jnp


BRANCHING = 16
"""Children per sum-tree node: 16 float32 masses are one 64-byte cache line, so each level of a
descent is one contiguous row read, and a 10^6-slot tree has 5 levels instead of a binary tree's 20."""


class SumTree(NamedTuple):
    """A 16-ary sum tree stored level by level, each level an array of rows of 16 masses.

    `levels[-1]` holds the leaves (slot s is row s // 16, column s % 16); the node at (row r, column c)
    of a level is the sum of row 16 * r + c of the level below; `levels[0]` is a single row whose sum
    is the total. Each level is its own array, so recomputing a level reads one array and writes
    another and XLA updates in place. Every parent is recomputed as the sum of its children whenever a
    leaf below it changes (never updated by adding deltas), so the total cannot drift from the leaves.
    """

    levels: tuple
    max_priority: chex.Array


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def sumtree_init(capacity: int) -> SumTree:
    """An all-zero tree for `capacity` slots; new slots enter at max_priority (initially 1)."""
    sizes = [_round_up(capacity, BRANCHING)]
    while sizes[-1] > BRANCHING:
        sizes.append(_round_up(sizes[-1] // BRANCHING, BRANCHING))
    levels = tuple(jnp.zeros((size // BRANCHING, BRANCHING), jnp.float32) for size in reversed(sizes))
    return SumTree(levels, jnp.ones((), jnp.float32))


def sumtree_total(tree: SumTree):
    """The sum of all priorities."""
    return tree.levels[0].sum()


def sumtree_leaves(tree: SumTree):
    """The priorities of all slots, flat (padded with zeros to a multiple of 16)."""
    return tree.levels[-1].reshape(-1)


def sumtree_masses(tree: SumTree, slots):
    """The priorities of `slots`, read from the leaf rows in place (no flattened view of the leaves: inside a
    loop, XLA copied the whole leaf level to serve a gather through one before updating it in place)."""
    return tree.levels[-1][slots // BRANCHING, slots % BRANCHING]


def sumtree_set(tree: SumTree, slots, values, valid=None) -> SumTree:
    """Set the leaves at `slots` to `values` (rows where `valid` is False are skipped), then recompute
    their ancestors level by level. Duplicate slots are allowed: one of their values is kept, and the
    ancestors are recomputed from whatever the leaves hold. Cost O(batch * 16 * log16 capacity).
    """
    levels = list(tree.levels)
    slots = slots.astype(jnp.int32)
    valid = jnp.ones(slots.shape, bool) if valid is None else valid
    leaf_rows = levels[-1].shape[0]
    levels[-1] = levels[-1].at[jnp.where(valid, slots // BRANCHING, leaf_rows), slots % BRANCHING].set(
        values, mode="drop")
    rows = jnp.where(valid, slots, 0) // BRANCHING
    for depth in range(len(levels) - 2, -1, -1):
        row_sums = levels[depth + 1][rows].sum(axis=1)
        levels[depth] = levels[depth].at[rows // BRANCHING, rows % BRANCHING].set(row_sums)
        rows = rows // BRANCHING
    return tree._replace(levels=tuple(levels))


def sumtree_find(tree: SumTree, targets):
    """Leaf slot for each target mass in [0, total): at each level take the first child whose
    cumulative mass reaches the target.

    A child with zero mass is never entered, so a slot with zero priority (never written) cannot be
    returned, even when float rounding pushes a target past the last non-zero child.
    """
    rows = jnp.zeros(targets.shape, jnp.int32)
    columns = jnp.arange(BRANCHING)
    for level in tree.levels:
        masses = level[rows]  # (batch, 16)
        cumulative = jnp.cumsum(masses, axis=1)
        positive = masses > 0
        reaches = (cumulative >= targets[:, None]) & positive
        last_positive = jnp.max(jnp.where(positive, columns, 0), axis=1)
        child = jnp.where(reaches.any(axis=1), jnp.argmax(reaches, axis=1), last_positive)
        before = jnp.take_along_axis(cumulative - masses, child[:, None], axis=1)[:, 0]
        targets = targets - before
        rows = rows * BRANCHING + child
    return rows
