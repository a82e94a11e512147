"""DQN and its flags: n-step returns, double Q-learning, dueling heads, prioritized replay, Polyak or hard target
updates.

The update (`make_train_step`) is one pure function: sample -> loss and gradients -> optax -> target
update -> new priorities. `learn` runs `updates_per_period` of them in a `lax.scan`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp
import optax

from jaxdqn.agents.base import AgentFns, check_data_parallel
from jaxdqn.config.schema import ConfigError, DQNSettings, plan, require
from jaxdqn.core import losses
from jaxdqn.core.exploration import EXPLORATION_RUN_TIME_FIELDS, epsilon_at, epsilon_greedy, epsilon_schedule_params
from jaxdqn.core.networks import make_network
from jaxdqn.core.optim import (DEVICE_AXIS, OPTIMIZER_HYPERPARAMETERS, init_optimizer, make_optimizer,
                               optimizer_hyperparameters)
from jaxdqn.core.replay import is_frame_stack, make_replay

NATURE_CNN_MIN_SIZE = 36
"""The smallest image side the Nature CNN's three VALID convolutions (8/4, 4/2, 3/1) leave a pixel of."""
MINATAR_CNN_MIN_SIZE = 3
"""The smallest image side the MinAtar CNN's one VALID 3x3 convolution leaves a pixel of."""


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


def hyperparameters(cfg) -> dict:
    """The run-time values of a DQN config (a sweep may give each agent its own)."""
    s: DQNSettings = cfg.settings
    replay = s.replay
    return {
        **optimizer_hyperparameters(s.optim), "gamma": jnp.float32(s.gamma),
        "target_update_period": jnp.int32(s.target_update_period),
        "target_tau": jnp.float32(s.target_tau), "huber_delta": jnp.float32(s.huber_delta),
        "priority_alpha": jnp.float32(replay.priority_alpha), "priority_beta0": jnp.float32(replay.priority_beta0),
        "priority_eps": jnp.float32(replay.priority_eps),
        "exploration": epsilon_schedule_params(cfg.exploration, plan(cfg).epsilon_decay_steps),
    }


class QFunction(NamedTuple):
    """A DQN variant's network read as Q-values: `outputs(params, obs, noise_key)` is the network's output (Q-values,
    C51's logits or QR-DQN's quantiles; noise_key None for a noisy network's mean weights) and `q_values(outputs)`
    the expected Q-values (batch, num_actions) that act and select."""

    outputs: Any
    q_values: Any
    atoms: Any  # C51's support (num_atoms,), else None


def make_q_function(settings: DQNSettings, network) -> QFunction:
    """The `QFunction` of `settings.distributional` on `network` (built with `num_atoms(settings)` outputs)."""
    noisy = settings.network.noisy

    def outputs(params, obs, noise_key=None):
        return network.apply(params, obs, rngs={"noise": noise_key} if noisy and noise_key is not None else {})

    atoms = None
    if settings.distributional == "c51":
        atoms = jnp.linspace(settings.v_min, settings.v_max, settings.num_atoms, dtype=jnp.float32)
        q_values = lambda logits: jnp.sum(jax.nn.softmax(logits) * atoms, axis=-1)  # noqa: E731
    elif settings.distributional == "qr":
        q_values = lambda quantiles: jnp.mean(quantiles, axis=-1)  # noqa: E731
    else:
        q_values = lambda q: q  # noqa: E731
    return QFunction(outputs, q_values, atoms)


def num_atoms(settings: DQNSettings) -> int:
    """Outputs per action of the network: C51's atoms or QR-DQN's quantiles, 0 for one Q-value."""
    return settings.num_atoms if settings.distributional != "off" else 0


