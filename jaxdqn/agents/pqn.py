"""PQN (Gallici et al. 2024, "Simplifying Deep Temporal Difference Learning"): Q-learning without a replay
buffer or a target network.

Every environment of the agent steps `rollout_length = train_frequency / num_envs` times (one training period);
`observe` writes each step into a rollout buffer, and `learn` then computes the Q(lambda) returns of the rollout
with the current network (`losses.lambda_returns`, per environment, over time) and runs `update_epochs` passes
of `num_minibatches` shuffled minibatches of squared error against them. The network normalises its layers
(LayerNorm), which is what keeps learning stable without a target network.

The returns never cross an episode's end: a termination leaves the reward alone, a truncation bootstraps from
the final observation's value, and EnvPool's auto-reset step (not a transition) is left out of the loss.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp
import optax

from jaxdqn.agents.base import AgentFns, check_data_parallel
from jaxdqn.agents.dqn import check_q_network
from jaxdqn.config.schema import PQNSettings, plan, require
from jaxdqn.core import losses
from jaxdqn.core.exploration import EXPLORATION_RUN_TIME_FIELDS, epsilon_at, epsilon_greedy, epsilon_schedule_params
from jaxdqn.core.networks import make_network
from jaxdqn.core.optim import (DEVICE_AXIS, OPTIMIZER_HYPERPARAMETERS, init_optimizer, make_optimizer,
                               optimizer_hyperparameters, with_learning_rate)


class RolloutBuffer(NamedTuple):
    """The steps of the current rollout, time-major: row t holds every environment's step t of the period.

    The observation reached by step t is row t+1's `obs` (the loop hands the agent each step's next observation
    as the following step's observation); that of the last row is `last_next_obs`."""

    obs: chex.Array  # (T, N, *obs_shape)
    action: chex.Array  # (T, N) int32
    reward: chex.Array  # (T, N) float32
    terminated: chex.Array  # (T, N) bool
    done: chex.Array  # (T, N) bool: terminated or truncated
    real: chex.Array  # (T, N) bool: a transition (not EnvPool's auto-reset step)
    last_next_obs: chex.Array  # (N, *obs_shape)


class PQNState(NamedTuple):
    """Everything one PQN agent carries between steps."""

    params: Any
    opt_state: Any
    rollout: RolloutBuffer
    updates: chex.Array
    hyper: dict


def q_lambda_targets(q_next, reward, terminated, done, gamma, q_lambda):
    """Q(lambda) returns of a rollout (time-major (T, N) arrays; `q_next` is (T, N, num_actions), the Q-values of
    the observation each step reached): per environment, `losses.lambda_returns` of the greedy values, with
    discount gamma * (1 - terminated) and lambda cut to 0 where an episode ended."""
    discount = gamma * (1.0 - terminated.astype(jnp.float32))
    lambdas = q_lambda * (1.0 - done.astype(jnp.float32))
    return jax.vmap(losses.lambda_returns, in_axes=1, out_axes=1)(reward.astype(jnp.float32), discount,
                                                                 jnp.max(q_next, axis=-1), lambdas)


def rollout_targets(apply, params, rollout: RolloutBuffer, gamma, q_lambda):
    """The Q(lambda) targets (T, N) of a full rollout, from the Q-values `apply(params, obs)` of the observations
    its steps reached."""
    length, num_envs = rollout.action.shape
    next_obs = jnp.concatenate([rollout.obs[1:], rollout.last_next_obs[None]])
    q_next = apply(params, next_obs.reshape(length * num_envs, *next_obs.shape[2:])).reshape(length, num_envs, -1)
    return q_lambda_targets(q_next, rollout.reward, rollout.terminated, rollout.done, gamma, q_lambda)


def learning_rate_at(hyper: dict, env_steps, steps_per_period: int, schedule_env_steps: int, anneal: bool):
    """The step size of the rollout that ends at `env_steps`: learning_rate, annealed linearly towards 0 over the run
    (the first rollout at the full rate) when `anneal`."""
    if not anneal:
        return hyper["learning_rate"]
    done = jnp.asarray(env_steps - steps_per_period, jnp.float32) / schedule_env_steps
    return hyper["learning_rate"] * jnp.clip(1.0 - done, 0.0, 1.0)


