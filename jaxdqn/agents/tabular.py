"""Tabular Q-learning for environments with Discrete observations (FrozenLake-v1, Taxi-v3, CliffWalking-v0).

Each real transition is applied online, as it is observed, with the blended update

    Q[s, a] <- (1 - alpha) Q[s, a] + alpha (r + gamma * max_a' Q[s', a'] * (1 - terminated))

(EnvPool's auto-reset step is skipped). The transitions of one iteration are applied one environment
after another, so a batch of N environments performs exactly the N sequential updates a
single-environment learner would. `learn` only reports the mean squared TD error and Q of the period.
"""

from __future__ import annotations

from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp

from jaxdqn.agents.base import AgentFns
from jaxdqn.config.schema import ConfigError, TabularSettings, plan
from jaxdqn.core.exploration import EXPLORATION_RUN_TIME_FIELDS, epsilon_at, epsilon_greedy, epsilon_schedule_params


class TabularState(NamedTuple):
    """One agent's Q-table, its hyperparameters, and sums for the metrics of the current period."""

    params: chex.Array  # (num_states, num_actions)
    updates: chex.Array  # table updates applied (real transitions while learning)
    hyper: dict
    td_square_sum: chex.Array
    q_sum: chex.Array
    steps: chex.Array  # iterations summed in td_square_sum / q_sum


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


def sequential_q_learning_updates(q_table, s_tm1, a_tm1, r_t, terminated_t, s_t, valid, alpha, gamma):
    """Apply a batch of transitions (leading axis) to `q_table` one after another; returns (table, td errors)."""

    def apply_one(table, transition):
        s, a, r, terminated, s_next, is_valid = transition
        return q_learning_update(table, s, a, r, terminated, s_next, alpha=alpha, gamma=gamma, valid=is_valid)

    return jax.lax.scan(apply_one, q_table, (s_tm1, a_tm1, r_t, terminated_t, s_t, valid))


def alpha_at(hyper: dict, env_steps, schedule_env_steps: int):
    """The blending rate: tabular_alpha, moving linearly to tabular_alpha_end over the run."""
    fraction = jnp.clip(jnp.asarray(env_steps, jnp.float32) / schedule_env_steps, 0.0, 1.0)
    return hyper["tabular_alpha"] + (hyper["tabular_alpha_end"] - hyper["tabular_alpha"]) * fraction


class Tabular:
    """The `tabular` registry entry."""

    name = "tabular"
    settings_type = TabularSettings
    run_time_fields = frozenset({*EXPLORATION_RUN_TIME_FIELDS, "gamma", "tabular_alpha", "tabular_alpha_end"})

    def check(self, cfg, spec) -> None:
        """The observation space must be Discrete."""
        if spec.num_states is None:
            raise ConfigError(f"agent: tabular needs a Discrete observation space, but {spec.env_id!r} has "
                              f"Box{tuple(spec.obs_shape)}: use --agent dqn")
        if cfg.loop.data_parallel > 1:
            raise ConfigError(f"data_parallel: tabular learns from every step as it comes, with no minibatch to "
                              f"split over devices; allowed: 1 (got {cfg.loop.data_parallel})")

    def build(self, cfg, spec) -> AgentFns:
        """Tabular Q-learning's pure functions for `cfg` on an environment with `spec`."""
        s: TabularSettings = cfg.settings
        the_plan = plan(cfg)
        schedule = cfg.exploration.epsilon_schedule
        alpha_end = s.tabular_alpha if s.tabular_alpha_end is None else s.tabular_alpha_end
        hyper = {"gamma": jnp.float32(s.gamma), "tabular_alpha": jnp.float32(s.tabular_alpha),
                 "tabular_alpha_end": jnp.float32(alpha_end),
                 "exploration": epsilon_schedule_params(cfg.exploration, the_plan.epsilon_decay_steps)}
        lookup = lambda table, states: table[states.astype(jnp.int32)]  # noqa: E731

        def init(key, hyper) -> TabularState:
            del key
            return TabularState(jnp.zeros((spec.num_states, spec.num_actions), jnp.float32), jnp.zeros((), jnp.int32),
                                jax.tree.map(jnp.array, hyper),  # own buffers (copies), so the state can be donated
                                jnp.zeros((), jnp.float32), jnp.zeros((), jnp.float32), jnp.zeros((), jnp.int32))

        def act(state: TabularState, obs, key, env_steps):
            epsilon = epsilon_at(schedule, state.hyper["exploration"], env_steps)
            return epsilon_greedy(key, lookup(state.params, obs), epsilon)

        def observe(state: TabularState, step, env_steps, learning):
            hyper = state.hyper
            mask = step.real & learning
            table, td = sequential_q_learning_updates(
                state.params, step.obs.astype(jnp.int32), step.action, step.reward, step.terminated,
                step.next_obs.astype(jnp.int32), mask, alpha_at(hyper, env_steps, the_plan.schedule_env_steps),
                hyper["gamma"])
            taken_q = jnp.take_along_axis(lookup(state.params, step.obs), step.action[:, None], axis=-1)[:, 0]
            learned = jnp.asarray(learning, jnp.float32)
            return state._replace(
                params=table, updates=state.updates + mask.sum(dtype=jnp.int32),
                td_square_sum=state.td_square_sum + learned * (td**2).sum() / jnp.maximum(mask.sum(), 1),
                q_sum=state.q_sum + learned * taken_q.mean(), steps=state.steps + jnp.asarray(learning, jnp.int32))

        def learn(state: TabularState, key, env_steps):
            del key, env_steps
            count = jnp.maximum(state.steps, 1).astype(jnp.float32)
            metrics = {"loss": state.td_square_sum / count, "q_mean": state.q_sum / count}
            zero = jnp.zeros((), jnp.float32)
            return state._replace(td_square_sum=zero, q_sum=zero, steps=jnp.zeros((), jnp.int32)), metrics

        def report(state: TabularState, env_steps):
            return {"epsilon": epsilon_at(schedule, state.hyper["exploration"], env_steps)}

        def evaluate_act(params, obs, key, epsilon):
            return epsilon_greedy(key, lookup(params, obs), epsilon)

        return AgentFns(hyper, init, act, observe, learn, lambda state: state.params, evaluate_act, report)
