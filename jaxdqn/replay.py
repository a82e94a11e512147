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
        total = sumtree_total(tree)
        segment = total / batch_size
        targets = (jnp.arange(batch_size) + jax.random.uniform(key, (batch_size,))) * segment
        indices = sumtree_find(tree, jnp.minimum(targets, total))
        probabilities = sumtree_leaves(tree)[indices] / total
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


class FrameStorage(NamedTuple):
    """Per-environment rings of single frames, shape (num_envs, slots, ...).

    Slot t of environment n holds the newest frame of the observation the agent saw at that step,
    the action taken, the reward and `terminated` of the step, and two flags: `real` (the step was a
    real transition, not EnvPool's auto-reset step) and `stack_start` (the observation's frames are all
    copies of its newest one, as EnvPool stacks them at a game's start, so no older frame belongs to
    it). The stack of slot t is frames t-3..t, each frame older than the newest `stack_start` slot in
    that window replaced by the frame of that slot; next_obs is the stack of slot t+1.
    """

    frames: chex.Array  # (N, L, H, W) uint8
    action: chex.Array  # (N, L) int32
    reward: chex.Array  # (N, L) float32
    terminated: chex.Array  # (N, L) bool
    real: chex.Array  # (N, L) bool
    stack_start: chex.Array  # (N, L) bool


def is_frame_stack(obs_shape, obs_dtype) -> bool:
    """True for stacked uint8 images (frames, height, width), the observations the frame replay stores."""
    return len(obs_shape) == 3 and jnp.dtype(obs_dtype) == jnp.uint8 and obs_shape[0] > 1


def frame_slot_indices(slots, starts, stack: int):
    """Ring slots of the frames of the stacks ending at `slots` (batch,), given stack-start flags.

    `starts` (batch, stack) are the `stack_start` flags of slots t-stack+1..t. Returns (batch, stack)
    slots t+d for d = -(stack-1)..0, with d raised to the newest start's offset where it lies before it
    (not yet taken modulo the ring size).
    """
    offsets = jnp.arange(-(stack - 1), 1)
    newest_start = jnp.max(jnp.where(starts, offsets, -stack), axis=-1, keepdims=True)
    return slots[:, None] + jnp.maximum(offsets, newest_start)


def rebuild_stacks(storage: FrameStorage, envs, slots, stack: int):
    """The (obs, next_obs) stacks of the transitions at `slots` of environments `envs` (both (batch,))."""
    slots_per_env = storage.frames.shape[1]
    offsets = jnp.arange(-(stack - 1), 2)  # frames t-3..t+1 for a 4-frame stack
    starts = storage.stack_start[envs[:, None], (slots[:, None] + offsets) % slots_per_env]
    obs_slots = frame_slot_indices(slots, starts[:, :-1], stack) % slots_per_env
    next_slots = frame_slot_indices(slots + 1, starts[:, 1:], stack) % slots_per_env
    return storage.frames[envs[:, None], obs_slots], storage.frames[envs[:, None], next_slots]