class PQN:
    """The `pqn` registry entry."""

    name = "pqn"
    settings_type = PQNSettings
    run_time_fields = frozenset({*OPTIMIZER_HYPERPARAMETERS, *EXPLORATION_RUN_TIME_FIELDS, "gamma", "q_lambda"})

    def check(self, cfg, spec) -> None:
        """Observations, the rollout's shape and the minibatches against the environment and the loop."""
        s: PQNSettings = cfg.settings
        num_envs, loop = cfg.env.num_envs, cfg.loop
        check_q_network(s.network, spec, self.name)
        require(loop.train_frequency % num_envs == 0, "train_frequency",
                f"must be a multiple of num_envs ({num_envs}) for pqn: a rollout is train_frequency / num_envs "
                "steps of every environment", loop.train_frequency)
        require(loop.train_frequency % s.num_minibatches == 0, "num_minibatches",
                f"must split the rollout's {loop.train_frequency} steps (train_frequency) evenly",
                s.num_minibatches)
        check_data_parallel(cfg, num_envs=num_envs)
        minibatch, shards = loop.train_frequency // s.num_minibatches, loop.data_parallel
        require(minibatch % shards == 0, "num_minibatches", f"each minibatch of the rollout ({minibatch} steps) must "
                f"split evenly over the data_parallel devices ({shards})", s.num_minibatches)
        require(not s.network.noisy, "noisy", "pqn explores by its epsilon schedule; allowed: False", s.network.noisy)
        require(loop.gradient_steps == 1, "gradient_steps",
                "pqn runs update_epochs x num_minibatches updates per rollout instead; allowed: 1",
                loop.gradient_steps)

    def build(self, cfg, spec) -> AgentFns:
        """PQN's pure functions for `cfg` on an environment with `spec`."""
        s: PQNSettings = cfg.settings
        the_plan = plan(cfg)
        num_envs = cfg.env.num_envs
        length = the_plan.iters_per_period
        # a data-parallel learner's share: its environments' rollout and its part of every minibatch
        shards = cfg.loop.data_parallel
        average_over = DEVICE_AXIS if shards > 1 else None
        local_envs = num_envs // shards
        batch = length * local_envs
        minibatch = batch // s.num_minibatches
        network = make_network(s.network, spec.num_actions)
        optimizer = make_optimizer(s.optim, average_over)
        schedule = cfg.exploration.epsilon_schedule
        example_obs = jnp.zeros(spec.obs_shape, spec.obs_dtype)
        hyperparameters = {**optimizer_hyperparameters(s.optim), "gamma": jnp.float32(s.gamma),
                           "q_lambda": jnp.float32(s.q_lambda),
                           "exploration": epsilon_schedule_params(cfg.exploration, the_plan.epsilon_decay_steps)}

        def init(key, hyper) -> PQNState:
            hyper = jax.tree.map(jnp.array, hyper)  # own buffers (copies), so the state can be donated
            params = network.init(key, example_obs[None])
            steps = (length, local_envs)
            rollout = RolloutBuffer(jnp.zeros((*steps, *spec.obs_shape), spec.obs_dtype), jnp.zeros(steps, jnp.int32),
                                    jnp.zeros(steps, jnp.float32), jnp.zeros(steps, bool), jnp.zeros(steps, bool),
                                    jnp.zeros(steps, bool), jnp.zeros((local_envs, *spec.obs_shape), spec.obs_dtype))
            return PQNState(params, init_optimizer(optimizer, params, hyper), rollout, jnp.zeros((), jnp.int32), hyper)

        def act(state: PQNState, obs, key, env_steps):
            epsilon = epsilon_at(schedule, state.hyper["exploration"], env_steps)
            return epsilon_greedy(key, network.apply(state.params, obs), epsilon)

        def observe(state: PQNState, step, env_steps, learning):
            del learning  # the rollout fills whatever the period; `learn` decides what to do with it
            row = (env_steps // num_envs) % length
            columns = (step.obs, step.action, step.reward, step.terminated, step.terminated | step.truncated,
                       step.real)
            rollout = state.rollout
            written = [jax.lax.dynamic_update_index_in_dim(ring, x.astype(ring.dtype), row, 0)
                       for ring, x in zip(rollout[:-1], columns)]
            return state._replace(rollout=RolloutBuffer(*written, step.next_obs.astype(spec.obs_dtype)))

        def loss_fn(params, obs, action, target, weight):
            # the mean squared error over real transitions (CleanRL's mse_loss: no factor 1/2)
            q = network.apply(params, obs)
            q_taken = jnp.take_along_axis(q, action[:, None], axis=-1)[:, 0]
            count = jnp.sum(weight)
            if average_over:  # over the whole minibatch: the devices' gradients are averaged, hence the factor
                count = jax.lax.psum(count, average_over) / shards
            loss = jnp.sum(weight * jnp.square(target - q_taken)) / jnp.maximum(count, 1.0 / shards)
            return loss, q_taken

        def learn(state: PQNState, key, env_steps):
            rollout, hyper = state.rollout, state.hyper
            targets = rollout_targets(network.apply, state.params, rollout, hyper["gamma"], hyper["q_lambda"])
            data = jax.tree.map(lambda x: x.reshape(batch, *x.shape[2:]),
                                (rollout.obs, rollout.action, targets, rollout.real.astype(jnp.float32)))

            def update(carry, indices):
                params, opt_state = carry
                (loss, q_taken), grads = jax.value_and_grad(loss_fn, has_aux=True)(
                    params, *jax.tree.map(lambda x: x[indices], data))
                updates, opt_state = optimizer.update(grads, opt_state, params)
                return (optax.apply_updates(params, updates), opt_state), (loss, jnp.mean(q_taken))

            def epoch(carry, key):
                order = jax.random.permutation(key, batch).reshape(s.num_minibatches, minibatch)
                return jax.lax.scan(update, carry, order)

            rate = learning_rate_at(hyper, env_steps, the_plan.steps_per_period, the_plan.schedule_env_steps,
                                    s.anneal_lr)
            (params, opt_state), (loss, q_mean) = jax.lax.scan(
                epoch, (state.params, with_learning_rate(state.opt_state, rate)),
                jax.random.split(key, s.update_epochs))
            metrics = {"loss": jnp.mean(loss), "q_mean": jnp.mean(q_mean)}
            return state._replace(params=params, opt_state=opt_state,
                                  updates=state.updates + s.update_epochs * s.num_minibatches), metrics

        def evaluate_act(params, obs, key, epsilon):
            return epsilon_greedy(key, network.apply(params, obs), epsilon)

        def report(state: PQNState, env_steps):
            # the rate of the next rollout's updates
            rate = learning_rate_at(state.hyper, env_steps + the_plan.steps_per_period, the_plan.steps_per_period,
                                    the_plan.schedule_env_steps, s.anneal_lr)
            return {"epsilon": epsilon_at(schedule, state.hyper["exploration"], env_steps), "learning_rate": rate}

        # The rollout is refilled before each update, so a checkpoint needs none of it (checkpoint_replay False).
        return AgentFns(hyperparameters, init, act, observe, learn, lambda state: state.params, evaluate_act, report,
                        optional_fields=("rollout",), updates_per_learn=s.update_epochs * s.num_minibatches)
