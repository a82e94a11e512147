"""Device-resident replay as pure functions over a state pytree (optax style: a factory returns them).

A replay is a `Replay(init, add, sample, update)`:

- `init(example)` builds the state from one example transition (a pytree of arrays without batch axis);
- `add(state, transitions, valid)` writes a batch of transitions, skipping rows where `valid` is False
  (EnvPool's auto-reset steps), so the ring stays dense;
- `sample(state, key, progress)` returns a `Sample(batch, indices, weights)`; `progress` in [0, 1] is the
  fraction of training done (prioritized replay anneals beta with it; uniform replay ignores it);
- `update(state, indices, td_errors)` feeds TD errors back (prioritized replay turns them into
  priorities; uniform replay returns the state unchanged).

The learner only ever sees these four functions, so uniform and prioritized replay are interchangeable.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import chex
import jax
import jax.numpy as jnp


class Transition(NamedTuple):
    """One environment transition (or a batch of them, with leading axes)."""

    obs: chex.Array
    action: chex.Array
    reward: chex.Array
    next_obs: chex.Array
    terminated: chex.Array


class ReplayState(NamedTuple):
    """Ring storage plus write position and fill level; `priorities` is unused (empty) for uniform replay."""

    storage: Any
    position: chex.Array
    size: chex.Array
    priorities: Any = ()


class Sample(NamedTuple):
    """A sampled batch, the slots it came from, and its importance weights."""

    batch: Any
    indices: chex.Array
    weights: chex.Array


class Replay(NamedTuple):
    """The four pure functions of a replay buffer."""

    init: Callable
    add: Callable
    sample: Callable
    update: Callable


def ring_positions(position, valid, capacity: int):
    """Slots for the valid rows of a batch written at `position`, in order; invalid rows get `capacity`.

    Returns (slots, number of valid rows). Writing with `.at[slots].set(..., mode="drop")` drops the
    invalid rows, so several environments' transitions land contiguously.
    """
    valid = valid.astype(jnp.int32)
    offsets = jnp.cumsum(valid) - 1
    slots = jnp.where(valid > 0, (position + offsets) % capacity, capacity)
    return slots, valid.sum()


def ring_write(storage, position, items, valid, capacity: int):
    """Write the valid rows of `items` (pytree, leading batch axis) into `storage` at `position`.

    Returns (new storage, new position, rows written).
    """
    slots, count = ring_positions(position, valid, capacity)
    storage = jax.tree.map(lambda buf, x: buf.at[slots].set(x.astype(buf.dtype), mode="drop"), storage, items)
    return storage, (position + count) % capacity, count


def make_uniform_replay(capacity: int, batch_size: int) -> Replay:
    """Uniform replay: samples `batch_size` written slots with replacement, all weights 1."""

    def init(example) -> ReplayState:
        storage = jax.tree.map(lambda x: jnp.zeros((capacity, *jnp.shape(x)), jnp.asarray(x).dtype), example)
        return ReplayState(storage, jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))

    def add(state: ReplayState, transitions, valid) -> ReplayState:
        storage, position, count = ring_write(state.storage, state.position, transitions, valid, capacity)
        size = jnp.minimum(state.size + count, capacity)
        return state._replace(storage=storage, position=position, size=size)

    def sample(state: ReplayState, key, progress=0.0) -> Sample:
        del progress
        indices = jax.random.randint(key, (batch_size,), 0, jnp.maximum(state.size, 1))
        batch = jax.tree.map(lambda buf: buf[indices], state.storage)
        return Sample(batch, indices, jnp.ones((batch_size,), jnp.float32))

    def update(state: ReplayState, indices, td_errors) -> ReplayState:
        del indices, td_errors
        return state

    return Replay(init, add, sample, update)


class SumTree(NamedTuple):
    """A binary sum tree in one flat array: node 1 is the root, leaves are nodes [leaves, 2 * leaves).

    `leaves` is the capacity rounded up to a power of two; node 0 is unused. Every internal node is
    recomputed as the sum of its two children whenever a leaf below it changes (never updated by
    adding deltas), so the total cannot drift away from the sum of the leaves.
    """

    nodes: chex.Array
    max_priority: chex.Array


def _tree_leaves(capacity: int) -> int:
    return 1 << max(0, (capacity - 1).bit_length())


def sumtree_init(capacity: int) -> SumTree:
    """An all-zero tree for `capacity` slots; new slots enter at max_priority (initially 1)."""
    return SumTree(jnp.zeros((2 * _tree_leaves(capacity),), jnp.float32), jnp.ones((), jnp.float32))


def sumtree_set(tree: SumTree, slots, values, valid=None) -> SumTree:
    """Set the leaves at `slots` to `values` (rows where `valid` is False are skipped), then recompute
    their ancestors level by level. Duplicate slots are allowed: one of their values is kept, and the
    ancestors are recomputed from whatever the leaves hold. Cost O(batch * log capacity).
    """
    num_leaves = tree.nodes.shape[0] // 2
    slots = slots.astype(jnp.int32)
    valid = jnp.ones(slots.shape, bool) if valid is None else valid
    nodes = tree.nodes.at[jnp.where(valid, slots + num_leaves, 2 * num_leaves)].set(values, mode="drop")
    index = jnp.where(valid, slots, 0) + num_leaves
    for _ in range(num_leaves.bit_length() - 1):
        index = index // 2
        nodes = nodes.at[index].set(nodes[2 * index] + nodes[2 * index + 1])
    return tree._replace(nodes=nodes)


def sumtree_find(tree: SumTree, targets):
    """Leaf slot for each target mass in [0, total): descend left when target <= left-child mass.

    A child with zero mass is never entered, so a slot with zero priority (never written) cannot be
    returned even when rounding pushes a target past the last non-zero leaf.
    """
    num_leaves = tree.nodes.shape[0] // 2
    index = jnp.ones(targets.shape, jnp.int32)
    for _ in range(num_leaves.bit_length() - 1):
        left_mass = tree.nodes[2 * index]
        right_mass = tree.nodes[2 * index + 1]
        go_right = jnp.where(left_mass <= 0, True, jnp.where(right_mass <= 0, False, targets > left_mass))
        targets = jnp.where(go_right, targets - left_mass, targets)
        index = 2 * index + go_right.astype(jnp.int32)
    return index - num_leaves


def make_prioritized_replay(capacity: int, batch_size: int, alpha: float = 0.6, beta0: float = 0.4,
                            priority_eps: float = 1e-6) -> Replay:
    """Proportional prioritized replay (Schaul et al. 2016) over the same ring storage as uniform replay.

    Slot i is sampled with probability p_i / sum p, p_i = (|td_i| + priority_eps)^alpha; new transitions
    enter at the largest priority seen so far. Sampling is stratified: one draw per equal segment of
    the total mass. Importance weights are (N * P(i))^-beta divided by the batch maximum, with beta
    annealed linearly from beta0 to 1 as `progress` goes from 0 to 1. alpha = 0 is uniform sampling.
    """
    uniform = make_uniform_replay(capacity, batch_size)

    def init(example) -> ReplayState:
        return uniform.init(example)._replace(priorities=sumtree_init(capacity))

    def add(state: ReplayState, transitions, valid) -> ReplayState:
        slots, _ = ring_positions(state.position, valid, capacity)
        tree = state.priorities
        tree = sumtree_set(tree, jnp.minimum(slots, capacity - 1),
                           jnp.full(slots.shape, tree.max_priority), slots < capacity)
        return uniform.add(state, transitions, valid)._replace(priorities=tree)

    def sample(state: ReplayState, key, progress=0.0) -> Sample:
        tree = state.priorities
        total = tree.nodes[1]
        segment = total / batch_size
        targets = (jnp.arange(batch_size) + jax.random.uniform(key, (batch_size,))) * segment
        indices = sumtree_find(tree, jnp.minimum(targets, total))
        num_leaves = tree.nodes.shape[0] // 2
        probabilities = tree.nodes[indices + num_leaves] / total
        beta = beta0 + (1.0 - beta0) * jnp.clip(progress, 0.0, 1.0)
        weights = (state.size.astype(jnp.float32) * probabilities) ** (-beta)
        weights = weights / weights.max()
        batch = jax.tree.map(lambda buf: buf[indices], state.storage)
        return Sample(batch, indices, weights)

    def update(state: ReplayState, indices, td_errors) -> ReplayState:
        priorities = (jnp.abs(td_errors) + priority_eps) ** alpha
        tree = sumtree_set(state.priorities, indices, priorities)
        tree = tree._replace(max_priority=jnp.maximum(tree.max_priority, priorities.max()))
        return state._replace(priorities=tree)

    return Replay(init, add, sample, update)


def make_replay(cfg) -> Replay:
    """The replay that `cfg` selects: prioritized when `cfg.prioritized`, else uniform."""
    if cfg.prioritized:
        return make_prioritized_replay(cfg.buffer_size, cfg.batch_size, cfg.priority_alpha, cfg.priority_beta0,
                                       cfg.priority_eps)
    return make_uniform_replay(cfg.buffer_size, cfg.batch_size)
