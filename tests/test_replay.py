"""Per-environment replay rings: writes, wrap, one stored obs per step, uniform sampling, sequences vs EnvPool."""

import envpool
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import chi2_contingency, chisquare

from jaxdqn.core.replay import make_replay, replay_bytes
from jaxdqn.envs import ATARI_PREPROCESSING


def _add_steps(replay, state, steps, num_envs, unreal=(), start=0):
    """Add `steps` steps; obs of env n at time t is [t, n]; (t, n) in `unreal` are auto-reset steps."""
    add = jax.jit(replay.add)
    for t in range(start, start + steps):
        obs = jnp.stack([jnp.full(num_envs, t, jnp.float32), jnp.arange(num_envs, dtype=jnp.float32)], 1)
        real = jnp.array([(t, n) not in unreal for n in range(num_envs)])
        state = add(state, obs, jnp.full(num_envs, t % 3), jnp.full(num_envs, t / 10, jnp.float32),
                    jnp.full(num_envs, t % 4 == 3), real)
    return state


def _sampleable(replay, state, history=0):
    """Host-side expectation: (num_envs, slots) mask of real slots of ring age 1..size-1-history."""
    slots = replay.slots_per_env
    age = (int(state.position) - 1 - np.arange(slots)) % slots
    return np.asarray(state.storage.real) & (age >= 1) & (age <= int(state.size) - 1 - history)


def test_add_writes_every_env_at_position_and_wraps():
    replay = make_replay(10, 4, 2, (2,), jnp.float32, False)  # 5 slots per environment
    state = replay.init(jnp.zeros(2))
    state = _add_steps(replay, state, 3, 2)
    assert int(state.position) == 3 and int(state.size) == 3
    state = _add_steps(replay, state, 4, 2, start=3)  # steps 5 and 6 overwrite slots 0 and 1
    assert int(state.position) == 2 and int(state.size) == 5
    np.testing.assert_array_equal(state.storage.obs[:, :, 0], [[5, 6, 2, 3, 4]] * 2)
    np.testing.assert_array_equal(state.storage.obs[:, :, 1], [[0] * 5, [1] * 5])
    np.testing.assert_array_equal(state.storage.action, [[2, 0, 2, 0, 1]] * 2)
    np.testing.assert_array_equal(state.storage.terminated, [[False, False, False, True, False]] * 2)
    assert state.priorities == ()


