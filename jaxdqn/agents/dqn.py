"""DQN and its flags: double Q-learning, dueling heads, prioritized replay, Polyak or hard target updates.

The update (`make_train_step`) is one pure function: sample -> loss and gradients -> optax -> target
update -> new priorities. `learn` runs `updates_per_period` of them in a `lax.scan`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp
import optax

from jaxdqn.agents.base import AgentFns
from jaxdqn.config.schema import ConfigError, DQNSettings, plan
from jaxdqn.core import losses
from jaxdqn.core.exploration import epsilon_at, epsilon_greedy, epsilon_schedule_params
from jaxdqn.core.networks import make_network
from jaxdqn.core.replay import is_frame_stack, make_replay

NATURE_CNN_MIN_SIZE = 36
"""The smallest image side the Nature CNN's three VALID convolutions (8/4, 4/2, 3/1) leave a pixel of."""


class PendingPriorities(NamedTuple):
    """The new priorities of the last update's batch, written into the sum tree by the next update before it
    samples (see `make_train_step`); `valid` is False before the first update."""

    indices: chex.Array
    td_errors: chex.Array
    valid: chex.Array


class DQNState(NamedTuple):
    """Everything one DQN agent carries between steps."""

    params: Any
    target_params: Any
    opt_state: Any
    replay: Any
    updates: chex.Array
    hyper: dict
    pending: Any = ()
    """Prioritized replay: `PendingPriorities`; uniform replay: ()."""


def make_optimizer(optim) -> optax.GradientTransformation:
    """Adam after optional clipping by value and by global norm, for an `OptimConfig`.

    The four numbers live in the optimiser state (`optax.inject_hyperparams`) and are set per agent at `init`;
    which clips are in the chain is structure (a clip is there when its config value is > 0), so agents whose
    values differ share one program as long as they agree on which clips are on.
    """

    def chain(learning_rate, adam_eps, max_grad_norm, clip_grad_value):
        transforms = []
        if optim.clip_grad_value > 0:
            transforms.append(optax.clip(clip_grad_value))
        if optim.max_grad_norm > 0:
            transforms.append(optax.clip_by_global_norm(max_grad_norm))
        return optax.chain(*transforms, optax.adam(learning_rate, eps=adam_eps))

    return optax.inject_hyperparams(chain)(learning_rate=1.0, adam_eps=1.0, max_grad_norm=1.0, clip_grad_value=1.0)


def hyperparameters(cfg) -> dict:
    """The run-time values of a DQN config (a sweep may give each agent its own)."""
    s: DQNSettings = cfg.settings
    optim, replay = s.optim, s.replay
    return {
        "learning_rate": jnp.float32(optim.learning_rate), "adam_eps": jnp.float32(optim.adam_eps),
        "max_grad_norm": jnp.float32(optim.max_grad_norm), "clip_grad_value": jnp.float32(optim.clip_grad_value),
        "gamma": jnp.float32(s.gamma), "target_update_period": jnp.int32(s.target_update_period),
        "target_tau": jnp.float32(s.target_tau), "huber_delta": jnp.float32(s.huber_delta),
        "priority_alpha": jnp.float32(replay.priority_alpha), "priority_beta0": jnp.float32(replay.priority_beta0),
        "priority_eps": jnp.float32(replay.priority_eps),
        "exploration": epsilon_schedule_params(cfg.exploration, plan(cfg).epsilon_decay_steps),
    }


