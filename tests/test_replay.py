"""Uniform replay ring semantics."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxdqn.replay import make_uniform_replay


def _fill(replay, state, values, valid=None):
    values = jnp.asarray(values, jnp.float32)
    valid = jnp.ones(values.shape[0], bool) if valid is None else jnp.asarray(valid)
    return replay.add(state, {"x": values}, valid)


def test_batch_add_and_wrap_around():
    replay = make_uniform_replay(capacity=5, batch_size=3)
    state = replay.init({"x": jnp.zeros(())})
    state = _fill(replay, state, [1, 2, 3])
    assert int(state.size) == 3 and int(state.position) == 3
    state = _fill(replay, state, [4, 5, 6])  # 6 overwrites slot 0
    assert int(state.size) == 5 and int(state.position) == 1
    np.testing.assert_array_equal(state.storage["x"], [6, 2, 3, 4, 5])
    state = _fill(replay, state, [7, 8, 9, 10])
    np.testing.assert_array_equal(state.storage["x"], [6, 7, 8, 9, 10])
    assert int(state.position) == 0


def test_wrap_writes_oldest_slots_in_order():
    replay = make_uniform_replay(capacity=4, batch_size=2)
    state = replay.init({"x": jnp.zeros(())})
    for start in range(0, 9, 3):
        state = _fill(replay, state, [start + 1, start + 2, start + 3])
    # 9 items into 4 slots: slots hold the last four in ring order, position = 9 % 4 = 1
    np.testing.assert_array_equal(state.storage["x"], [9, 6, 7, 8])
    assert int(state.position) == 1 and int(state.size) == 4


def test_invalid_rows_are_skipped_and_ring_stays_dense():
    replay = make_uniform_replay(capacity=6, batch_size=2)
    state = replay.init({"x": jnp.zeros(())})
    state = _fill(replay, state, [1, 2, 3, 4], valid=[True, False, True, False])
    np.testing.assert_array_equal(state.storage["x"][:2], [1, 3])
    assert int(state.size) == 2 and int(state.position) == 2
    state = _fill(replay, state, [5, 6, 7], valid=[False, False, False])
    assert int(state.size) == 2 and int(state.position) == 2


def test_never_samples_unwritten_slots():
    replay = make_uniform_replay(capacity=1000, batch_size=256)
    state = replay.init({"x": jnp.zeros(())})
    state = _fill(replay, state, np.arange(1, 8))  # 7 of 1000 slots written, values 1..7
    sample = jax.jit(replay.sample)(state, jax.random.PRNGKey(0))
    assert set(np.asarray(sample.batch["x"]).tolist()) <= set(range(1, 8))
    assert np.asarray(sample.indices).max() < 7
    assert len(set(np.asarray(sample.indices).tolist())) == 7  # all written slots reachable
    np.testing.assert_array_equal(sample.weights, np.ones(256))
