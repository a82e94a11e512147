"""The agent protocol, proven by two agents defined only in tests/toy_agents.py and trained through the real
`jaxdqn` loop, checkpoints, resume and evaluation with no edit to the package (tests/test_sweep.py trains several
hyperparameter values in one program)."""

import json
from pathlib import Path

import numpy as np

from jaxdqn.agents import AGENTS, resolve_agent
from jaxdqn.config.build import make_config
from jaxdqn.run.driver import run_training
from tests.conftest import jaxdqn as toy
SMALL = ["--total-steps", "6000", "--learning-starts", "500", "--log-interval", "1000", "--checkpoint-interval",
         "1000", "--eval-episodes", "2", "--epsilon-decay-steps", "3000"]


def newest_arrays(run: Path) -> dict:
    with np.load(sorted((run / "checkpoints").glob("step_*"))[-1] / "arrays.npz") as data:
        return {name: data[name] for name in data.files}


def test_replay_toy_from_the_cli_by_import_path_trains_resumes_and_evaluates(tmp_path):
    agent = ["--agent", "tests.toy_agents:ReplayToy", "--toy-rate", "0.5"]
    full, half = tmp_path / "full", tmp_path / "half"
    result = toy("train", *agent, *SMALL, "--out", full)
    assert result.returncode == 0, result.stderr[-2000:]
    config = json.loads((full / "config.json").read_text())
    assert config["agent"] == "tests.toy_agents:ReplayToy" and config["settings"]["toy_rate"] == 0.5
    summary = json.loads((full / "summary.json").read_text())
    assert summary["env_steps"] == 6000 and summary["updates"] == (6000 - 500) // 10
    losses = [json.loads(line)["loss"][0] for line in (full / "metrics.jsonl").read_text().splitlines()]
    assert losses[0] is not None and all(np.isfinite(loss) for loss in losses)
    # stopped at 3,000 and resumed to 6,000: bit for bit the run above
    assert toy("train", *agent, *SMALL, "--total-steps", "3000", "--out", half).returncode == 0
    resumed = toy("train", "--resume", half, "--total-steps", "6000", "--exact")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    ours, theirs = newest_arrays(half), newest_arrays(full)
    assert sorted(ours) == sorted(theirs)
    for name in ours:
        np.testing.assert_array_equal(ours[name], theirs[name], err_msg=name)
    evaluated = toy("evaluate", full, "--episodes", "3")
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    assert "all seeds: return" in evaluated.stdout
    bad = toy("train", "--agent", "tests.toy_agents:ReplayToy", "--toy-rate", "-1", "--out", tmp_path / "bad")
    assert bad.returncode == 2 and bad.stderr.strip() == "jaxdqn: error: toy_rate: must be > 0 (got -1.0)"
    assert not (tmp_path / "bad").exists()


def test_rollout_toy_learns_from_each_rollout_without_a_replay(tmp_path):
    cfg = make_config(agent="tests.toy_agents:RolloutToy", env_id="CartPole-v1", num_envs=4, train_frequency=32,
                      total_steps=4096, learning_starts=0, log_interval=1024, checkpoint_interval=2048,
                      eval_episodes=2, toy_rate=0.05)
    summary = run_training(cfg, tmp_path / "run", log=lambda line: None)
    assert summary["env_steps"] == 4096 and summary["updates"] == 4096 // 32
    arrays = newest_arrays(tmp_path / "run")
    rollout_obs = [name for name in arrays if name != "action_log" and arrays[name].shape == (1, 8, 4, 4)]
    assert rollout_obs, "the rollout of one period (8 iterations x 4 envs of CartPole) is the agent's only memory"
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all(r["loss"][0] is not None for r in records)


def test_registry_names_the_built_in_agents_and_refuses_unknown_ones():
    assert set(AGENTS) == {"dqn", "pqn", "tabular"}
    assert resolve_agent("tests.toy_agents:ReplayToy").name == "replay-toy"
    for name, message in [("nope", "agent: must be one of dqn, pqn, tabular or an import path module:attribute "
                                   "(got 'nope')"),
                          ("tests.toy_agents:Nope", "agent: cannot import 'tests.toy_agents:Nope'")]:
        try:
            resolve_agent(name)
        except ValueError as error:
            assert str(error).startswith(message)
        else:
            raise AssertionError(f"{name} was accepted")