def make_update(settings: DQNSettings, network, average_over: str | None = None):
    """`update(params, target_params, opt_state, batch, weights, hyper, noise_key) -> (params, opt_state, loss,
    priority, q_taken)`: one gradient step on a sampled batch (`average_over`: a data-parallel learner's share of the
    batch, its gradients averaged over that mesh axis)."""
    q_function = make_q_function(settings, network)
    outputs, q_values = q_function.outputs, q_function.q_values
    optimizer = make_optimizer(settings.optim, average_over)

    def loss_fn(params, target_params, batch, weights, hyper, noise_key):
        # a noisy network draws one noise sample for the online network and another for the target network
        online_key, target_key = jax.random.split(noise_key) if noise_key is not None else (None, None)
        out_tm1 = outputs(params, batch.obs, online_key)
        out_t = outputs(target_params, batch.next_obs, target_key)
        # the bootstrap action: the online network's choice (double Q-learning) or the target network's
        q_t_selector = q_values(outputs(params, batch.next_obs, online_key) if settings.double_q else out_t)
        discount = hyper["gamma"] ** batch.steps * (1.0 - batch.terminated.astype(jnp.float32))
        reward = batch.reward.astype(jnp.float32)
        head = (out_tm1, batch.action, reward, discount, out_t, q_t_selector)
        if settings.distributional == "c51":
            per_example = jax.vmap(losses.categorical_q_learning, (0,) * 6 + (None,))(*head, q_function.atoms)
            priority = per_example  # the cross-entropy
        elif settings.distributional == "qr":
            per_example = jax.vmap(losses.quantile_q_learning, (0,) * 6 + (None,))(*head, hyper["huber_delta"])
            priority = per_example
        else:
            priority = jax.vmap(losses.double_q_learning)(*head)  # the TD error
            per_example = (losses.huber(priority, hyper["huber_delta"]) if settings.loss == "huber"
                           else losses.l2(priority))
        return jnp.mean(weights * per_example), (priority, q_values(out_tm1))

    def update(params, target_params, opt_state, batch, weights, hyper, noise_key):
        (loss, (priority, q_tm1)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            params, target_params, batch, weights, hyper, noise_key)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss, priority, q_tm1

    return update


def make_train_step(settings: DQNSettings, network, replay, schedule_env_steps: int,
                    average_over: str | None = None):
    """`train_step(state, key, env_steps) -> (state, metrics)`: one gradient update of one agent (`average_over`:
    of a data-parallel learner's share, its gradients averaged over that mesh axis)."""
    update = make_update(settings, network, average_over)

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
        key, noise_key = jax.random.split(key) if settings.network.noisy else (key, None)
        sample = replay.sample(replay_state, key, beta_at(hyper, env_steps, schedule_env_steps), hyper["gamma"])
        params, opt_state, loss, td, q_tm1 = update(state.params, state.target_params, state.opt_state, sample.batch,
                                                    sample.weights, hyper, noise_key)
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


def check_q_network(network, spec, agent_name: str) -> None:
    """ConfigError unless a Q-network with the `NetworkConfig` `network` fits the environment's observations."""
    if spec.num_states is not None:
        raise ConfigError(f"env_id: {spec.env_id!r} has a Discrete observation space ({spec.num_states} states); "
                          f"the {agent_name} agent needs array observations: use --agent tabular")
    fitting = fitting_torsos(spec.obs_shape)
    needs = {"nature_cnn": f"image observations shaped (frames, height, width) of at least "
                           f"{NATURE_CNN_MIN_SIZE}x{NATURE_CNN_MIN_SIZE}",
             "minatar_cnn": f"image observations shaped (height, width, channels) of at least "
                            f"{MINATAR_CNN_MIN_SIZE}x{MINATAR_CNN_MIN_SIZE}"}
    require(network.torso in fitting, "torso", f"{network.torso} needs {needs.get(network.torso)}, but "
            f"{spec.env_id} has shape {tuple(spec.obs_shape)}; allowed here: {', '.join(fitting)}", network.torso)


def fitting_torsos(obs_shape) -> list[str]:
    """The torsos that fit observations shaped `obs_shape` (one example's)."""
    fitting = ["mlp"]
    if len(obs_shape) == 3 and min(obs_shape[1:]) >= NATURE_CNN_MIN_SIZE:
        fitting.append("nature_cnn")
    if len(obs_shape) == 3 and min(obs_shape[:2]) >= MINATAR_CNN_MIN_SIZE:
        fitting.append("minatar_cnn")
    return fitting


def max_epsilon(exploration) -> float:
    """The largest epsilon an `ExplorationConfig`'s schedule reaches."""
    if exploration.epsilon_schedule == "piecewise":
        return max(exploration.epsilon_values)
    if exploration.epsilon_schedule == "constant":
        return exploration.epsilon_start
    return max(exploration.epsilon_start, exploration.epsilon_end)


def beta_at(hyper: dict, env_steps, schedule_env_steps: int):
    """Prioritized replay's importance exponent, linear from priority_beta0 to 1 over the run."""
    progress = jnp.minimum(jnp.asarray(env_steps, jnp.float32) / schedule_env_steps, 1.0)
    return hyper["priority_beta0"] + (1.0 - hyper["priority_beta0"]) * progress


