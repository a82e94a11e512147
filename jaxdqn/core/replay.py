"""Device-resident replay: one time-major ring per environment, as pure functions over a state pytree.

`make_replay` returns a `Replay` (optax style: a NamedTuple of pure functions). Its storage keeps, for
each of `num_envs` environments, a ring of `slots_per_env = capacity // num_envs` slots, all written at
the same `position` on every `add`. Slot t of environment n holds the observation o_t the agent acted on,
the action a_t, the reward r_{t+1} and terminated_{t+1} of that step, and `real`: the step was a real
transition, not EnvPool's auto-reset step (taken after an episode ended; its action is ignored and its
observation is the new episode's first). Each observation is stored once: next_obs of slot t is the
observation of slot t+1 of the same ring, so a transition costs one observation, not two, and slots
t..t+L of a ring are L consecutive steps (`sample_sequences`).

Stacked uint8 images (`is_frame_stack`, Atari) store only each observation's newest frame plus a
`stack_start` flag (the observation's frames are all copies of its newest one, as EnvPool stacks them
at a game's start, so no older frame belongs to it); a stack is rebuilt at sample time from the frames
of slots t-stack+1..t, each frame older than the newest `stack_start` slot in that window replaced by
that slot's frame. A new game's stack never shows frames of the previous one.

A slot is sampleable when its step was real, slot t+1 is written (it holds next_obs), and the
`history = stack - 1` older slots its stack may need are written and not overwritten (no history for
flat observations). In ring age, with k = 0 the newest slot and `size` slots written per environment:
sampleable slots have 1 <= k <= size - 1 - history and `real`.

Uniform and prioritized replay share the storage and all of its code; prioritization adds a sum tree
whose leaf env * slots_per_env + slot holds the slot's priority when it is sampleable and 0 otherwise.
Hyperparameters (beta for sampling, alpha and eps for priorities) are traced arguments, never closed
over, so agents with different values share one compiled program.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import chex
import jax
import jax.numpy as jnp

from jaxdqn.core.sumtree import sumtree_find, sumtree_init, sumtree_masses, sumtree_set, sumtree_total


class Batch(NamedTuple):
    """A batch of transitions (leading batch axis), each spanning `steps` environment steps (1..n_step).

    `reward` is the discounted sum of the spanned steps' rewards, `next_obs` the observation reached after the last
    of them and `terminated` whether that last step terminated its episode; the bootstrap discount is then
    gamma ** steps * (1 - terminated)."""

    obs: chex.Array
    action: chex.Array
    reward: chex.Array
    next_obs: chex.Array
    terminated: chex.Array
    steps: chex.Array  # int32


class Sample(NamedTuple):
    """A sampled batch, its flat slot indices env * slots_per_env + slot, and importance weights."""

    batch: Batch
    indices: chex.Array  # (B,) int32
    weights: chex.Array  # (B,) float32


class Sequences(NamedTuple):
    """L consecutive steps of one environment per row, starting at slot `indices` (flat)."""

    obs: chex.Array  # (B, L + 1, *obs_shape): o_s .. o_{s+L}
    action: chex.Array  # (B, L) a_{s+i}
    reward: chex.Array  # (B, L) r_{s+i+1}
    terminated: chex.Array  # (B, L) terminated_{s+i+1}
    real: chex.Array  # (B, L) step s+i was a real transition
    indices: chex.Array  # (B,) int32


class Storage(NamedTuple):
    """Per-environment rings, each field shaped (num_envs, slots_per_env, ...).

    `obs` holds whole observations, or only the newest frame of a frame stack; `stack_start` is the
    frame-stack flag described in the module docstring, and () for flat observations.
    """

    obs: chex.Array
    action: chex.Array  # int32
    reward: chex.Array  # float32
    terminated: chex.Array  # bool
    real: chex.Array  # bool
    stack_start: Any


class ReplayState(NamedTuple):
    """The rings, the next slot to write, slots written per environment, and the sum tree (or ())."""

    storage: Storage
    position: chex.Array  # () int32
    size: chex.Array  # () int32, <= slots_per_env
    priorities: Any  # SumTree, or () for uniform replay


class Replay(NamedTuple):
    """The pure functions of a replay (see `make_replay`) and its ring length."""

    init: Callable
    add: Callable
    sample: Callable
    update: Callable
    sample_sequences: Callable
    slots_per_env: int


def is_frame_stack(obs_shape, obs_dtype) -> bool:
    """True for stacked uint8 images (frames, height, width), the observations stored frame by frame."""
    return len(obs_shape) == 3 and jnp.dtype(obs_dtype) == jnp.uint8 and obs_shape[0] > 1


def stack_frames(storage: Storage, envs, slots, stack: int):
    """Rebuild the frame stacks of slots `slots` of environments `envs` (same shape X): (*X, stack, H, W).

    The stack of slot t is the frames of slots t-stack+1..t, each one older than the newest
    `stack_start` slot of that window replaced by that slot's frame.
    """
    slots_per_env = storage.obs.shape[1]
    offsets = jnp.arange(-(stack - 1), 1)
    envs = envs[..., None]
    starts = storage.stack_start[envs, (slots[..., None] + offsets) % slots_per_env]
    newest_start = jnp.max(jnp.where(starts, offsets, -stack), axis=-1, keepdims=True)
    return storage.obs[envs, (slots[..., None] + jnp.maximum(offsets, newest_start)) % slots_per_env]


def _window(storage: Storage, envs, starts, length: int, stack: int) -> Sequences:
    """Steps starts..starts+length-1 of environments `envs` ((B,) each) and their length+1 observations."""
    slots_per_env = storage.obs.shape[1]
    slots = (starts[:, None] + jnp.arange(length + 1)) % slots_per_env  # (B, L + 1)
    envs_ = jnp.broadcast_to(envs[:, None], slots.shape)
    obs = stack_frames(storage, envs_, slots, stack) if stack else storage.obs[envs_, slots]
    envs_, slots = envs_[:, :-1], slots[:, :-1]
    return Sequences(obs, storage.action[envs_, slots], storage.reward[envs_, slots],
                     storage.terminated[envs_, slots], storage.real[envs_, slots],
                     (envs * slots_per_env + starts).astype(jnp.int32))


def make_replay(capacity: int, batch_size: int, num_envs: int, obs_shape: tuple, obs_dtype,
                prioritized: bool, n_step: int = 1, max_over: str | None = None) -> Replay:
    """A replay of `capacity // num_envs` slots per environment, sampling `batch_size` transitions of up to
    `n_step` steps.

    Frame storage when `is_frame_stack(obs_shape, obs_dtype)`, flat storage otherwise. The functions:

    - `init(example_obs) -> ReplayState`: example_obs is one observation, no batch axis.
    - `add(state, obs, action, reward, terminated, real) -> state`: one step of every environment (each
      argument has a leading (num_envs,) axis): o_t acted on, a_t, r_{t+1}, terminated_{t+1}, and whether
      the step was real. A `dynamic_update_slice` at `position`; prioritized replay also sets (at most)
      three leaves of the tree: the newest slot (no next_obs yet) to 0, the one before it to the tree's
      max priority if it is sampleable now, and the one whose oldest stack frame was just overwritten
      to 0. Uniform replay touches no tree.
    - `sample(state, key, beta, gamma=1.0) -> Sample`: transitions that start at sampleable slots and run for up
      to `n_step` steps of the same ring (see `n_step_spans`; gamma discounts their rewards). Which start slots:
      uniform: exactly uniform over sampleable slots (see
      `_uniform_draws`), weights 1. Prioritized: slot i with probability P(i) = p_i / sum p, stratified
      (one draw per equal segment of the total mass); weights (n * P(i)) ** -beta / max over the batch
      (n, the number of slots, cancels in the division; `max_over`, a data-parallel learner's mesh axis: the max
      over every device's batch, each device sampling its share from its own environments' rings). If no slot is
      sampleable, weights are 0 (the rows are meaningless).
    - `update(state, indices, td_errors, alpha, eps, valid=True) -> state`: priorities (|td| + eps) ** alpha
      for slots that are still sampleable (rows where `valid` is False are skipped); a non-finite TD error (or priority) is replaced by the tree's
      current max priority, so NaN/inf never reach the tree. The max priority grows with the new
      priorities. Uniform replay returns the state unchanged.
    - `sample_sequences(state, key, length, batch_size) -> Sequences` (length and batch_size static):
      start slots uniform over those whose `length` steps are all written and not overwritten (and whose
      oldest stack frames are kept); episode ends inside a sequence show in `real` and `terminated`.
      Meaningless until `size >= length + stack` per environment.
    """
    frames = is_frame_stack(obs_shape, obs_dtype)
    stack = obs_shape[0] if frames else 0
    history = max(stack - 1, 0)
    slots_per_env = capacity // num_envs
    if slots_per_env < history + 2:
        raise ValueError(f"replay: capacity // num_envs must be >= {history + 2} (got {slots_per_env})")
    if n_step < 1:
        raise ValueError(f"replay: n_step must be >= 1 (got {n_step})")

    def init(example_obs) -> ReplayState:
        chex.assert_shape(example_obs, obs_shape)
        rings = (num_envs, slots_per_env)
        stored_shape = obs_shape[1:] if frames else obs_shape
        storage = Storage(jnp.zeros((*rings, *stored_shape), obs_dtype), jnp.zeros(rings, jnp.int32),
                          jnp.zeros(rings, jnp.float32), jnp.zeros(rings, bool), jnp.zeros(rings, bool),
                          jnp.zeros(rings, bool) if frames else ())
        tree = sumtree_init(num_envs * slots_per_env) if prioritized else ()
        return ReplayState(storage, jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32), tree)

    def add(state: ReplayState, obs, action, reward, terminated, real) -> ReplayState:
        position = state.position
        if frames:
            newest = obs[:, -1]
            columns = (newest, jnp.all(obs == newest[:, None], axis=tuple(range(1, obs.ndim))))
        else:
            columns = (obs, ())
        values = Storage(columns[0], action, reward, terminated, real, columns[1])
        storage = jax.tree.map(
            lambda ring, x: jax.lax.dynamic_update_index_in_dim(ring, x.astype(ring.dtype), position, 1),
            state.storage, values)
        size = jnp.minimum(state.size + 1, slots_per_env)
        tree = state.priorities
        if prioritized:
            previous = (position - 1) % slots_per_env
            # The previous slot now has its next_obs (sampleable if real and its history is written);
            # the slot `history` after the newest just lost the oldest frame its stack may need (with
            # no history, the slot that lost its place is the newest one itself).
            gains = storage.real[:, previous] & (size >= history + 2)
            rows = jnp.arange(num_envs) * slots_per_env
            slots = [position, previous] + ([(position + history) % slots_per_env] if history else [])
            masses = [jnp.zeros(num_envs), jnp.where(gains, tree.max_priority, 0.0)]
            masses += [jnp.zeros(num_envs)] * (len(slots) - 2)
            tree = sumtree_set(tree, jnp.concatenate([rows + slot for slot in slots]), jnp.concatenate(masses))
        return ReplayState(storage, (position + 1) % slots_per_env, size, tree)

    def sample(state: ReplayState, key, beta, gamma=1.0) -> Sample:
        if prioritized:
            tree = state.priorities
            total = sumtree_total(tree)
            targets = (jnp.arange(batch_size) + jax.random.uniform(key, (batch_size,))) * (total / batch_size)
            indices = sumtree_find(tree, jnp.minimum(targets, total))
            envs, slots = jnp.divmod(indices, slots_per_env)
            # n cancels in the normalization; the count of candidate slots keeps n * P(i) near 1.
            n = (num_envs * jnp.maximum(state.size - 1 - history, 1)).astype(jnp.float32)
            weights = (n * sumtree_masses(tree, indices) / total) ** (-beta)
            largest = jnp.where(total > 0, weights.max(), 0.0)
            largest = largest if max_over is None else jax.lax.pmax(largest, max_over)
            weights = jnp.where(total > 0, weights / largest, 0.0)
        else:
            envs, slots, found = _uniform_draws(state, key)
            weights = jnp.where(found, 1.0, 0.0) * jnp.ones(batch_size)
        storage = state.storage
        ages = (state.position - 1 - slots) % slots_per_env  # the newest slot has age 0 (no next_obs yet)
        steps, reward, terminated = n_step_spans(storage, envs, slots, ages, n_step, gamma)
        gather = (lambda at: stack_frames(storage, envs, at, stack)) if stack else (lambda at: storage.obs[envs, at])
        batch = Batch(gather(slots), storage.action[envs, slots], reward, gather((slots + steps) % slots_per_env),
                      terminated, steps)
        return Sample(batch, (envs * slots_per_env + slots).astype(jnp.int32), weights.astype(jnp.float32))

    def _uniform_draws(state: ReplayState, key):
        """(envs, slots, any sampleable) of `batch_size` slots uniform over the sampleable ones.

        2 * batch_size candidates are drawn uniformly from the slots of ring age 1..size-1-history (every
        sampleable slot, and auto-reset slots). Row i takes candidate i if it is real, else candidate
        batch_size + i if that one is; when some row has neither, the rows take the first batch_size real
        candidates in order instead. Either rule looks only at which candidates are real, and given that, each
        real candidate is uniform over the sampleable slots and independent of the others: the rows are i.i.d.
        uniform over sampleable slots. Fewer than batch_size real candidates (probability
        P(Binomial(2B, real fraction) < B), vanishing once past learning starts) fall back to repeating
        the real ones cyclically; if none is real, the rows are meaningless and the flag is False.
        On CPU the first rule is taken behind a `lax.cond` (the second, a running count and a scatter, costs about
        3 us an update); elsewhere, where a branch waits on the host, every batch takes the second.
        """
        ages = jnp.maximum(state.size - 1 - history, 0)  # candidate ages 1..ages per environment
        draws = jax.random.randint(key, (2 * batch_size,), 0, jnp.maximum(num_envs * ages, 1))
        envs, age = jnp.divmod(draws, jnp.maximum(ages, 1))
        slots = (state.position - 1 - (age + 1)) % slots_per_env
        ok = state.storage.real[envs, slots] & (ages > 0)
        count = jnp.minimum(ok.sum(), batch_size)

        def in_order():
            rank = jnp.cumsum(ok) - 1
            keep = jnp.zeros(batch_size, jnp.int32).at[jnp.where(ok, rank, batch_size)].set(
                jnp.arange(2 * batch_size), mode="drop")
            return keep[jnp.arange(batch_size) % jnp.maximum(count, 1)]

        if jax.default_backend() == "cpu":
            rows = jnp.arange(batch_size)
            first, second = ok[:batch_size], ok[batch_size:]
            keep = jax.lax.cond(jnp.all(first | second), lambda: jnp.where(first, rows, rows + batch_size), in_order)
        else:
            keep = in_order()
        return envs[keep], slots[keep], count > 0

    def update(state: ReplayState, indices, td_errors, alpha, eps, valid=True) -> ReplayState:
        if not prioritized:
            return state
        tree = state.priorities
        priorities = (jnp.abs(td_errors) + eps) ** alpha
        finite = jnp.isfinite(td_errors) & jnp.isfinite(priorities)
        priorities = jnp.where(finite, priorities, tree.max_priority)
        # A slot that stopped being sampleable since it was drawn (mass 0) stays out of the tree.
        still = (sumtree_masses(tree, indices) > 0) & valid
        tree = sumtree_set(tree, indices, priorities, still)
        return state._replace(priorities=tree._replace(
            max_priority=jnp.maximum(tree.max_priority, jnp.max(jnp.where(still, priorities, 0.0)))))

    def sample_sequences(state: ReplayState, key, length: int, batch_size: int) -> Sequences:
        starts_per_env = jnp.maximum(state.size - length - history, 1)  # ring ages length..size-1-history
        draws = jax.random.randint(key, (batch_size,), 0, num_envs * starts_per_env)
        envs, age = jnp.divmod(draws, starts_per_env)
        starts = (state.position - 1 - (age + length)) % slots_per_env
        return _window(state.storage, envs, starts, length, stack)

    return Replay(init, add, sample, update, sample_sequences, slots_per_env)


def n_step_spans(storage: Storage, envs, starts, ages, n_step: int, gamma):
    """(steps, discounted reward, terminated) of the transitions that start at slots `starts` of rings `envs`.

    A transition takes the steps starts, starts+1, ... of its ring, at most `n_step` of them, and stops after the
    first step that ended its episode: one that terminated, or one followed by a step that is not a transition
    (EnvPool's auto-reset step after a termination or a truncation, or a cut), so it never crosses an auto-reset
    step and a truncated episode bootstraps from its final observation. It also stops before the newest slot
    (age 0), whose next observation is not written yet: slot `start + i` is usable while i < age.
    """
    slots_per_env = storage.reward.shape[1]
    offsets = jnp.arange(n_step)
    at = (starts[:, None] + offsets) % slots_per_env  # (B, n_step)
    rings = envs[:, None]
    reward, terminated = storage.reward[rings, at], storage.terminated[rings, at]
    ended = terminated | ~storage.real[rings, (at + 1) % slots_per_env]
    ended_before = jnp.cumsum(ended, axis=1) - ended
    taken = (offsets < ages[:, None]) & (ended_before == 0)
    steps = taken.sum(axis=1, dtype=jnp.int32)
    discounted = jnp.sum(jnp.where(taken, reward * jnp.asarray(gamma, jnp.float32) ** offsets, 0.0), axis=1)
    last = jnp.maximum(steps - 1, 0)
    return steps, discounted, jnp.take_along_axis(terminated, last[:, None], axis=1)[:, 0]


def replay_bytes(capacity: int, num_envs: int, obs_shape: tuple, obs_dtype, prioritized: bool) -> int:
    """Bytes of a replay's state (storage and sum tree), from its shapes alone (nothing is allocated)."""
    replay = make_replay(capacity, 1, num_envs, obs_shape, obs_dtype, prioritized)
    shapes = jax.eval_shape(replay.init, jax.ShapeDtypeStruct(tuple(obs_shape), obs_dtype))
    return sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree.leaves(shapes))