def make_frame_replay(capacity: int, batch_size: int, num_envs: int, stack: int = 4, prioritized: bool = False,
                      alpha: float = 0.6, beta0: float = 0.4, priority_eps: float = 1e-6) -> Replay:
    """Replay for stacked image observations that stores each frame once (about 7.1 KB per 84x84 slot).

    `add` takes one transition per environment (all `num_envs` every call, `valid` False for EnvPool's
    auto-reset step) and writes the newest frame of `obs` into that environment's ring of
    capacity // num_envs slots; stacks of obs and next_obs are rebuilt at sample time (see
    `FrameStorage`), so the frame of an auto-reset step (the last observation of the episode that
    ended) is kept, and a new game's stack never shows frames of the previous one.

    A slot can be sampled once the next slot is written (it holds next_obs's frame), when its step was
    real, and while the `stack - 1` older frames its stack may need are not overwritten (the
    `stack - 1` oldest slots of a full ring are skipped). Sampleable slots have mass in a sum tree: 1
    for uniform replay, the priority (as in `make_prioritized_replay`) for prioritized replay; every
    other slot has 0. Sample indices are n * (capacity // num_envs) + slot.
    """
    slots_per_env = capacity // num_envs
    if slots_per_env < stack + 2:
        raise ValueError(f"frame replay: capacity // num_envs must be >= {stack + 2} (got {slots_per_env})")
    leaves = slots_per_env * num_envs

    def init(example) -> ReplayState:
        chex.assert_shape(example.obs, (stack, None, None))
        frame_shape = example.obs.shape[1:]
        shape = (num_envs, slots_per_env)
        storage = FrameStorage(jnp.zeros((*shape, *frame_shape), example.obs.dtype), jnp.zeros(shape, jnp.int32),
                               jnp.zeros(shape, jnp.float32), jnp.zeros(shape, bool), jnp.zeros(shape, bool),
                               jnp.zeros(shape, bool))
        return ReplayState(storage, jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32), sumtree_init(leaves))

    def add(state: ReplayState, transitions, valid) -> ReplayState:
        storage, position = state.storage, state.position
        obs = transitions.obs
        newest = obs[:, -1]
        stack_start = jnp.all(obs == newest[:, None], axis=tuple(range(1, obs.ndim)))
        storage = FrameStorage(
            storage.frames.at[:, position].set(newest),
            storage.action.at[:, position].set(transitions.action.astype(jnp.int32)),
            storage.reward.at[:, position].set(transitions.reward.astype(jnp.float32)),
            storage.terminated.at[:, position].set(transitions.terminated.astype(bool)),
            storage.real.at[:, position].set(valid),
            storage.stack_start.at[:, position].set(stack_start))
        tree = state.priorities
        mass = tree.max_priority if prioritized else jnp.ones((), jnp.float32)
        previous = (position - 1) % slots_per_env
        zeros = jnp.zeros((num_envs,), jnp.float32)
        # The newest slot waits for its next frame; the previous one now has it; the stack - 1 slots
        # after the newest are the oldest, whose stacks may need frames already overwritten.
        slot_updates = [(position, zeros),
                        (previous, jnp.where(storage.real[:, previous] & (state.size > 0), mass, 0.0))]
        slot_updates += [((position + k) % slots_per_env, zeros) for k in range(1, stack)]
        rows = jnp.arange(num_envs) * slots_per_env
        tree = sumtree_set(tree, jnp.concatenate([rows + slot for slot, _ in slot_updates]),
                           jnp.concatenate([value for _, value in slot_updates]))
        return ReplayState(storage, (position + 1) % slots_per_env, jnp.minimum(state.size + 1, slots_per_env), tree)

    def sample(state: ReplayState, key, progress=0.0) -> Sample:
        tree = state.priorities
        total = sumtree_total(tree)
        if prioritized:  # stratified, as in make_prioritized_replay
            targets = (jnp.arange(batch_size) + jax.random.uniform(key, (batch_size,))) * (total / batch_size)
        else:
            targets = jax.random.uniform(key, (batch_size,)) * total
        indices = sumtree_find(tree, jnp.minimum(targets, total))
        envs, slots = indices // slots_per_env, indices % slots_per_env
        storage = state.storage
        obs, next_obs = rebuild_stacks(storage, envs, slots, stack)
        batch = Transition(obs, storage.action[envs, slots], storage.reward[envs, slots], next_obs,
                           storage.terminated[envs, slots])
        if prioritized:
            probabilities = sumtree_leaves(tree)[indices] / total
            beta = beta0 + (1.0 - beta0) * jnp.clip(progress, 0.0, 1.0)
            weights = ((num_envs * state.size).astype(jnp.float32) * probabilities) ** (-beta)
            weights = weights / weights.max()
        else:
            weights = jnp.ones((batch_size,), jnp.float32)
        return Sample(batch, indices, weights)

    def update(state: ReplayState, indices, td_errors) -> ReplayState:
        if not prioritized:
            return state
        priorities = (jnp.abs(td_errors) + priority_eps) ** alpha
        tree = sumtree_set(state.priorities, indices, priorities)
        tree = tree._replace(max_priority=jnp.maximum(tree.max_priority, priorities.max()))
        return state._replace(priorities=tree)

    return Replay(init, add, sample, update)


def make_replay(cfg, obs_shape=None, obs_dtype=None) -> Replay:
    """The replay that `cfg` selects: prioritized when `cfg.prioritized`, else uniform.

    Given the observation shape and dtype, stacked uint8 images (Atari) get the frame replay, which
    stores each frame once, with one ring per environment of `cfg.num_envs`.
    """
    if obs_shape is not None and is_frame_stack(obs_shape, obs_dtype):
        return make_frame_replay(cfg.buffer_size, cfg.batch_size, cfg.num_envs, obs_shape[0], cfg.prioritized,
                                 cfg.priority_alpha, cfg.priority_beta0, cfg.priority_eps)
    if cfg.prioritized:
        return make_prioritized_replay(cfg.buffer_size, cfg.batch_size, cfg.priority_alpha, cfg.priority_beta0,
                                       cfg.priority_eps)
    return make_uniform_replay(cfg.buffer_size, cfg.batch_size)
