"""Environments EnvPool lacks train through the CLI on the Gymnasium backend (its stepping: tests/test_envs.py)."""

import json

from jaxdqn.envs import backend_name
from tests.conftest import jaxdqn


def test_gymnasium_only_env_trains_through_the_cli_with_a_note(tmp_path):
    assert backend_name("Taxi-v4") == "gymnasium"  # Gymnasium 1.x only; EnvPool has Taxi-v3
    out = tmp_path / "taxi"
    result = jaxdqn("train", "--env-id", "Taxi-v4", "--agent", "tabular", "--total-steps", "2000",
                    "--num-envs", "4", "--learning-starts", "0", "--log-interval", "1000", "--eval-episodes", "2",
                    "--out", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "EnvPool has no 'Taxi-v4'" in result.stdout and "a slower path" in result.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["env_id"] == "Taxi-v4" and summary["env_steps"] == 2000
    record = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["episodes"][0] > 0 and record["loss"][0] > 0  # Taxi pays -1 per step: the table moved