def make_train_step(settings: DQNSettings, network, replay, schedule_env_steps: int):
    """`train_step(state, key, env_steps) -> (state, metrics)`: one gradient update of one agent."""
    apply = network.apply
    optimizer = make_optimizer(settings.optim)

    def loss_fn(params, target_params, batch, weights, hyper):
        q_tm1 = apply(params, batch.obs)
        q_t_target = apply(target_params, batch.next_obs)
        discount = hyper["gamma"] * (1.0 - batch.terminated.astype(jnp.float32))
        reward = batch.reward.astype(jnp.float32)
        if settings.double_q:
            q_t_online = apply(params, batch.next_obs)
            td = jax.vmap(losses.double_q_learning)(q_tm1, batch.action, reward, discount, q_t_target, q_t_online)
        else:
            td = jax.vmap(losses.q_learning)(q_tm1, batch.action, reward, discount, q_t_target)
        loss = losses.weighted_loss(td, weights, settings.loss, hyper["huber_delta"])
        return loss, (td, q_tm1)

    def train_step(state: DQNState, key, env_steps):
        hyper = state.hyper
        replay_state = state.replay
        if settings.replay.prioritized:
            # The previous update's priorities are written here, before sampling, rather than at the end of
            # that update: there the write came while the old leaves were still read by the loss's backward
            # pass, and XLA copied the whole leaf level (4 MB at 10^6 slots) twice per update to allow it.
            # Every sample still sees every earlier update's priorities; steps added in between get the
            # tree's max priority as it stood before the last batch.
            pending = state.pending
            replay_state = replay.update(replay_state, pending.indices, pending.td_errors, hyper["priority_alpha"],
                                         hyper["priority_eps"], valid=pending.valid)
        sample = replay.sample(replay_state, key, beta_at(hyper, env_steps, schedule_env_steps))
        (loss, (td, q_tm1)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.params, state.target_params, sample.batch, sample.weights, hyper)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        count = state.updates + 1
        refresh = count % hyper["target_update_period"] == 0
        tau = hyper["target_tau"]
        target_params = jax.tree.map(lambda online, target: jnp.where(refresh, tau * online + (1.0 - tau) * target,
                                                                      target), params, state.target_params)
        pending = PendingPriorities(sample.indices, td, jnp.asarray(True)) if settings.replay.prioritized else ()
        metrics = {"loss": loss, "q_mean": jnp.mean(q_tm1)}
        return state._replace(params=params, target_params=target_params, opt_state=opt_state, replay=replay_state,
                              updates=count, pending=pending), metrics

    return train_step


def beta_at(hyper: dict, env_steps, schedule_env_steps: int):
    """Prioritized replay's importance exponent, linear from priority_beta0 to 1 over the run."""
    progress = jnp.minimum(jnp.asarray(env_steps, jnp.float32) / schedule_env_steps, 1.0)
    return hyper["priority_beta0"] + (1.0 - hyper["priority_beta0"]) * progress


