"""Atari: the frame-storing replay against EnvPool's own stacks, its size, and the Atari presets as a user runs them."""

import json
import subprocess

import envpool
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdqn.core.replay import make_replay, replay_bytes, stack_frames
from jaxdqn.envs import ATARI_PREPROCESSING
from tests.conftest import JAXDQN

NUM_SEEDS, NUM_ENVS, SLOTS = 2, 2, 40
STACK_SHAPE = (4, 84, 84)


# Every slot of every environment, for each seed: (NUM_SEEDS, NUM_ENVS * SLOTS).
ALL_ENVS = jnp.tile(jnp.repeat(jnp.arange(NUM_ENVS), SLOTS)[None], (NUM_SEEDS, 1))
ALL_SLOTS = jnp.tile(jnp.tile(jnp.arange(SLOTS), NUM_ENVS)[None], (NUM_SEEDS, 1))


@pytest.mark.parametrize("prioritized", [False, True])
def test_frame_replay_rebuilds_envpool_stacks(prioritized):
    """Random Breakout play (episodic life, 2 seeds x 2 envs, 40 slots per env so the rings wrap many
    times): every sampleable transition's rebuilt obs and next_obs equal EnvPool's, and sample()
    returns only such transitions, across life losses, game resets and auto-reset steps."""
    replay = make_replay(NUM_ENVS * SLOTS, 64, NUM_ENVS, STACK_SHAPE, jnp.uint8, prioritized)
    state = jax.vmap(lambda _: replay.init(jnp.zeros(STACK_SHAPE, jnp.uint8)))(jnp.arange(NUM_SEEDS))
    add = jax.jit(jax.vmap(replay.add))
    sample = jax.jit(jax.vmap(replay.sample, in_axes=(0, 0, None)))
    update = jax.jit(jax.vmap(replay.update, in_axes=(0, 0, 0, None, None)))
    stacks = jax.jit(jax.vmap(stack_frames, in_axes=(0, 0, 0, None)), static_argnums=3)
    env = envpool.make("Breakout-v5", env_type="gymnasium", num_envs=NUM_SEEDS * NUM_ENVS, seed=3,
                       episodic_life=True, reward_clip=True, **ATARI_PREPROCESSING)
    obs, _ = env.reset()
    rng = np.random.default_rng(0)
    shape = (NUM_SEEDS, NUM_ENVS)
    history = np.zeros((*shape, SLOTS, *STACK_SHAPE), np.uint8)  # EnvPool's obs written at each slot
    real = np.zeros((*shape, SLOTS), bool)
    done = np.zeros(NUM_SEEDS * NUM_ENVS, bool)
    seen = {"game_starts": 0, "life_losses": 0, "checked": 0, "sampled": 0}
    for step in range(250):
        actions = rng.integers(0, env.action_space.n, NUM_SEEDS * NUM_ENVS).astype(np.int32)
        next_obs, reward, terminated, truncated, info = env.step(actions)
        valid = ~done
        slot = step % SLOTS
        history[:, :, slot] = obs.reshape(*shape, *STACK_SHAPE)
        real[:, :, slot] = valid.reshape(shape)
        state = add(state, obs.reshape(*shape, *STACK_SHAPE), actions.reshape(shape), reward.reshape(shape),
                    terminated.reshape(shape), valid.reshape(shape))
        seen["game_starts"] += int((info["terminated"].astype(bool) & valid).sum())
        seen["life_losses"] += int((terminated & ~info["terminated"].astype(bool) & valid).sum())
        done = (terminated | truncated) & valid
        obs = next_obs
        if step % 7 == 6 or step == SLOTS:
            written = min(step + 1, SLOTS)  # slots written per env so far
            age = (slot - np.arange(SLOTS)) % SLOTS  # 0 = the newest slot
            # Real steps whose next frame is written (not the newest) and whose 3 older frames are
            # written and not overwritten.
            expected = real & (age >= 1) & (age <= written - 1 - 3)
            if prioritized:
                leaves = np.asarray(state.priorities.levels[-1]).reshape(NUM_SEEDS, -1)[:, :NUM_ENVS * SLOTS]
                np.testing.assert_array_equal(leaves.reshape(*shape, SLOTS) > 0, expected)
            got_obs = np.asarray(stacks(state.storage, ALL_ENVS, ALL_SLOTS, 4)).reshape(*shape, SLOTS, *STACK_SHAPE)
            got_next = np.asarray(stacks(state.storage, ALL_ENVS, ALL_SLOTS + 1, 4)).reshape(got_obs.shape)
            np.testing.assert_array_equal(got_obs[expected], history[expected])
            np.testing.assert_array_equal(got_next[expected], np.roll(history, -1, axis=2)[expected])
            seen["checked"] += int(expected.sum())
            samples = sample(state, jax.random.split(jax.random.PRNGKey(step), NUM_SEEDS), 0.5)
            envs, slots = np.divmod(np.asarray(samples.indices), SLOTS)
            seeds = np.arange(NUM_SEEDS)[:, None]
            assert expected[seeds, envs, slots].all()
            np.testing.assert_array_equal(samples.batch.obs, history[seeds, envs, slots])
            np.testing.assert_array_equal(samples.batch.next_obs, history[seeds, envs, (slots + 1) % SLOTS])
            seen["sampled"] += samples.indices.size
            td = jnp.asarray(rng.normal(size=samples.indices.shape), jnp.float32)
            state = update(state, samples.indices, td, 0.6, 1e-6)
    env.close()
    assert seen["game_starts"] >= 4 and seen["life_losses"] >= 12, seen  # episode starts of both kinds
    assert seen["checked"] > 3000, seen


