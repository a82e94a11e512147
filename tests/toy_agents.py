"""Two agents defined only here, outside the package, to prove the agent protocol (jaxdqn/agents/base.py).

Both learn a linear Q-function q(o) = W o + b by plain gradient steps and explore epsilon-greedily with the
run's schedule. They reach jaxdqn only through `--agent tests.toy_agents:NAME`:

- `ReplayToy` stores every step in jaxdqn's per-environment replay and learns from sampled batches, with a
  hyperparameter of its own (`--toy-rate`, its step size) that lives in its state as data;
- `RolloutToy` has no replay: it keeps the current period's steps (a rollout of iters_per_period steps of
  every environment, the shape PQN has) and learns from them once per period, then forgets them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxdqn.agents.base import AgentFns
from jaxdqn.config.schema import ConfigError, plan
from jaxdqn.core.exploration import epsilon_at, epsilon_greedy, epsilon_schedule_params
from jaxdqn.core.replay import make_replay


@dataclass(frozen=True)
class ToySettings:
    """Settings of the toy agents."""

    toy_rate: float = 0.01
    """Step size of the toy agent's gradient steps, > 0."""
    gamma: float = 0.99
    """Discount factor, in (0, 1]."""
    toy_buffer: int = 4096
    """ReplayToy: replay capacity in transitions (all environments together)."""
    toy_batch: int = 64
    """ReplayToy: transitions per learning step."""

    def __post_init__(self):
        if not self.toy_rate > 0:
            raise ConfigError(f"toy_rate: must be > 0 (got {self.toy_rate!r})")


class ToyState(NamedTuple):
    """A toy agent's state: linear Q parameters, its hyperparameters, and its memory (replay or rollout)."""

    params: Any
    hyper: dict
    memory: Any


def _linear_q(params, obs):
    return obs.reshape(obs.shape[0], -1).astype(jnp.float32) @ params["w"] + params["b"]


def _td_step(params, hyper, obs, action, reward, next_obs, terminated, weight):
    """One gradient step on the weighted one-step TD loss of a batch (weight 0 drops a row)."""

    def loss(params):
        target = reward + hyper["gamma"] * (1.0 - terminated) * jax.lax.stop_gradient(_linear_q(params, next_obs)).max(-1)
        q = jnp.take_along_axis(_linear_q(params, obs), action[:, None], axis=-1)[:, 0]
        return (weight * (target - q) ** 2).sum() / jnp.maximum(weight.sum(), 1.0)

    value, grads = jax.value_and_grad(loss)(params)
    return jax.tree.map(lambda p, g: p - hyper["toy_rate"] * g, params, grads), value


class _Toy:
    settings_type = ToySettings

    def check(self, cfg, spec) -> None:
        if spec.num_states is not None or len(spec.obs_shape) != 1:
            raise ConfigError(f"env_id: the toy agents need flat vector observations ({spec.env_id!r} has none)")

    def _common(self, cfg, spec):
        size = spec.obs_shape[0]
        schedule = cfg.exploration.epsilon_schedule
        hyper = {"toy_rate": jnp.float32(cfg.settings.toy_rate), "gamma": jnp.float32(cfg.settings.gamma),
                 "exploration": epsilon_schedule_params(cfg.exploration, plan(cfg).epsilon_decay_steps)}

        def init_params(key):
            return {"w": 0.01 * jax.random.normal(key, (size, spec.num_actions)), "b": jnp.zeros(spec.num_actions)}

        def act(state, obs, key, env_steps):
            epsilon = epsilon_at(schedule, state.hyper["exploration"], env_steps)
            return epsilon_greedy(key, _linear_q(state.params, obs), epsilon)

        def evaluate_act(params, obs, key, epsilon):
            return epsilon_greedy(key, _linear_q(params, obs), epsilon)

        def report(state, env_steps):
            return {"epsilon": epsilon_at(schedule, state.hyper["exploration"], env_steps)}

        return hyper, init_params, act, evaluate_act, report


class ReplayToy(_Toy):
    """A linear Q-learner on jaxdqn's replay, with its own step size `toy_rate`."""

    name = "replay-toy"

    def build(self, cfg, spec) -> AgentFns:
        hyper, init_params, act, evaluate_act, report = self._common(cfg, spec)
        s = cfg.settings
        replay = make_replay(s.toy_buffer, s.toy_batch, cfg.env.num_envs, spec.obs_shape, spec.obs_dtype, False)
        example = jnp.zeros(spec.obs_shape, spec.obs_dtype)

        def init(key, hyper):
            return ToyState(init_params(key), hyper, replay.init(example))

        def observe(state, step, env_steps, learning):
            return state._replace(memory=replay.add(state.memory, step.obs, step.action, step.reward,
                                                    step.terminated, step.real))

        def learn(state, key, env_steps):
            batch = replay.sample(state.memory, key, 1.0).batch
            params, loss = _td_step(state.params, state.hyper, batch.obs, batch.action, batch.reward,
                                    batch.next_obs, batch.terminated.astype(jnp.float32), jnp.ones_like(batch.reward))
            return state._replace(params=params), {"loss": loss}

        return AgentFns(hyper, init, act, observe, learn, lambda state: state.params, evaluate_act, report,
                        optional_fields=("memory",))


class Rollout(NamedTuple):
    """The steps of the current period, time-major (iters_per_period, num_envs, ...)."""

    obs: Any
    action: Any
    reward: Any
    next_obs: Any
    terminated: Any
    real: Any
    position: Any


class RolloutToy(_Toy):
    """A linear Q-learner without replay: it learns from each period's rollout as it was collected."""

    name = "rollout-toy"

    def build(self, cfg, spec) -> AgentFns:
        hyper, init_params, act, evaluate_act, report = self._common(cfg, spec)
        length, num_envs = plan(cfg).iters_per_period, cfg.env.num_envs

        def empty(shape, dtype):
            return jnp.zeros((length, num_envs, *shape), dtype)

        def init(key, hyper):
            rollout = Rollout(empty(spec.obs_shape, jnp.float32), empty((), jnp.int32), empty((), jnp.float32),
                              empty(spec.obs_shape, jnp.float32), empty((), jnp.float32), empty((), bool),
                              jnp.zeros((), jnp.int32))
            return ToyState(init_params(key), hyper, rollout)

        def observe(state, step, env_steps, learning):
            r = state.memory
            write = lambda buffer, value: buffer.at[r.position % length].set(value.astype(buffer.dtype))  # noqa: E731
            rollout = Rollout(*(write(b, v) for b, v in zip(r[:-1], (step.obs, step.action, step.reward, step.next_obs,
                                                                    step.terminated, step.real))), r.position + 1)
            return state._replace(memory=rollout)

        def learn(state, key, env_steps):
            r = jax.tree.map(lambda x: x.reshape(length * num_envs, *x.shape[2:]), state.memory[:-1])
            params, loss = _td_step(state.params, state.hyper, r[0], r[1], r[2], r[3], r[4], r[5].astype(jnp.float32))
            return state._replace(params=params, memory=state.memory._replace(position=jnp.zeros((), jnp.int32))), \
                {"loss": loss}

        return AgentFns(hyper, init, act, observe, learn, lambda state: state.params, evaluate_act, report)

