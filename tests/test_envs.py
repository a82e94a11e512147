"""The environment backends (jaxdqn.envs): seeds, in-jit stepping, auto-reset, Atari game signal, rendering.
Real EnvPool and Gymnasium environments throughout."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdqn.envs import (BACKENDS, EnvBackend, EnvPoolBackend, GymnasiumBackend, StepResult, backend_name, env_seeds,
                         env_spec, is_atari, known_env_ids, make_env)


def rollout(backend, actions):
    """Reset `backend` and step it through `actions` (steps, pool) in one jitted scan: (first obs, StepResult)."""
    env_state, obs = backend.reset()
    _, out = jax.jit(lambda s, a: jax.lax.scan(backend.step, s, a))(env_state, jnp.asarray(actions, jnp.int32))
    return np.asarray(obs), jax.tree.map(np.asarray, out)


def random_actions(steps, num_envs, num_actions, seed=0):
    return np.random.default_rng(seed).integers(0, num_actions, (steps, num_envs)).astype(np.int32)


def test_env_seeds_are_independent_of_the_run_seed_neighbours_and_of_the_pool_split():
    seeds = env_seeds(3, 4, 8)
    assert seeds.dtype == np.int32 and seeds.shape == (32,) and (seeds >= 0).all()
    np.testing.assert_array_equal(seeds, env_seeds(3, range(4), 8))  # deterministic; int = range
    assert len(set(seeds)) == 32
    assert not set(seeds) & set(env_seeds(4, 4, 8))  # runs s and s+1 share no environment seed
    assert not set(seeds) & set(env_seeds(3, 4, 8, stream=1))  # evaluation streams differ from training
    np.testing.assert_array_equal(env_seeds(3, [2], 8), seeds[16:24])  # agent 2 alone = agent 2 in the pool
    np.testing.assert_array_equal(env_seeds(3, 4, 4), seeds.reshape(4, 8)[:, :4].reshape(-1))


def test_runs_s_and_s_plus_1_share_no_environment_stream():
    """EnvPool's own seeding (seed + i) would give run s+1 all but one of run s's streams."""
    num_envs, actions = 4, random_actions(50, 4, 2)
    first, second = (rollout(make_env("CartPole-v1", env_seeds(run_seed, 1, num_envs)), actions)
                     for run_seed in (5, 6))
    for i in range(num_envs):
        for j in range(num_envs):
            assert not np.array_equal(first[0][i], second[0][j])
            assert not np.array_equal(first[1].obs[:, i], second[1].obs[:, j])


CARTPOLES = {"envpool": "CartPole-v1", "gymnasium": "CartPole-v1", "jax": "gymnax/CartPole-v1"}
"""CartPole through every backend (gymnax's CartPole is a JAX reimplementation of Gymnasium's)."""


@pytest.mark.parametrize("backend", CARTPOLES)
def test_an_agents_environments_are_the_same_alone_or_in_a_three_agent_pool(backend):
    """Environment i of a pool seeded with a list behaves exactly like a pool of that one seed."""
    num_envs, steps = 2, 120
    actions = random_actions(steps, 3 * num_envs, 2)
    alone = rollout(BACKENDS[backend](CARTPOLES[backend], env_seeds(11, [1], num_envs)), actions[:, 2:4])
    shared = rollout(BACKENDS[backend](CARTPOLES[backend], env_seeds(11, 3, num_envs)), actions)
    np.testing.assert_array_equal(alone[0], shared[0][2:4])
    for field in StepResult._fields:
        np.testing.assert_array_equal(getattr(alone[1], field), getattr(shared[1], field)[:, 2:4], err_msg=field)
    assert alone[1].terminated.any()  # the comparison covers episode ends and resets


def test_envpool_backend_steps_inside_a_jitted_scan_exactly_like_envpool_python_stepping():
    import envpool

    seeds, steps = env_seeds(0, 1, 4), 200
    actions = random_actions(steps, 4, 2)
    backend = EnvPoolBackend("CartPole-v1", seeds)
    assert not backend.host_step and backend.num_envs == 4 and backend.spec == env_spec("CartPole-v1")
    obs0, out = rollout(backend, actions)
    backend.close()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        env = envpool.make("CartPole-v1", env_type="gymnasium", num_envs=4, batch_size=4, seed=[int(s) for s in seeds])
    np.testing.assert_array_equal(obs0, env.reset()[0])
    for t in range(steps):
        obs, reward, terminated, truncated, _ = env.step(actions[t])
        np.testing.assert_array_equal(out.obs[t], obs)
        np.testing.assert_array_equal(out.reward[t], reward)
        np.testing.assert_array_equal(out.terminated[t], terminated)
        np.testing.assert_array_equal(out.truncated[t], truncated)
    np.testing.assert_array_equal(out.game_reward, out.reward)
    np.testing.assert_array_equal(out.game_over, out.terminated | out.truncated)
    assert out.terminated.any()
    env.close()


@pytest.mark.parametrize("backend", CARTPOLES)
def test_step_after_done_is_a_reset_with_no_reward(backend):
    """CartPole through every backend: valid transitions obey x' = x + 0.02 x_dot, the step after an
    episode ends returns a start state with reward 0 and not done."""
    num_envs, steps = 4, 300
    pool = BACKENDS[backend](CARTPOLES[backend], env_seeds(0, 1, num_envs))
    assert isinstance(pool, EnvBackend) and pool.host_step == (backend == "gymnasium")
    obs, out = rollout(pool, random_actions(steps, num_envs, 2))
    pool.close()
    obs_seq = np.concatenate([obs[None], out.obs[:-1]])
    done = out.terminated | out.truncated
    after_done = np.concatenate([np.zeros((1, num_envs), bool), done[:-1]])
    assert after_done.sum() > 10
    valid = ~after_done
    np.testing.assert_allclose(out.obs[valid][:, 0], obs_seq[valid][:, 0] + 0.02 * obs_seq[valid][:, 1], atol=1e-4)
    assert (out.reward[after_done] == 0).all() and not done[after_done].any()
    assert (np.abs(out.obs[after_done][:, :4]) <= 0.05).all()  # CartPole starts within +-0.05


def test_atari_game_reward_and_game_over_with_episodic_life_and_reward_clipping():
    """Atlantis steps through EnvPool's XLA op, whose info carries the raw reward and the real game over."""
    pool = make_env("Atlantis-v5", env_seeds(0, 1, 2), episodic_life=True, reward_clip=True)
    assert isinstance(pool, EnvPoolBackend) and not pool.host_step
    assert pool.spec.obs_shape == (4, 84, 84) and pool.spec.obs_dtype == np.uint8
    handle, _ = pool.reset()
    assert handle.dtype == np.uint8  # EnvPool's opaque handle, not a host step counter
    _, out = rollout(pool, random_actions(1500, 2, 4))
    pool.close()
    assert float(out.game_reward.sum()) >= 100 * float(out.reward.sum()) > 0  # Atlantis scores in 100s; clipped to 1
    assert int(out.terminated.sum()) > int(out.game_over.sum()) >= 1  # lives lost vs whole games ended


