"""Tabular Q-learning for environments with Discrete observations (FrozenLake-v1, Taxi-v3, CliffWalking-v0).

The same compiled pattern as `train.py`: each iteration acts epsilon-greedily on a batch of environments
per seed, steps EnvPool inside jit (or Gymnasium through a host callback), and applies the blended update

    Q[s, a] <- (1 - alpha) Q[s, a] + alpha (r + gamma * max_a' Q[s', a'] * (1 - terminated))

to every real transition (EnvPool's auto-reset step is skipped). The transitions of one iteration are
applied one environment after another, so a batch of N environments performs exactly the N sequential
updates a single-environment learner would. `make_tabular_train` returns a `train.Trainer`, so the
host loop, metrics, summary and greedy evaluation of `train.run_training` serve both agents.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp

from jaxdqn.envs import EnvInfo, env_spaces, make_pool, make_xla_step
from jaxdqn.exploration import epsilon_greedy, make_epsilon_schedule
from jaxdqn.train import (ChunkMetrics, LoopState, Trainer, action_log_dtype, episode_ends, episode_log_capacity,
                          init_episode_stats, log_chunk_periods, log_episode_ends, make_run_chunk,
                          update_episode_stats)


class QTable(NamedTuple):
    """A Q-table with a network's `init` and `apply`: `apply(table, states) -> (batch, num_actions)` Q-values."""

    num_actions: int
    num_states: int

    def init(self, key, example_states) -> chex.Array:
        """An all-zero (num_states, num_actions) table (`key` and `example_states` are unused, as a network's)."""
        del key, example_states
        return jnp.zeros((self.num_states, self.num_actions), jnp.float32)

    def apply(self, table: chex.Array, states: chex.Array) -> chex.Array:
        """Rows of `table` for a batch of integer states."""
        return table[states.astype(jnp.int32)]


class TabularAgent(NamedTuple):
    """One seed's agent; `params` is the Q-table, named so that evaluation treats it like network parameters."""

    params: chex.Array  # (num_states, num_actions)
    key: chex.PRNGKey
    updates: chex.Array  # Q-table updates applied (real transitions after learning_starts)


def q_learning_update(q_table, s_tm1, a_tm1, r_t, terminated_t, s_t, alpha, gamma, valid=True):
    """One blended Q-learning update of `q_table` from transition (s_tm1, a_tm1, r_t, terminated_t, s_t).

    Returns (new table, td error). Where `valid` is false the table is unchanged (and td is 0).
    """
    chex.assert_rank([q_table, s_tm1, a_tm1, r_t], [2, 0, 0, 0])
    target = r_t + gamma * jnp.max(q_table[s_t]) * (1.0 - jnp.asarray(terminated_t, jnp.float32))
    old = q_table[s_tm1, a_tm1]
    rate = alpha * jnp.asarray(valid, jnp.float32)
    new = (1.0 - rate) * old + rate * target
    return q_table.at[s_tm1, a_tm1].set(new), (target - old) * jnp.asarray(valid, jnp.float32)


def make_alpha_schedule(cfg, total_env_steps: int):
    """`alpha(env_steps)`: constant `tabular_alpha`, or linear to `tabular_alpha_end` over `total_env_steps`."""
    start, end = cfg.tabular_alpha, cfg.tabular_alpha_end
    if end is None:
        return lambda step: jnp.full((), start, jnp.float32)
    return lambda step: start + (end - start) * jnp.clip(jnp.asarray(step, jnp.float32) / total_env_steps, 0.0, 1.0)


def sequential_q_learning_updates(q_table, s_tm1, a_tm1, r_t, terminated_t, s_t, valid, alpha, gamma):
    """Apply a batch of transitions (leading axis) to `q_table` one after another; returns (table, td errors)."""

    def apply_one(table, transition):
        s, a, r, terminated, s_next, is_valid = transition
        return q_learning_update(table, s, a, r, terminated, s_next, alpha=alpha, gamma=gamma, valid=is_valid)

    return jax.lax.scan(apply_one, q_table, (s_tm1, a_tm1, r_t, terminated_t, s_t, valid))


