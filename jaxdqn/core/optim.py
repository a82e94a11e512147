"""The optimiser every gradient-based agent uses: Adam or RAdam after optional gradient clipping, with its
numbers held in the optimiser state so that agents with different values share one compiled program."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

OPTIMIZER_HYPERPARAMETERS = ("learning_rate", "adam_eps", "max_grad_norm", "clip_grad_value")
"""The `OptimConfig` numbers an agent keeps among its hyperparameters (a sweep may vary them)."""

SWITCHED_OFF_BY_ZERO = frozenset({"max_grad_norm", "clip_grad_value"})
"""Clips that 0 leaves out of the optimiser's chain: whether they are on is program structure."""

DEVICE_AXIS = "devices"
"""The name of the device mesh's axis in the compiled loop: what a data-parallel learner averages over."""


def make_optimizer(optim, average_over: str | None = None) -> optax.GradientTransformation:
    """Adam (or RAdam, `optim.optimizer`) after optional clipping by value and by global norm, for an `OptimConfig`.

    The four numbers live in the optimiser state (`optax.inject_hyperparams`) and are set per agent by
    `init_optimizer`; which clips are in the chain is structure (a clip is there when its config value is > 0),
    so agents whose values differ share one program as long as they agree on which clips are on.
    `average_over` (a data-parallel learner: a mesh axis name) first averages the gradients over that axis, so
    the clips and Adam see the gradient of the whole batch on every device.
    """
    rectified = optim.optimizer == "radam"

    def chain(learning_rate, adam_eps, max_grad_norm, clip_grad_value):
        transforms = [average_gradients(average_over)] if average_over else []
        if optim.clip_grad_value > 0:
            transforms.append(optax.clip(clip_grad_value))
        if optim.max_grad_norm > 0:
            transforms.append(optax.clip_by_global_norm(max_grad_norm))
        adam = optax.chain(scale_by_adam(eps=adam_eps, rectified=rectified), optax.scale_by_learning_rate(learning_rate))
        return optax.chain(*transforms, adam)  # optax.adam's state, so checkpoints of earlier versions load

    return optax.inject_hyperparams(chain)(learning_rate=1.0, adam_eps=1.0, max_grad_norm=1.0, clip_grad_value=1.0)


def average_gradients(axis_name: str) -> optax.GradientTransformation:
    """The mean of the gradients over the mapped axis `axis_name` (`jax.lax.pmean`), the same on every device."""

    def update(updates, state, params=None):
        del params
        return jax.lax.pmean(updates, axis_name), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def scale_by_adam(b1: float = 0.9, b2: float = 0.999, eps=1e-8, rectified: bool = False,
                  threshold: float = 5.0) -> optax.GradientTransformation:
    """Adam's update direction (Kingma & Ba 2015), or Rectified Adam's (`rectified`, Liu et al. 2020), as optax's
    `scale_by_adam`/`scale_by_radam` compute them and with their state (`optax.ScaleByAdamState`).

    The one difference: the bias corrections are written as products with 1 / (1 - b^t). optax divides by
    1 - b^t, which XLA's algebraic simplifier turns into that product in some programs and not in others (not
    inside `shard_map`), so the same agent's arithmetic would round differently on one device and when sharded
    over several; written as a product, every program computes the same numbers.
    """
    rho_inf = 2.0 / (1.0 - b2) - 1.0

    def init(params):
        zeros = optax.tree.zeros_like(params)
        return optax.ScaleByAdamState(count=jnp.zeros([], jnp.int32), mu=zeros, nu=optax.tree.zeros_like(params))

    def update(updates, state, params=None):
        del params
        mu = optax.tree.update_moment(updates, state.mu, b1, 1)
        nu = optax.tree.update_moment_per_elem_norm(updates, state.nu, b2, 2)
        count = optax.safe_increment(state.count)
        mu_correction, nu_correction = 1 / (1 - b1 ** count), 1 / (1 - b2 ** count)
        direction = jax.tree.map(lambda m, v: m * mu_correction / (jnp.sqrt(v * nu_correction) + eps), mu, nu)
        if rectified:  # the variance rectification, or momentum alone while the variance is not yet tractable
            b2t = b2 ** count
            rho = rho_inf - 2 * count * b2t / (1 - b2t)
            r = jnp.sqrt((rho - 4.0) * (rho - 2.0) * rho_inf / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho))
            direction = jax.tree.map(lambda d, m: jnp.where(rho >= threshold, r * d, m * mu_correction), direction, mu)
        return direction, optax.ScaleByAdamState(count=count, mu=mu, nu=nu)

    return optax.GradientTransformation(init, update)


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
