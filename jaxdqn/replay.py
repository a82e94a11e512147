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


def make_replay(cfg) -> Replay:
    """The replay that `cfg` selects."""
    return make_uniform_replay(cfg.buffer_size, cfg.batch_size)
