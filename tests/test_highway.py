"""The `highway` preset (seed 000's Dueling DQN on EnvPool's highway-fast-v0) learns: its greedy policy's
mean return is clearly above a random policy's, both measured here on the same evaluation seeds."""

import json

from jaxdqn.config.schema import replace
from jaxdqn.evaluate import evaluate_policy
from jaxdqn.run.checkpoint import restore_params
from tests.conftest import jaxdqn


def test_highway_preset_beats_random_policy(tmp_path):
    out = tmp_path / "highway"
    result = jaxdqn("train", "--preset", "highway", "--out", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["env_steps"] == 10_000 and summary["eval_episodes"] == 100
    trained = summary["eval_return_mean"][0]

    # the same evaluation (episodes, seeds) with epsilon 1: uniformly random actions
    cfg, params = restore_params(out)
    random_return = float(evaluate_policy(replace(cfg, eval_epsilon=1.0), params, cfg.loop.eval_episodes).returns.mean())
    print(f"highway greedy {trained:.2f} vs random {random_return:.2f}")
    assert trained > 1.5 * random_return and trained > random_return + 5
