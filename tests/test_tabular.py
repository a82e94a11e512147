"""Tabular Q-learning: the seed's blended update on hand-computed numbers, and the `frozenlake` preset
solving slippery FrozenLake-v1 through the `jaxdqn` command."""

import json

import jax.numpy as jnp
import numpy as np

from jaxdqn.agents.tabular import q_learning_update, sequential_q_learning_updates
from jaxdqn.run.checkpoint import restore_params
from tests.conftest import jaxdqn

TABLE = jnp.array([[0.0, 0.0], [1.0, 2.0], [0.5, 0.0]])


def test_update_blends_old_value_with_bootstrapped_target():
    # target = r + gamma * max Q[s'] = 1 + 0.9 * 2 = 2.8; new = 0.8 * 0 + 0.2 * 2.8 = 0.56
    table, td = q_learning_update(TABLE, 0, 1, 1.0, False, 1, alpha=0.2, gamma=0.9)
    np.testing.assert_allclose(table[0, 1], 0.56, rtol=1e-6)
    np.testing.assert_allclose(td, 2.8, rtol=1e-6)
    np.testing.assert_array_equal(np.delete(np.asarray(table).ravel(), 1), np.delete(np.asarray(TABLE).ravel(), 1))
    # blending onto a non-zero entry: Q[2,0] = 0.5, target 0 + 0.9 * 2 = 1.8 -> 0.5 * 0.5 + 0.5 * 1.8 = 1.15
    table, _ = q_learning_update(TABLE, 2, 0, 0.0, False, 1, alpha=0.5, gamma=0.9)
    np.testing.assert_allclose(table[2, 0], 1.15, rtol=1e-6)


def test_terminal_transition_does_not_bootstrap_and_invalid_one_changes_nothing():
    table, td = q_learning_update(TABLE, 0, 1, 1.0, True, 1, alpha=0.2, gamma=0.9)
    np.testing.assert_allclose(table[0, 1], 0.2, rtol=1e-6)  # 0.8 * 0 + 0.2 * 1
    table, td = q_learning_update(TABLE, 0, 1, 1.0, False, 1, alpha=0.2, gamma=0.9, valid=False)
    np.testing.assert_array_equal(table, TABLE)
    assert float(td) == 0.0


def test_batch_of_environments_updates_one_after_another():
    # two environments hit the same (s, a): the second update starts from the first one's result
    s, a, r = jnp.array([0, 0, 2]), jnp.array([1, 1, 1]), jnp.array([1.0, 1.0, 5.0])
    terminated, s_next = jnp.array([False, False, False]), jnp.array([1, 1, 1])
    valid = jnp.array([True, True, False])
    table, td = sequential_q_learning_updates(TABLE, s, a, r, terminated, s_next, valid, 0.2, 0.9)
    np.testing.assert_allclose(table[0, 1], 0.8 * 0.56 + 0.2 * 2.8, rtol=1e-6)  # 1.008
    np.testing.assert_allclose(td, [2.8, 2.8 - 0.56, 0.0], rtol=1e-6)
    assert float(table[2, 1]) == 0.0  # the invalid (auto-reset) transition is skipped


def test_frozenlake_preset_solves(tmp_path):
    """Slippery FrozenLake, 5 seeds at once: greedy success rate over 1,000 test episodes above 0.7 (the optimum
    is about 0.74) for the median seed, and far above a random policy's (about 0.015) for every seed."""
    out = tmp_path / "frozenlake"
    result = jaxdqn("train", "--preset", "frozenlake", "--num-seeds", "5", "--out", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    config = json.loads((out / "config.json").read_text())
    assert config["agent"] == "tabular" and config["env"]["env_id"] == "FrozenLake-v1"
    record = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    for key in ("env_steps", "updates", "sps", "epsilon", "loss", "q_mean", "episodes", "return_mean_100"):
        assert key in record
    summary = json.loads((out / "summary.json").read_text())
    assert summary["env_steps"] == 100_000 and summary["eval_episodes"] >= 100
    # FrozenLake pays 1 at the goal and 0 otherwise, so the mean greedy return is the success rate
    success = np.asarray(summary["eval_return_mean"])
    assert np.median(success) > 0.7 and success.min() > 0.5, success
    # the saved tables evaluate, from the command and from Python, with the same greedy success rates
    evaluated = jaxdqn("evaluate", str(out))
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    for seed, rate in enumerate(success):
        assert f"seed {seed}: return {rate:.2f} ± " in evaluated.stdout
    cfg, table = restore_params(out)
    assert cfg.agent == "tabular" and table.shape == (5, 16, 4)


def test_wrong_agent_for_the_observation_space_is_one_line_before_anything_runs(tmp_path):
    out = tmp_path / "run"
    result = jaxdqn("train", "--env-id", "FrozenLake-v1", "--out", str(out))
    assert result.returncode == 2
    assert result.stderr.strip() == ("jaxdqn: error: env_id: 'FrozenLake-v1' has a Discrete observation space "
                                     "(16 states); the dqn agent needs array observations: use --agent tabular")
    result = jaxdqn("train", "--preset", "frozenlake", "--env-id", "CartPole-v1", "--out", str(out))
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "agent: tabular needs a Discrete observation space" in result.stderr
    assert not out.exists()