def test_sticky_actions_are_the_pools_and_change_the_game():
    """repeat_action_probability reaches EnvPool: the same seeds and actions play a different game with it."""
    actions = random_actions(200, 2, 4)
    results = []
    for sticky in (0.0, 0.25, 0.25):
        pool = make_env("Breakout-v5", env_seeds(0, 1, 2), repeat_action_probability=sticky)
        assert pool._env.spec.config.repeat_action_probability == sticky
        results.append(rollout(pool, actions)[0])
        pool.close()
    plain, sticky, sticky_again = results
    np.testing.assert_array_equal(sticky, sticky_again)  # seeded: the repeats are reproducible
    assert not np.array_equal(plain, sticky)


@pytest.mark.parametrize("env_id, steps", [("CartPole-v1", 200), ("Atlantis-v5", 300)])
def test_envpool_host_callback_step_gives_the_same_results_as_the_xla_step(env_id, steps):
    """The step a TPU gets (forced here on CPU) against the XLA op, with Atari's game signal."""
    seeds, spec = env_seeds(1, 1, 3), env_spec(env_id)
    actions = random_actions(steps, 3, spec.num_actions)
    results = []
    for host_step in (False, True):
        pool = EnvPoolBackend(env_id, seeds, episodic_life=True, reward_clip=True, host_step=host_step)
        assert pool.host_step == host_step
        results.append(rollout(pool, actions))
        pool.close()
    (xla_obs, xla), (host_obs, host) = results
    np.testing.assert_array_equal(xla_obs, host_obs)
    for field in StepResult._fields:
        assert getattr(xla, field).dtype == getattr(host, field).dtype, field
        np.testing.assert_array_equal(getattr(xla, field), getattr(host, field), err_msg=field)
    assert xla.terminated.any()