def make_tabular_train(cfg) -> Trainer:
    """Build the environments and the compiled chunk of a tabular Q-learning run for `cfg` (validated).

    One period is one iteration (every environment of every seed steps once, then learns).
    """
    obs_space, action_space, max_episode_steps = env_spaces(cfg.env_id)
    num_states, num_actions = int(obs_space.n), int(action_space.n)
    info = EnvInfo((), jnp.int32, num_actions, max_episode_steps)
    num_seeds, num_envs = cfg.num_seeds, cfg.num_envs
    env, reset_obs = make_pool(cfg.env_id, num_seeds * num_envs, cfg.seed, cfg.env_threads)
    handle, env_step = make_xla_step(env)
    action_log_length = log_chunk_periods(cfg)
    log_dtype = action_log_dtype(num_actions)
    table = QTable(num_actions, num_states)
    epsilon_at = make_epsilon_schedule(cfg)
    first_obs = jnp.asarray(reset_obs, jnp.int32).reshape(num_seeds, num_envs)
    alpha_at = make_alpha_schedule(cfg, math.ceil(cfg.total_steps / num_envs) * num_envs)
    learn_all = jax.vmap(functools.partial(sequential_q_learning_updates, gamma=cfg.gamma),
                         in_axes=(0, 0, 0, 0, 0, 0, 0, None))
    record_episodes = functools.partial(update_episode_stats, solved_return=cfg.solved_return)
    log_capacity = episode_log_capacity(cfg, iters_per_period=1)

    def init(key) -> LoopState:
        seed_keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(num_seeds))
        agents = TabularAgent(jax.vmap(table.init, in_axes=(0, None))(seed_keys, first_obs[0]), seed_keys,
                              jnp.zeros((num_seeds,), jnp.int32))
        return LoopState(agents, handle, first_obs, jnp.zeros((num_seeds, num_envs), jnp.bool_),
                         init_episode_stats(num_seeds, num_envs), jnp.zeros((), jnp.int32))

    def period(_, carry):
        state, metrics, first_iteration, learn_after = carry
        agents = state.agents
        env_steps = state.iteration * num_envs
        act_keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(agents.key, state.iteration)
        q_values = jax.vmap(table.apply)(agents.params, state.obs)
        actions = jax.vmap(epsilon_greedy, in_axes=(0, 0, None))(act_keys, q_values, epsilon_at(env_steps))
        pool_actions = actions.reshape(num_seeds * num_envs)
        action_log = metrics.actions.at[state.iteration - first_iteration].set(pool_actions.astype(log_dtype),
                                                                               mode="drop")
        handle, (next_obs, reward, terminated, truncated) = env_step(state.env_handle, pool_actions)
        shape_sn = (num_seeds, num_envs)
        next_obs = next_obs.astype(jnp.int32).reshape(shape_sn)
        reward, terminated, truncated = (x.reshape(shape_sn) for x in (reward, terminated, truncated))
        valid = ~state.done  # the step after an episode ended is the auto-reset, not a transition
        learning = env_steps >= learn_after
        learn_mask = valid & learning
        q_tables, td = learn_all(agents.params, state.obs, actions, reward, terminated, next_obs, learn_mask,
                                 alpha_at(env_steps))
        done = (terminated | truncated) & valid
        ends = episode_ends(state.stats, reward, valid, done, env_steps + num_envs)
        stats = record_episodes(state.stats, reward, valid, done, env_steps + num_envs)
        agents = TabularAgent(q_tables, agents.key, agents.updates + learn_mask.sum(axis=1, dtype=jnp.int32))
        taken_q = jnp.take_along_axis(q_values, actions[..., None], axis=-1)[..., 0]
        masked_count = jnp.maximum(learn_mask.sum(axis=1), 1)
        metrics = ChunkMetrics(metrics.loss_sum + jnp.where(learning, (td**2).sum(axis=1) / masked_count, 0.0),
                               metrics.q_sum + jnp.where(learning, taken_q.mean(axis=1), 0.0),
                               metrics.updates + learning.astype(jnp.int32), action_log,
                               log_episode_ends(metrics.finished, jax.tree.map(lambda x: x[None], ends)))
        return LoopState(agents, handle, next_obs, done, stats, state.iteration + 1), metrics, first_iteration, \
            learn_after

    run_chunk = make_run_chunk(period, cfg, action_log_length, log_dtype, log_capacity)

    return Trainer(cfg, info, env, init, run_chunk, None, table, 1, 1, action_log_length, env_step, handle,
                   reset_obs)