def test_frame_replay_bytes_per_transition():
    """A 1,000,000-transition Atari replay (8 envs) takes about 7.07 KB per transition: one 84x84 frame
    (7,056 bytes) plus action, reward and flags, and the sum tree's 4 bytes when prioritized."""
    capacity = 1_000_000
    for prioritized in (False, True):
        total = replay_bytes(capacity, 8, STACK_SHAPE, jnp.uint8, prioritized)
        print(f"frame replay, prioritized={prioritized}: {total / capacity:.1f} bytes per transition")
        assert 84 * 84 < total / capacity <= 7100


def _returns_in_window(metrics_lines):
    last = json.loads(metrics_lines[-1])
    return last["episodes"][0], last["return_mean_100"][0]


@pytest.mark.parametrize("preset,extra", [
    # 1 update per step: learning starts 8 steps before the end; 2 seeds (agent vmapped over seeds).
    ("pong", ["--learning-starts", "2040", "--num-seeds", "2"]),
    # 8 envs x 4 steps then 8 updates: one training period.
    ("breakout", ["--learning-starts", "2016"]),
    # 1 env so that whole games (about 850+ steps with random play) end within the run.
    ("atlantis", ["--learning-starts", "2016", "--num-envs", "1"]),
])
def test_atari_preset_runs_as_a_user_runs_it(tmp_path, preset, extra):
    """`jaxdqn train --preset NAME` for 2048 steps with 8 updates; the reported training returns are
    whole games with raw (unclipped) rewards, although training uses episodic life and clipping."""
    out = tmp_path / preset
    result = subprocess.run([JAXDQN, "train", "--preset", preset, "--total-steps", "2048", "--buffer-size", "2048",
                             "--eval-episodes", "1", *extra, "--out", str(out)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["env_steps"] == 2048 and summary["updates"] == 8
    episodes, mean_return = _returns_in_window((out / "metrics.jsonl").read_text().splitlines())
    print(f"{preset}: {episodes} games, mean return {mean_return}, eval {summary['eval_return_mean']}, "
          f"{summary['sps']:.0f} SPS")
    assert episodes >= 1, "no whole game ended"
    if preset == "pong":  # a whole game: one side reaches 21 points
        assert -21 <= mean_return <= 21 and mean_return * episodes == round(mean_return * episodes)
    if preset == "breakout":  # games, not lives: a random Breakout life lasts about 35 steps, a game about 180
        assert episodes <= 2048 / 100, episodes
    if preset == "atlantis":  # raw rewards are 100s; clipped sums of a random game are a few dozen
        assert mean_return >= 1000 and mean_return % 100 == 0, mean_return
        assert summary["eval_return_mean"][0] % 100 == 0


def test_atari_buffer_that_does_not_split_into_env_rings_is_one_clear_error(tmp_path):
    out = tmp_path / "run"
    result = subprocess.run([JAXDQN, "train", "--preset", "breakout", "--buffer-size", "1001", "--out", str(out)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "jaxdqn: error: buffer_size: must be a multiple of num_envs (8) with at least 8 per environment for "
        "Breakout-v5 (its replay keeps one frame ring per environment) (got 1001)"]
    assert not out.exists()