def test_render_returns_an_rgb_frame_of_environment_0():
    pool = make_env("CartPole-v1", env_seeds(0, 1, 2), render=True)
    pool.reset()
    frame = pool.render()
    pool.close()
    assert frame.ndim == 3 and frame.shape[2] == 3 and frame.dtype == np.uint8 and frame.any()


def test_registry_specs_and_ids():
    assert backend_name("CartPole-v1") == "envpool" and backend_name("Taxi-v4") == "gymnasium"  # Taxi-v4: Gymnasium 1.x
    cartpole = env_spec("CartPole-v1")
    assert (cartpole.obs_shape, cartpole.num_actions, cartpole.num_states) == ((4,), 2, None)
    assert (cartpole.max_episode_steps, cartpole.reward_threshold) == (500, 475.0)
    taxi = env_spec("Taxi-v4")
    assert (taxi.obs_shape, taxi.obs_dtype, taxi.num_actions, taxi.num_states) == ((), np.int32, 6, 500)
    assert taxi.max_episode_steps == 200
    assert env_spec("Breakout-v5").reward_threshold is None
    assert is_atari("Pong-v5") and not is_atari("CartPole-v1") and not is_atari("Taxi-v4")
    ids = known_env_ids()
    assert {"Pong-v5", "Taxi-v4", "CartPole-v1"} <= set(ids) and ids == sorted(set(ids))
    with pytest.raises(Exception, match="doesn't exist"):  # Gymnasium's own error
        env_spec("NoSuchGame-v0")


def test_gymnasium_backend_seeds_its_first_reset_and_steps_discrete_observations():
    seeds = env_seeds(2, 1, 3)
    pool = make_env("Taxi-v4", seeds)
    assert isinstance(pool, GymnasiumBackend) and pool.host_step
    obs, out = rollout(pool, random_actions(40, 3, 6))
    again = GymnasiumBackend("Taxi-v4", seeds)
    np.testing.assert_array_equal(again.reset()[1], obs)  # the same seeds give the same first states
    assert obs.dtype == out.obs.dtype == np.int32 and out.obs.shape == (40, 3)
    assert (out.reward == -1).sum() > 0 and out.reward.dtype == np.float32
    pool.close()
    again.close()


IMPORTS_OF_AN_ENVPOOL_RUN = """
import json, sys
import numpy as np
from jaxdqn.config.validate import checked_env_spec
from jaxdqn.envs import make_env
from jaxdqn.envs.envpool import JUMANJI_RENDERERS
spec = checked_env_spec("CartPole-v1")
before = {name.rsplit(".", 1)[1]: type(sys.modules.get(name)).__name__ for name in JUMANJI_RENDERERS}
pyplot = "matplotlib.pyplot" in sys.modules
env = make_env("CartPole-v1", [0, 1])
env_state, obs = env.reset()
env_state, out = env.step(env_state, np.zeros(2, np.int32))
env.close()
state_class = sys.modules[JUMANJI_RENDERERS[0]].Game2048State.__name__
print(json.dumps({"before": before, "pyplot": pyplot, "obs": list(np.asarray(out.obs).shape), "read": state_class,
                  "after": type(sys.modules[JUMANJI_RENDERERS[0]]).__name__}))
"""


def test_envpool_is_imported_with_jumanjis_renderers_as_stand_ins():
    """EnvPool's import loads Jumanji's renderers and Matplotlib (about 0.6 s of every EnvPool process): they are
    stand-ins until read, and a pool steps as before; reading from one imports the real module."""
    import json
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", IMPORTS_OF_AN_ENVPOOL_RUN], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {"before": dict.fromkeys(("logic", "packing", "routing", "swarms"), "DeferredModule"),
                      "pyplot": False, "obs": [2, 4], "read": "Game2048State", "after": "module"}
