"""EnvPool overlapped with learning (`env_overlap`): the stored steps are exactly the environment's, and the
policy's lag is exactly the one the config's docs state. Real EnvPool CartPole pools."""

from dataclasses import dataclass
from typing import NamedTuple

import envpool
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdqn.agents.base import AgentFns, no_report
from jaxdqn.config.build import make_config
from jaxdqn.config.schema import ConfigError
from jaxdqn.envs import env_seeds
from jaxdqn.run.driver import build_rollout, run_training

NUM_ENVS, ITERS_PER_PERIOD, PERIODS_PER_CHUNK = 2, 2, 5
SMALL = dict(num_envs=NUM_ENVS, train_frequency=NUM_ENVS * ITERS_PER_PERIOD, total_steps=10_000,
             learning_starts=9_000, buffer_size=2_000, batch_size=32,
             log_interval=NUM_ENVS * ITERS_PER_PERIOD * PERIODS_PER_CHUNK)


def run_chunks(cfg, chunks: int):
    """Run `chunks` log intervals of `cfg`'s loop; return (final LoopState, the chunks' action logs joined)."""
    rollout = build_rollout(cfg)
    state = jax.jit(rollout.init)(jax.random.PRNGKey(0))
    chunk = jax.jit(rollout.run_chunk)
    logs = []
    for _ in range(chunks):
        state, output = chunk(state, jnp.int32(PERIODS_PER_CHUNK), jnp.int32(cfg.loop.learning_starts))
        logs.append(np.asarray(output.actions))
    rollout.env.close()
    return state, np.concatenate(logs)


def test_overlapped_steps_are_the_environments_own_and_the_same_as_without_overlap():
    """Acting only (the agent's parameters never change), overlap changes nothing: the same actions, the same
    replay; and the replay's rings hold exactly the observations a Python EnvPool pool returns for them."""
    chunks = 40  # 400 steps per environment: many episodes, chunk boundaries between them
    plain, plain_actions = run_chunks(make_config(**SMALL), chunks)
    overlapped, actions = run_chunks(make_config(**SMALL, env_overlap=True), chunks)
    np.testing.assert_array_equal(actions, plain_actions)
    jax.tree.map(np.testing.assert_array_equal, overlapped._replace(env_state=None), plain._replace(env_state=None))
    pool = envpool.make("CartPole-v1", env_type="gymnasium", num_envs=NUM_ENVS, batch_size=NUM_ENVS,
                        seed=[int(seed) for seed in env_seeds(0, 1, NUM_ENVS)])
    observations = [pool.reset()[0]] + [pool.step(row.astype(np.int32))[0] for row in actions]
    pool.close()
    stored = np.asarray(overlapped.agents.replay.storage.obs[0])  # (envs, slots, 4), slot t = step t's obs
    steps = len(actions)
    np.testing.assert_array_equal(stored[:, :steps].swapaxes(0, 1), np.stack(observations[:steps]))
    np.testing.assert_array_equal(np.asarray(overlapped.obs[0]), observations[steps])
    assert int(overlapped.stats.episodes[0]) > 10


@dataclass(frozen=True)
class ProbeSettings:
    """No settings: the probe only counts."""


class ProbeState(NamedTuple):
    updates: jnp.ndarray
    hyper: dict


class LagProbe:
    """An agent whose action is its number of updates so far, modulo 2: the action log shows which update
    each action was chosen after."""

    name = "lag-probe"
    settings_type = ProbeSettings

    def check(self, cfg, spec) -> None:
        del cfg, spec

    def build(self, cfg, spec) -> AgentFns:
        del cfg, spec

        def act(state, obs, key, env_steps):
            return jnp.full(obs.shape[:1], state.updates % 2, jnp.int32)

        def learn(state, key, env_steps):
            return state._replace(updates=state.updates + 1), {"updates": state.updates.astype(jnp.float32)}

        return AgentFns({}, lambda key, hyper: ProbeState(jnp.int32(0), hyper), act,
                        lambda state, step, env_steps, learning: state, learn, lambda state: state.updates,
                        lambda params, obs, key, epsilon: jnp.zeros(obs.shape[:1], jnp.int32), no_report)


@pytest.mark.parametrize("overlap", [False, True])
def test_the_policy_lags_one_update_exactly_where_the_docs_say(overlap):
    """Without overlap, the actions of period p follow p updates. With it, the action that opens a period is
    chosen before that period's update (one behind), except the first action of each log interval."""
    cfg = make_config(agent=f"{__name__}:LagProbe", num_envs=NUM_ENVS, train_frequency=NUM_ENVS * ITERS_PER_PERIOD,
                      total_steps=10_000, learning_starts=0, log_interval=SMALL["log_interval"], env_overlap=overlap)
    _, actions = run_chunks(cfg, chunks=3)
    iteration = np.arange(len(actions))
    updates_before = iteration // ITERS_PER_PERIOD
    if overlap:
        opens_period = (iteration % ITERS_PER_PERIOD == 0) & (iteration % (ITERS_PER_PERIOD * PERIODS_PER_CHUNK) != 0)
        updates_before = updates_before - opens_period
    np.testing.assert_array_equal(actions, np.repeat((updates_before % 2)[:, None], NUM_ENVS, axis=1))


@pytest.mark.parametrize("env_id", ["gymnax/CartPole-v1", "Taxi-v4"])
def test_overlap_needs_envpools_xla_step(env_id, tmp_path):
    with pytest.raises(ConfigError, match=r"^env_overlap: needs EnvPool's XLA step .* allowed here: False"):
        run_training(make_config(env_id=env_id, env_overlap=True, agent="tabular" if env_id == "Taxi-v4" else "dqn"),
                     tmp_path / "run")
    assert not (tmp_path / "run").exists()
