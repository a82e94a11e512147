"""The optimiser every gradient-based agent uses: Adam or RAdam after optional gradient clipping, with its
numbers held in the optimiser state so that agents with different values share one compiled program."""

from __future__ import annotations

import jax.numpy as jnp
import optax

OPTIMIZER_HYPERPARAMETERS = ("learning_rate", "adam_eps", "max_grad_norm", "clip_grad_value")
"""The `OptimConfig` numbers an agent keeps among its hyperparameters (a sweep may vary them)."""

SWITCHED_OFF_BY_ZERO = frozenset({"max_grad_norm", "clip_grad_value"})
"""Clips that 0 leaves out of the optimiser's chain: whether they are on is program structure."""


def make_optimizer(optim) -> optax.GradientTransformation:
    """Adam (or RAdam, `optim.optimizer`) after optional clipping by value and by global norm, for an `OptimConfig`.

    The four numbers live in the optimiser state (`optax.inject_hyperparams`) and are set per agent by
    `init_optimizer`; which clips are in the chain is structure (a clip is there when its config value is > 0),
    so agents whose values differ share one program as long as they agree on which clips are on.
    """
    update_rule = optax.radam if optim.optimizer == "radam" else optax.adam

    def chain(learning_rate, adam_eps, max_grad_norm, clip_grad_value):
        transforms = []
        if optim.clip_grad_value > 0:
            transforms.append(optax.clip(clip_grad_value))
        if optim.max_grad_norm > 0:
            transforms.append(optax.clip_by_global_norm(max_grad_norm))
        return optax.chain(*transforms, update_rule(learning_rate, eps=adam_eps))

    return optax.inject_hyperparams(chain)(learning_rate=1.0, adam_eps=1.0, max_grad_norm=1.0, clip_grad_value=1.0)


def optimizer_hyperparameters(optim) -> dict:
    """The run-time numbers of an `OptimConfig`, as float32 scalars."""
    return {name: jnp.float32(getattr(optim, name)) for name in OPTIMIZER_HYPERPARAMETERS}


def init_optimizer(optimizer: optax.GradientTransformation, params, hyper: dict):
    """`optimizer`'s state for `params`, with the agent's own numbers (from `hyper`) injected."""
    opt_state = optimizer.init(params)
    return opt_state._replace(hyperparams={name: jnp.array(hyper[name], jnp.float32) for name in opt_state.hyperparams})


def with_learning_rate(opt_state, learning_rate):
    """`opt_state` of a `make_optimizer` optimiser with its step size set to `learning_rate` (an annealed rate)."""
    return opt_state._replace(hyperparams={**opt_state.hyperparams,
                                           "learning_rate": jnp.asarray(learning_rate, jnp.float32)})