def test_each_obs_is_stored_once():
    obs_shape = (256,)
    capacity, num_envs = 1024, 4
    replay = make_replay(capacity, 4, num_envs, obs_shape, jnp.float32, False)
    shapes = jax.eval_shape(replay.init, jax.ShapeDtypeStruct(obs_shape, jnp.float32))
    assert shapes.storage.obs.shape == (num_envs, capacity // num_envs, *obs_shape)
    per_slot = (replay_bytes(capacity, num_envs, obs_shape, jnp.float32, False) - 8) / capacity  # - position, size
    two_obs_layout = 2 * 256 * 4 + 4 + 4 + 1  # obs, next_obs, action, reward, terminated
    assert per_slot == 256 * 4 + 4 + 4 + 1 + 1  # obs, action, reward, terminated, real
    assert per_slot < 0.51 * two_obs_layout
    # next_obs of slot t is the obs of slot t + 1 of the same ring
    replay = make_replay(12, 16, 3, (2,), jnp.float32, False)
    state = _add_steps(replay, replay.init(jnp.zeros(2)), 9, 3)
    sample = jax.jit(replay.sample)(state, jax.random.PRNGKey(0), 0.0)
    envs, slots = np.divmod(np.asarray(sample.indices), replay.slots_per_env)
    obs = np.asarray(state.storage.obs)
    np.testing.assert_array_equal(sample.batch.obs, obs[envs, slots])
    np.testing.assert_array_equal(sample.batch.next_obs, obs[envs, (slots + 1) % replay.slots_per_env])
    np.testing.assert_array_equal(sample.batch.next_obs[:, 0], sample.batch.obs[:, 0] + 1)


@pytest.mark.parametrize("steps", [6, 19])  # ring of 8 not yet full; wrapped twice
def test_uniform_sampling_is_uniform_over_sampleable_slots_only(steps):
    """Never the newest slot (no next_obs yet), an auto-reset slot or an unwritten slot; frequencies
    uniform over the rest (chi-square with a fixed seed); all weights 1."""
    num_envs, batch = 3, 64
    replay = make_replay(24, batch, num_envs, (2,), jnp.float32, False)
    unreal = {(2, 0), (4, 1), (11, 2), (15, 0), (16, 1)}
    state = _add_steps(replay, replay.init(jnp.zeros(2)), steps, num_envs, unreal)
    expected = _sampleable(replay, state)
    sample = jax.jit(jax.vmap(replay.sample, in_axes=(None, 0, None)))
    out = sample(state, jax.random.split(jax.random.PRNGKey(0), 500), 0.4)
    counts = np.bincount(np.asarray(out.indices).ravel(), minlength=expected.size).reshape(expected.shape)
    assert counts[~expected].sum() == 0
    assert (counts[expected] > 0).all()
    assert chisquare(counts[expected]).pvalue > 0.001
    np.testing.assert_array_equal(out.weights, 1.0)
    # rows hold the transition of their slot: obs [t, n], next_obs [t + 1, n], action t % 3
    t = np.asarray(out.batch.obs[..., 0]).astype(int)
    np.testing.assert_array_equal(out.batch.obs[..., 1], np.asarray(out.indices) // replay.slots_per_env)
    np.testing.assert_array_equal(out.batch.next_obs[..., 0], t + 1)
    np.testing.assert_array_equal(out.batch.action, t % 3)
    np.testing.assert_array_equal(out.batch.terminated, t % 4 == 3)


@pytest.mark.parametrize("unreal", [{(15, 1)}, {(11, 2), (12, 0), (13, 1), (15, 0), (16, 1), (17, 2)}],
                         ids=["one-auto-reset", "six-auto-resets"])
def test_uniform_rows_are_independent_draws_whichever_rule_picks_them(unreal):
    """A batch's rows are i.i.d. uniform over the sampleable slots whether each row found a real candidate in its
    own pair or the first real candidates were taken in order (`_uniform_draws`; with one auto-reset slot of 21
    candidates the pairs serve most batches, with six few): each row position is uniform over the slots (the same
    for every position), and two rows of a batch hold the same slot as often as independent draws do. Sampled
    unbatched, so on CPU the rule is chosen by a branch."""
    num_envs, batch = 3, 32
    replay = make_replay(24, batch, num_envs, (2,), jnp.float32, False)  # 8 slots per environment
    state = _add_steps(replay, replay.init(jnp.zeros(2)), 19, num_envs, unreal)
    sampleable = np.flatnonzero(_sampleable(replay, state).ravel())
    sample = jax.jit(replay.sample)
    indices = np.stack([np.asarray(sample(state, jax.random.PRNGKey(i), 0.4).indices) for i in range(1000)])
    assert np.isin(indices, sampleable).all()
    by_position = np.stack([np.bincount(indices[:, row], minlength=24)[sampleable] for row in range(batch)])
    assert chisquare(by_position.sum(0)).pvalue > 0.001
    assert chi2_contingency(by_position).pvalue > 0.001
    same_pairs = [(np.bincount(rows) * (np.bincount(rows) - 1) // 2).sum() for rows in indices]
    independent = batch * (batch - 1) / 2 / sampleable.size
    assert abs(np.mean(same_pairs) / independent - 1) < 0.05


def test_uniform_fallback_when_few_or_no_slots_are_sampleable():
    replay = make_replay(64, 32, 1, (2,), jnp.float32, False)
    state = replay.init(jnp.zeros(2))
    sample = jax.jit(replay.sample)
    assert float(sample(state, jax.random.PRNGKey(0), 0.0).weights.max()) == 0  # empty: nothing to sample
    # 40 steps, only step 7 real: every row is slot 7, weight 1
    state = _add_steps(replay, state, 40, 1, unreal={(t, 0) for t in range(40) if t != 7})
    out = sample(state, jax.random.PRNGKey(1), 0.0)
    np.testing.assert_array_equal(out.indices, 7)
    np.testing.assert_array_equal(out.batch.obs[:, 0], 7)
    np.testing.assert_array_equal(out.weights, 1.0)
    state = _add_steps(replay, replay.init(jnp.zeros(2)), 10, 1, unreal={(t, 0) for t in range(10)})
    assert float(sample(state, jax.random.PRNGKey(2), 0.0).weights.max()) == 0


def test_sequences_start_only_where_all_steps_are_written():
    num_envs, length = 2, 4
    replay = make_replay(16, 8, num_envs, (2,), jnp.float32, False)  # 8 slots per environment
    sequences = jax.jit(jax.vmap(lambda k, s: replay.sample_sequences(s, k, length, 16), in_axes=(0, None)))
    for steps in (6, 13):
        state = _add_steps(replay, replay.init(jnp.zeros(2)), steps, num_envs, unreal={(3, 1)})
        out = sequences(jax.random.split(jax.random.PRNGKey(steps), 200), state)
        envs, starts = np.divmod(np.asarray(out.indices), replay.slots_per_env)
        age = (int(state.position) - 1 - starts) % replay.slots_per_env
        assert set(age.ravel().tolist()) == set(range(length, int(state.size)))  # every start, nothing else
        t0 = steps - 1 - age
        np.testing.assert_array_equal(out.obs[..., 0], t0[..., None] + np.arange(length + 1))
        np.testing.assert_array_equal(out.obs[..., 1], np.broadcast_to(envs[..., None], out.obs.shape[:-1]))
        np.testing.assert_array_equal(out.real, ~((t0[..., None] + np.arange(length) == 3) & (envs[..., None] == 1)))


def _check_against_envpool(env, replay, steps, length, history, check_every, prioritized):
    """Step `env` with random actions, feed `replay` as the loop does (real = the previous step did not
    end an episode), and check sampled sequences and transitions against what EnvPool returned."""
    num_envs = env.config["num_envs"]
    rng = np.random.default_rng(0)
    obs, _ = env.reset()
    record = {key: [] for key in ("obs", "action", "reward", "terminated", "real")}
    state = replay.init(jnp.asarray(obs[0]))
    add = jax.jit(replay.add)
    sequences = jax.jit(replay.sample_sequences, static_argnums=(2, 3))
    sample = jax.jit(replay.sample)
    update = jax.jit(replay.update)
    done = np.zeros(num_envs, bool)
    seen = {"episode_ends": 0, "across_wrap": 0, "rows": 0}
    slots_per_env = replay.slots_per_env
    for t in range(steps):
        action = rng.integers(0, env.action_space.n, num_envs).astype(np.int32)
        next_obs, reward, terminated, truncated, info = env.step(action, np.arange(num_envs))
        np.testing.assert_array_equal(info["env_id"], np.arange(num_envs))
        real = ~done
        for key, value in zip(record, (obs, action, reward, terminated, real)):
            record[key].append(np.array(value))
        state = add(state, obs, action, reward, terminated, real)
        done = terminated | truncated
        obs = next_obs
        if t % check_every or t < length + history + 2:
            continue
        hist = {key: np.stack(value, 1) for key, value in record.items()}  # (num_envs, time, ...)
        out = sequences(state, jax.random.PRNGKey(t), length, 32)
        envs, starts = np.divmod(np.asarray(out.indices), slots_per_env)
        age = (int(state.position) - 1 - starts) % slots_per_env
        assert ((age >= length) & (age <= min(t + 1, slots_per_env) - 1 - history)).all()
        first = t - age  # the time step each row starts at
        for row, (n, s) in enumerate(zip(envs, first)):
            np.testing.assert_array_equal(out.obs[row], hist["obs"][n, s:s + length + 1])
            for key in ("action", "reward", "terminated", "real"):
                np.testing.assert_array_equal(getattr(out, key)[row], hist[key][n, s:s + length], err_msg=key)
        seen["episode_ends"] += int((~np.asarray(out.real)).sum())
        seen["across_wrap"] += int((starts + length >= slots_per_env).sum())
        seen["rows"] += len(envs)
        batch = sample(state, jax.random.PRNGKey(-t), 0.5)
        envs, slots = np.divmod(np.asarray(batch.indices), slots_per_env)
        when = t - (int(state.position) - 1 - slots) % slots_per_env
        assert hist["real"][envs, when].all() and (when < t).all()
        np.testing.assert_array_equal(batch.batch.obs, hist["obs"][envs, when])
        np.testing.assert_array_equal(batch.batch.next_obs, hist["obs"][envs, when + 1])
        np.testing.assert_array_equal(batch.batch.action, hist["action"][envs, when])
        np.testing.assert_array_equal(batch.batch.reward, hist["reward"][envs, when])
        np.testing.assert_array_equal(batch.batch.terminated, hist["terminated"][envs, when])
        if prioritized:
            state = update(state, batch.indices, jnp.asarray(rng.normal(size=len(envs)), jnp.float32),
                                  0.6, 1e-6)
    env.close()
    assert t + 1 > 2 * slots_per_env
    print(seen)
    assert seen["episode_ends"] >= 5 and seen["across_wrap"] >= 5, seen


@pytest.mark.parametrize("prioritized", [False, True])
def test_cartpole_sequences_are_the_steps_each_environment_took(prioritized):
    """Sequences of length L sampled from the per-env rings are exactly the steps each environment took,
    across ring wrap and episode ends (checked against EnvPool's own observations)."""
    env = envpool.make("CartPole-v1", env_type="gymnasium", num_envs=3, seed=11)
    replay = make_replay(3 * 32, 16, 3, (4,), jnp.float32, prioritized)
    _check_against_envpool(env, replay, steps=200, length=6, history=0, check_every=5, prioritized=prioritized)


def test_atari_frame_sequences_are_the_stacks_envpool_returned():
    """The same on a tiny Pong pool: rebuilt 4-frame stacks equal EnvPool's. Episodes are cut at 60
    steps so that game starts (stacks of one repeated frame) happen inside the short run."""
    env = envpool.make("Pong-v5", env_type="gymnasium", num_envs=2, seed=5, max_episode_steps=60,
                       **ATARI_PREPROCESSING)
    replay = make_replay(2 * 40, 16, 2, (4, 84, 84), jnp.uint8, False)
    _check_against_envpool(env, replay, steps=240, length=8, history=3, check_every=10, prioritized=False)


@pytest.mark.parametrize("prioritized", [False, True])
def test_n_step_transitions_match_a_hand_rolled_return_over_real_envpool_episodes(prioritized):
    """3 EnvPool CartPoles with a 20-step time limit (episodes end by terminations and truncations), random
    actions, 100 steps into rings of 40 (they wrap); every sampled 4-step transition against the textbook
    return computed from the pool's own history."""
    num_envs, slots, n, gamma, steps = 3, 40, 4, 0.9, 100
    pool = envpool.make("CartPole-v1", env_type="gymnasium", num_envs=num_envs, batch_size=num_envs,
                        seed=[7, 8, 9], max_episode_steps=20)
    replay = make_replay(num_envs * slots, 512, num_envs, (4,), jnp.float32, prioritized, n_step=n)
    state, add = replay.init(jnp.zeros(4)), jax.jit(replay.add)
    rng = np.random.default_rng(0)
    obs, _ = pool.reset()
    done = np.zeros(num_envs, bool)
    history = []
    for _ in range(steps):
        action = rng.integers(0, 2, num_envs).astype(np.int32)
        next_obs, reward, terminated, truncated, _ = pool.step(action)
        real = ~done  # the step after an episode's end is EnvPool's auto-reset step
        state = add(state, obs, action, reward, terminated, real)
        history.append((obs, reward, terminated, truncated, real))
        obs, done = next_obs, (terminated | truncated) & real
    pool.close()
    sample = jax.jit(replay.sample)(state, jax.random.PRNGKey(3), 1.0, gamma)
    envs, ring_slots = np.divmod(np.asarray(sample.indices), slots)
    ages = (int(state.position) - 1 - ring_slots) % slots
    newest = steps - 1  # the step in the newest slot: its next observation is not stored yet
    kinds = set()
    for row, (env, age) in enumerate(zip(envs, ages)):
        t = newest - age
        assert history[t][4][env], "sampled an auto-reset step"
        ret, k = 0.0, 0
        for i in range(n):
            j = t + i
            if j >= newest:
                kinds.add("newest")
                break
            ret, k = ret + gamma**i * history[j][1][env], k + 1
            if history[j][2][env] or history[j][3][env]:
                kinds.add("terminated" if history[j][2][env] else "truncated")
                break
        else:
            kinds.add("full")
        assert int(sample.batch.steps[row]) == k
        np.testing.assert_allclose(float(sample.batch.reward[row]), ret, rtol=1e-6)
        assert bool(sample.batch.terminated[row]) == bool(history[t + k - 1][2][env])
        np.testing.assert_array_equal(sample.batch.obs[row], history[t][0][env])
        np.testing.assert_array_equal(sample.batch.next_obs[row], history[t + k][0][env])
    assert kinds == {"newest", "terminated", "truncated", "full"}
    assert newest - ages.max() < steps - slots + 1  # some transitions start in slots written a second time
