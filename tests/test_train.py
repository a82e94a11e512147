"""The compiled loop and the train step on real EnvPool CartPole: auto-reset handling, jit equivalence,
compile-once, and independent seeds."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdqn.config import Config
from jaxdqn.learner import LearnerParts, init_agent, make_optimizer, make_train_step
from jaxdqn.networks import make_network
from jaxdqn.replay import Transition, make_replay
from jaxdqn.train import make_train

SMALL = Config(num_envs=4, total_steps=100_000, learning_starts=400, buffer_size=4096, batch_size=32,
               train_frequency=4, log_interval=400)


def test_auto_reset_step_is_never_stored():
    cfg = dataclasses.replace(SMALL, learning_starts=99_000)  # acting only
    trainer = make_train(cfg)
    state = jax.jit(trainer.init)(jax.random.PRNGKey(0))
    iterations = 500
    state, _ = jax.jit(trainer.run_chunk)(state, jnp.int32(iterations))
    replay = jax.tree.map(lambda x: np.asarray(x[0]), state.agents.replay)  # seed 0
    episodes = int(state.stats.episodes[0])
    ended_on_last_step = int(np.asarray(state.done[0]).sum())
    assert episodes > 50  # random play: many episodes, many auto-resets
    # every finished episode except those ending on the very last step triggered one skipped reset step
    assert int(replay.size) == iterations * cfg.num_envs - (episodes - ended_on_last_step)
    size = int(replay.size)
    obs, next_obs = replay.storage.obs[:size], replay.storage.next_obs[:size]
    # CartPole integrates x' = x + 0.02 * x_dot: true for every real transition, false for a
    # terminal-observation -> reset-observation pair.
    np.testing.assert_allclose(next_obs[:, 0], obs[:, 0] + 0.02 * obs[:, 1], atol=1e-4)
    assert (np.abs(obs[:, 2]) <= 0.2095).all(), "a terminal observation was stored as a start state"
    assert replay.storage.terminated[:size].sum() > 0
    trainer.env.close()


def _small_learner(cfg, key=0):
    parts = LearnerParts(make_network(cfg, 2), make_optimizer(cfg), make_replay(cfg))
    example = jnp.zeros(4)
    transition = Transition(example, jnp.int32(0), jnp.float32(0), example, jnp.bool_(False))
    state = init_agent(parts, jax.random.PRNGKey(key), example, transition)
    rng = np.random.default_rng(0)
    n = 64
    batch = Transition(jnp.asarray(rng.normal(size=(n, 4)), jnp.float32), jnp.asarray(rng.integers(0, 2, n)),
                       jnp.asarray(rng.normal(size=n), jnp.float32), jnp.asarray(rng.normal(size=(n, 4)), jnp.float32),
                       jnp.asarray(rng.random(n) < 0.2))
    replay = parts.replay.add(state.replay, batch, jnp.ones(n, bool))
    return parts, state._replace(replay=replay)


@pytest.mark.parametrize("double_q,dueling,loss", [(False, False, "l2"), (True, True, "huber")])
def test_jitted_equals_unjitted(double_q, dueling, loss):
    cfg = dataclasses.replace(SMALL, double_q=double_q, dueling=dueling, loss=loss, max_grad_norm=1.0,
                              target_update_period=2, target_tau=0.5)
    parts, state = _small_learner(cfg)
    train_step = make_train_step(cfg, parts)
    jitted_state, eager_state = state, state
    for i in range(3):
        key = jax.random.PRNGKey(i)
        jitted_state, jitted_metrics = jax.jit(train_step)(jitted_state, key)
        with jax.disable_jit():
            eager_state, eager_metrics = train_step(eager_state, key)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
                 (jitted_state.params, jitted_state.target_params), (eager_state.params, eager_state.target_params))
    np.testing.assert_allclose(jitted_metrics["loss"], eager_metrics["loss"], rtol=1e-5)
    # target updates every 2 updates as a Polyak average: after 3 updates it moved, but is not the online net
    first_target = jax.tree.leaves(state.target_params)[0]
    assert not np.allclose(jax.tree.leaves(jitted_state.target_params)[0], first_target)
    assert not np.allclose(jax.tree.leaves(jitted_state.target_params)[0], jax.tree.leaves(jitted_state.params)[0])


def test_train_step_compiles_once():
    cfg = SMALL
    parts, state = _small_learner(cfg)
    train_step = make_train_step(cfg, parts)
    traces = []

    def counted(state, key):
        traces.append(1)
        return train_step(state, key)

    step = jax.jit(counted, donate_argnums=0)
    for i in range(5):
        state, metrics = step(state, jax.random.PRNGKey(i))
    assert len(traces) == 1
    assert int(state.updates) == 5


def test_chunk_compiles_once_and_seeds_differ():
    cfg = dataclasses.replace(SMALL, num_seeds=2)
    trainer = make_train(cfg)
    state = jax.jit(trainer.init)(jax.random.PRNGKey(0))
    first_kernel = np.asarray(state.agents.params["params"]["MLPTorso_0"]["Dense_0"]["kernel"])
    assert not np.allclose(first_kernel[0], first_kernel[1]), "seeds start from the same parameters"
    assert not np.array_equal(np.asarray(state.agents.key[0]), np.asarray(state.agents.key[1]))
    traces = []

    def counted(state, n):
        traces.append(1)
        return trainer.run_chunk(state, n)

    chunk = jax.jit(counted, donate_argnums=0)
    for n in (50, 100, 150):  # 300 periods of 4 env steps: past learning_starts, updates run
        state, metrics = chunk(state, jnp.int32(n))
    assert len(traces) == 1
    assert int(metrics.updates) > 0
    assert int(state.agents.updates[0]) == int(state.agents.updates[1]) > 0
    kernels = np.asarray(state.agents.params["params"]["MLPTorso_0"]["Dense_1"]["kernel"])
    assert not np.allclose(kernels[0], kernels[1])
    returns = np.asarray(state.stats.recent_returns)
    assert not np.array_equal(returns[0], returns[1]), "seeds produced identical episodes"
    trainer.env.close()
