"""The `highway` preset (seed 000's Dueling DQN on EnvPool's highway-fast-v0) learns: its greedy policy's
mean return is clearly above a random policy's, both measured here on the same evaluation seeds."""

import dataclasses
import json

import jax
import jax.numpy as jnp

from jaxdqn.config import get_preset
from jaxdqn.networks import make_network
from jaxdqn.evaluate import evaluate_policy
from jaxdqn.train import EVAL_SEED_OFFSET
from tests.conftest import jaxdqn


def test_highway_preset_beats_random_policy(tmp_path):
    out = tmp_path / "highway"
    result = jaxdqn("train", "--preset", "highway", "--out", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["env_steps"] == 10_000 and summary["eval_episodes"] == 100
    trained = summary["eval_return_mean"][0]

    # the same evaluation (episodes, seeds) with epsilon 1: uniformly random actions
    cfg = dataclasses.replace(get_preset("highway"), eval_epsilon=1.0)
    params = jax.vmap(lambda k: make_network(cfg, 5).init(k, jnp.zeros((1, 5, 5))))(jax.random.PRNGKey(0)[None])
    random_return = float(evaluate_policy(cfg, params, cfg.eval_episodes, cfg.seed + EVAL_SEED_OFFSET).returns.mean())
    print(f"highway greedy {trained:.2f} vs random {random_return:.2f}")
    assert trained > 1.5 * random_return and trained > random_return + 5
