"""The single jitted update: sample -> loss and grads -> optax -> target update -> replay feedback."""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import chex
import jax
import jax.numpy as jnp
import optax

from jaxdqn import losses
from jaxdqn.replay import Replay, ReplayState


class AgentState(NamedTuple):
    """Everything one agent (one seed) carries between updates."""

    params: Any
    target_params: Any
    opt_state: Any
    replay: ReplayState
    key: chex.PRNGKey
    updates: chex.Array


class LearnerParts(NamedTuple):
    """The pieces a learner is built from."""

    network: Any
    optimizer: optax.GradientTransformation
    replay: Replay


def make_optimizer(cfg) -> optax.GradientTransformation:
    """Adam with optional clipping by global norm and/or by value."""
    transforms = []
    if cfg.clip_grad_value > 0:
        transforms.append(optax.clip(cfg.clip_grad_value))
    if cfg.max_grad_norm > 0:
        transforms.append(optax.clip_by_global_norm(cfg.max_grad_norm))
    transforms.append(optax.adam(cfg.learning_rate, eps=cfg.adam_eps))
    return optax.chain(*transforms)


def init_agent(parts: LearnerParts, key, example_obs, example_transition) -> AgentState:
    """A fresh agent: network parameters from `key`, target = online, empty replay."""
    init_key, agent_key = jax.random.split(key)
    params = parts.network.init(init_key, example_obs[None])
    return AgentState(
        params=params,
        target_params=jax.tree.map(jnp.copy, params),  # own buffers, so the state can be donated
        opt_state=parts.optimizer.init(params),
        replay=parts.replay.init(example_transition),
        key=agent_key,
        updates=jnp.zeros((), jnp.int32),
    )


def make_train_step(cfg, parts: LearnerParts) -> Callable:
    """Return the pure `train_step(state, key, progress=0.0) -> (state, metrics)`.

    `progress` is the fraction of training done (prioritized replay anneals beta with it). Wrap it
    with `jax.jit(..., donate_argnums=0)` to run it alone, or call it inside a compiled loop.
    """
    apply = parts.network.apply
    gamma = cfg.gamma

    def loss_fn(params, target_params, batch, weights):
        q_tm1 = apply(params, batch.obs)
        q_t_target = apply(target_params, batch.next_obs)
        discount = gamma * (1.0 - batch.terminated.astype(jnp.float32))
        reward = batch.reward.astype(jnp.float32)
        if cfg.double_q:
            q_t_online = apply(params, batch.next_obs)
            td = jax.vmap(losses.double_q_learning)(q_tm1, batch.action, reward, discount, q_t_target, q_t_online)
        else:
            td = jax.vmap(losses.q_learning)(q_tm1, batch.action, reward, discount, q_t_target)
        loss = losses.weighted_loss(td, weights, cfg.loss, cfg.huber_delta)
        return loss, (td, q_tm1)

    def train_step(state: AgentState, key, progress=0.0):
        sample = parts.replay.sample(state.replay, key, progress)
        (loss, (td, q_tm1)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.params, state.target_params, sample.batch, sample.weights)
        updates, opt_state = parts.optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        count = state.updates + 1
        refresh = count % cfg.target_update_period == 0
        target_params = jax.tree.map(
            lambda online, target: jnp.where(refresh, cfg.target_tau * online + (1.0 - cfg.target_tau) * target, target),
            params, state.target_params)
        replay = parts.replay.update(state.replay, sample.indices, td)
        metrics = {
            "loss": loss,
            "q_mean": jnp.mean(q_tm1),
            "grad_norm": optax.tree.norm(grads),
        }
        new_state = state._replace(params=params, target_params=target_params, opt_state=opt_state,
                                   replay=replay, updates=count)
        return new_state, metrics

    return train_step
