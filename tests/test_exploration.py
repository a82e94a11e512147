"""Epsilon schedules at their break points, and batched epsilon-greedy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdqn.config.schema import ExplorationConfig
from jaxdqn.core.exploration import epsilon_greedy, make_epsilon_schedule


def _eps(cfg, steps):
    schedule = jax.jit(make_epsilon_schedule(cfg, cfg.epsilon_decay_steps))
    return [float(schedule(jnp.int32(s))) for s in steps]


def test_constant():
    cfg = ExplorationConfig(epsilon_schedule="constant", epsilon_start=0.3)
    assert _eps(cfg, [0, 10, 10**6]) == pytest.approx([0.3, 0.3, 0.3])


def test_linear_break_points():
    cfg = ExplorationConfig(epsilon_schedule="linear", epsilon_start=1.0, epsilon_end=0.05,
                              epsilon_decay_steps=1000)
    assert _eps(cfg, [0, 500, 1000, 5000]) == pytest.approx([1.0, 0.525, 0.05, 0.05])


def test_exponential_is_geometric_between_start_and_end():
    cfg = ExplorationConfig(epsilon_schedule="exponential", epsilon_start=1.0, epsilon_end=0.01,
                              epsilon_decay_steps=100)
    assert _eps(cfg, [0, 50, 100, 1000]) == pytest.approx([1.0, 0.1, 0.01, 0.01], rel=1e-5)


def test_piecewise_linear_break_points():
    # seed 004: 1.0 -> 0.1 at 25k -> 0.01 at 250k
    cfg = ExplorationConfig(epsilon_schedule="piecewise", epsilon_boundaries=(0, 25_000, 250_000),
                              epsilon_values=(1.0, 0.1, 0.01))
    assert _eps(cfg, [0, 12_500, 25_000, 137_500, 250_000, 10**6]) == pytest.approx(
        [1.0, 0.55, 0.1, 0.055, 0.01, 0.01], rel=1e-5)


def test_epsilon_greedy_extremes_and_rate():
    q = jnp.tile(jnp.array([0.0, 5.0, 1.0]), (10_000, 1))
    greedy = epsilon_greedy(jax.random.PRNGKey(0), q, 0.0)
    assert (np.asarray(greedy) == 1).all()
    mixed = np.asarray(epsilon_greedy(jax.random.PRNGKey(1), q, 0.3))
    # greedy with prob 0.7 + 0.3/3 from exploration -> 0.8 picks of action 1
    assert abs((mixed == 1).mean() - 0.8) < 0.02
    assert set(mixed.tolist()) == {0, 1, 2}