class DQN:
    """The `dqn` registry entry."""

    name = "dqn"
    settings_type = DQNSettings
    run_time_fields = frozenset({*OPTIMIZER_HYPERPARAMETERS, *EXPLORATION_RUN_TIME_FIELDS, "gamma",
                                 "target_update_period", "target_tau", "huber_delta", "priority_alpha", "priority_beta0",
                                 "priority_eps"})

    def check(self, cfg, spec) -> None:
        """Observation kind, replay sizes and torso against the environment."""
        s: DQNSettings = cfg.settings
        num_envs, loop = cfg.env.num_envs, cfg.loop
        check_q_network(s.network, spec, self.name)
        if s.network.noisy:
            require(max_epsilon(cfg.exploration) == 0, "epsilon_start",
                    "noisy networks explore by their noise, so the epsilon schedule must be 0 throughout "
                    "(--epsilon-schedule constant --epsilon-start 0)", cfg.exploration.epsilon_start)
        require(loop.train_frequency % num_envs == 0 or num_envs % loop.train_frequency == 0, "train_frequency",
                f"must divide num_envs ({num_envs}) or be a multiple of it", loop.train_frequency)
        require(s.replay.batch_size <= s.replay.buffer_size, "batch_size",
                f"must be <= buffer_size ({s.replay.buffer_size})", s.replay.batch_size)
        require(s.replay.buffer_size >= (s.n_step + 1) * num_envs, "buffer_size",
                f"must hold at least n_step + 1 ({s.n_step + 1}) steps of every environment (num_envs={num_envs}): "
                "each environment has its own ring", s.replay.buffer_size)
        check_data_parallel(cfg, num_envs=num_envs, batch_size=s.replay.batch_size,
                            buffer_size=s.replay.buffer_size)
        require(loop.learning_starts >= s.replay.batch_size, "learning_starts",
                f"must be >= batch_size ({s.replay.batch_size}) so the first batch has data to sample",
                loop.learning_starts)
        if is_frame_stack(spec.obs_shape, spec.obs_dtype):
            require(s.replay.buffer_size % num_envs == 0 and s.replay.buffer_size // num_envs >= 8, "buffer_size",
                    f"must be a multiple of num_envs ({num_envs}) with at least 8 per environment for "
                    f"{spec.env_id} (its replay keeps one frame ring per environment)", s.replay.buffer_size)

    def build(self, cfg, spec) -> AgentFns:
        """DQN's pure functions for `cfg` on an environment with `spec`."""
        s: DQNSettings = cfg.settings
        the_plan = plan(cfg)
        network = make_network(s.network, spec.num_actions, num_atoms(s))
        q_function = make_q_function(s, network)
        # a data-parallel learner's share: its environments, their replay and its part of each batch
        shards = cfg.loop.data_parallel
        average_over = DEVICE_AXIS if shards > 1 else None
        batch_size = s.replay.batch_size // shards
        replay = make_replay(s.replay.buffer_size // shards, batch_size, cfg.env.num_envs // shards, spec.obs_shape,
                             spec.obs_dtype, s.replay.prioritized, s.n_step, max_over=average_over)
        train_step = make_train_step(s, network, replay, the_plan.schedule_env_steps, average_over)
        optimizer = make_optimizer(s.optim, average_over)
        schedule = cfg.exploration.epsilon_schedule
        example_obs = jnp.zeros(spec.obs_shape, spec.obs_dtype)

        def init(key, hyper) -> DQNState:
            hyper = jax.tree.map(jnp.array, hyper)  # own buffers (copies), so the state can be donated
            params = network.init(key, example_obs[None])
            pending = (PendingPriorities(jnp.zeros(batch_size, jnp.int32), jnp.zeros(batch_size, jnp.float32),
                                         jnp.asarray(False))
                       if s.replay.prioritized else ())
            return DQNState(params, jax.tree.map(jnp.copy, params), init_optimizer(optimizer, params, hyper),
                            replay.init(example_obs), jnp.zeros((), jnp.int32), hyper, pending)

        def act(state: DQNState, obs, key, env_steps):
            epsilon = epsilon_at(schedule, state.hyper["exploration"], env_steps)
            key, noise_key = jax.random.split(key) if s.network.noisy else (key, None)  # fresh noise at every step
            return epsilon_greedy(key, q_function.q_values(q_function.outputs(state.params, obs, noise_key)), epsilon)

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

        def evaluate_act(params, obs, key, epsilon):  # a noisy network plays its mean weights
            return epsilon_greedy(key, q_function.q_values(q_function.outputs(params, obs)), epsilon)

        def report(state: DQNState, env_steps):
            scalars = {"epsilon": epsilon_at(schedule, state.hyper["exploration"], env_steps)}
            if s.replay.prioritized:
                scalars["beta"] = beta_at(state.hyper, env_steps, the_plan.schedule_env_steps)
            return scalars

        return AgentFns(hyperparameters(cfg), init, act, observe, learn, lambda state: state.params, evaluate_act,
                        report, optional_fields=("replay", "pending"))