class DQN:
    """The `dqn` registry entry."""

    name = "dqn"
    settings_type = DQNSettings

    def check(self, cfg, spec) -> None:
        """Observation kind, replay sizes and torso against the environment."""
        s: DQNSettings = cfg.settings
        num_envs, loop = cfg.env.num_envs, cfg.loop
        if spec.num_states is not None:
            raise ConfigError(f"env_id: {spec.env_id!r} has a Discrete observation space ({spec.num_states} states); "
                              "the dqn agent needs array observations: use --agent tabular")

        def require(condition, field, allowed, value):
            if not condition:
                raise ConfigError(f"{field}: {allowed} (got {value!r})")

        require(loop.train_frequency % num_envs == 0 or num_envs % loop.train_frequency == 0, "train_frequency",
                f"must divide num_envs ({num_envs}) or be a multiple of it", loop.train_frequency)
        require(s.replay.batch_size <= s.replay.buffer_size, "batch_size",
                f"must be <= buffer_size ({s.replay.buffer_size})", s.replay.batch_size)
        require(s.replay.buffer_size >= 2 * num_envs, "buffer_size",
                f"must hold at least two steps of every environment (num_envs={num_envs}): each environment has "
                "its own ring", s.replay.buffer_size)
        require(loop.learning_starts >= s.replay.batch_size, "learning_starts",
                f"must be >= batch_size ({s.replay.batch_size}) so the first batch has data to sample",
                loop.learning_starts)
        if s.network.torso == "nature_cnn":
            shape = spec.obs_shape
            require(len(shape) == 3 and min(shape[1:]) >= NATURE_CNN_MIN_SIZE, "torso",
                    f"nature_cnn needs image observations shaped (frames, height, width) of at least "
                    f"{NATURE_CNN_MIN_SIZE}x{NATURE_CNN_MIN_SIZE}, but {spec.env_id} has shape {tuple(shape)}; "
                    "allowed here: mlp", s.network.torso)
        if is_frame_stack(spec.obs_shape, spec.obs_dtype):
            require(s.replay.buffer_size % num_envs == 0 and s.replay.buffer_size // num_envs >= 8, "buffer_size",
                    f"must be a multiple of num_envs ({num_envs}) with at least 8 per environment for "
                    f"{spec.env_id} (its replay keeps one frame ring per environment)", s.replay.buffer_size)

    def build(self, cfg, spec) -> AgentFns:
        """DQN's pure functions for `cfg` on an environment with `spec`."""
        s: DQNSettings = cfg.settings
        the_plan = plan(cfg)
        network = make_network(s.network, spec.num_actions)
        replay = make_replay(s.replay.buffer_size, s.replay.batch_size, cfg.env.num_envs, spec.obs_shape,
                             spec.obs_dtype, s.replay.prioritized)
        train_step = make_train_step(s, network, replay, the_plan.schedule_env_steps)
        optimizer = make_optimizer(s.optim)
        schedule = cfg.exploration.epsilon_schedule
        example_obs = jnp.zeros(spec.obs_shape, spec.obs_dtype)

        def init(key, hyper) -> DQNState:
            hyper = jax.tree.map(jnp.array, hyper)  # own buffers (copies), so the state can be donated
            params = network.init(key, example_obs[None])
            opt_state = optimizer.init(params)
            injected = {name: jnp.array(hyper[name], jnp.float32) for name in opt_state.hyperparams}
            batch = s.replay.batch_size
            pending = (PendingPriorities(jnp.zeros(batch, jnp.int32), jnp.zeros(batch, jnp.float32), jnp.asarray(False))
                       if s.replay.prioritized else ())
            return DQNState(params, jax.tree.map(jnp.copy, params), opt_state._replace(hyperparams=injected),
                            replay.init(example_obs), jnp.zeros((), jnp.int32), hyper, pending)

        def act(state: DQNState, obs, key, env_steps):
            epsilon = epsilon_at(schedule, state.hyper["exploration"], env_steps)
            return epsilon_greedy(key, network.apply(state.params, obs), epsilon)

        def observe(state: DQNState, step, env_steps, learning):
            del env_steps, learning  # the replay fills from the first step
            return state._replace(replay=replay.add(state.replay, step.obs, step.action, step.reward,
                                                    step.terminated, step.real))

        def learn(state: DQNState, key, env_steps):
            if the_plan.updates_per_period == 1:  # no loop around a single update (a loop costs a sync on a GPU)
                return train_step(state, key, env_steps)
            state, metrics = jax.lax.scan(lambda st, k: train_step(st, k, env_steps), state,
                                          jax.random.split(key, the_plan.updates_per_period))
            return state, jax.tree.map(jnp.mean, metrics)

        def evaluate_act(params, obs, key, epsilon):
            return epsilon_greedy(key, network.apply(params, obs), epsilon)

        def report(state: DQNState, env_steps):
            scalars = {"epsilon": epsilon_at(schedule, state.hyper["exploration"], env_steps)}
            if s.replay.prioritized:
                scalars["beta"] = beta_at(state.hyper, env_steps, the_plan.schedule_env_steps)
            return scalars

        return AgentFns(hyperparameters(cfg), init, act, observe, learn, lambda state: state.params, evaluate_act,
                        report, optional_fields=("replay", "pending"))
