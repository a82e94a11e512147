"""Weights & Biases tracking (`--track True`), for real in W&B's offline mode, read back with W&B's own reader."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from jaxdqn.config.build import make_config
from jaxdqn.config.presets import PRESETS
from jaxdqn.config.schema import ConfigError, from_dict, to_dict
from jaxdqn.config.validate import validate
from jaxdqn.run.recorder import WANDB_ID_FILE, agents_record, record_scalars
from tests.conftest import WITH_TESTS, jaxdqn

WANDB = str(Path(sys.executable).with_name("wandb")) if Path(sys.executable).with_name("wandb").exists() \
    else shutil.which("wandb")
SHORT_RUN = ("--preset", "cartpole", "--learning-starts", "1000", "--log-interval", "1000", "--eval-episodes", "2")
NO_WANDB_ERROR = "jaxdqn: error: track: needs the wandb package; pip install 'jaxdqn[wandb]'"


def offline_env(tmp_path: Path) -> dict:
    """W&B offline and silent, with every folder it would use outside the run directory inside `tmp_path`
    (WANDB_DIR too: the run directory passed to wandb.init must win over it)."""
    return {"WANDB_MODE": "offline", "WANDB_SILENT": "true", **{
        name: str(tmp_path / "wandb-home" / name.lower())
        for name in ("WANDB_DIR", "WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR")}}


def offline_runs(out: Path) -> list[Path]:
    """The offline W&B run folders of the run directory `out`, oldest first."""
    return sorted((out / "wandb").glob("offline-run-*"))


def wandb_records(run_folder: Path, env: dict) -> list[dict]:
    """The records of an offline run's .wandb transaction log, as W&B's `wandb leet inspect --json` prints them."""
    assert WANDB, "the wandb command is not installed (pip install -e '.[wandb]')"
    result = subprocess.run([WANDB, "leet", "inspect", "--json", str(run_folder)], check=False, capture_output=True,
                            text=True, timeout=120, env={**os.environ, **env})
    assert result.returncode == 0, result.stderr[-2000:]
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def history(records: list[dict]) -> dict[int, dict]:
    """env step -> the scalars logged there (without W&B's own `_step`, `_runtime`, `_timestamp`)."""
    rows = {}
    for record in records:
        if record["type"] == "history":
            item = record["history"]["item"]
            rows[item["_step"]] = {k: v for k, v in item.items() if not k.startswith("_")}
    return rows


def run_record(records: list[dict]) -> dict:
    """The run record: id, project, entity, group, name and the config."""
    return next(record["run"] for record in records if record["type"] == "run")


def test_track_logs_the_tensorboard_scalars_and_the_config(tmp_path):
    out, env = tmp_path / "run", offline_env(tmp_path)
    result = jaxdqn("train", *SHORT_RUN, "--total-steps", "3000", "--track", "True", "--wandb-project", "jaxdqn-test",
                    "--wandb-entity", "jaxdqn-tests", "--wandb-group", "cartpole-short", "--out", out, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    run_id = (out / WANDB_ID_FILE).read_text().strip()
    runs = offline_runs(out)
    assert [run.name.rsplit("-", 1)[1] for run in runs] == [run_id]
    assert not (tmp_path / "wandb-home" / "wandb_dir").exists()  # the run directory, not WANDB_DIR
    records = wandb_records(runs[0], env)
    run = run_record(records)
    assert (run["run_id"], run["project"], run["entity"], run["run_group"], run["display_name"]) == \
        (run_id, "jaxdqn-test", "jaxdqn-tests", "cartpole-short", "run")
    config = run["config"]["update"]
    assert config["settings"]["optim"]["learning_rate"] == 0.00025 and config["loop"]["total_steps"] == 3000
    assert config["tracking"]["track"] is True and config["env"]["env_id"] == "CartPole-v1"
    # the scalars TensorBoard gets (record_scalars of each metrics.jsonl record), at the same env steps
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    logged = history(records)
    assert set(logged) == {1000, 2000, 3000}
    for record in metrics:
        assert logged[record["env_steps"]] == pytest.approx(record_scalars(record, 1), rel=1e-12)
        assert {"epsilon", "return_mean_100", "sps"} <= set(logged[record["env_steps"]])
    assert "loss" not in logged[1000] and {"loss", "q_mean"} <= set(logged[2000]) & set(logged[3000])


def test_resume_continues_the_same_wandb_run(tmp_path):
    out, env = tmp_path / "run", offline_env(tmp_path)
    first = jaxdqn("train", *SHORT_RUN, "--total-steps", "2000", "--checkpoint-interval", "1000", "--track", "True",
                   "--out", out, env=env)
    assert first.returncode == 0, first.stderr[-2000:]
    resumed = jaxdqn("train", "--resume", out, "--total-steps", "3000", env=env)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    run_id = (out / WANDB_ID_FILE).read_text().strip()
    runs = offline_runs(out)
    assert [run.name.rsplit("-", 1)[1] for run in runs] == [run_id, run_id]  # one W&B run, synced as one
    before, after = (wandb_records(run, env) for run in runs)
    assert run_record(before)["run_id"] == run_record(after)["run_id"] == run_id
    assert run_record(after)["config"]["update"]["loop"]["total_steps"] == 3000
    assert set(history(before)) == {1000, 2000} and set(history(after)) == {3000}


def test_track_without_wandb_is_one_line_before_anything_is_written(tmp_path, monkeypatch):
    out = tmp_path / "run"
    hide_wandb = "import sys; sys.modules['wandb'] = None; from jaxdqn.cli import main; sys.exit(main(sys.argv[1:]))"
    result = subprocess.run([sys.executable, "-c", hide_wandb, "train", "--track", "True", "--out", str(out)],
                            check=False, capture_output=True, text=True, timeout=300, env={**os.environ, **WITH_TESTS})
    assert (result.returncode, result.stderr.strip()) == (2, NO_WANDB_ERROR)
    assert not out.exists()
    monkeypatch.setitem(sys.modules, "wandb", None)
    with pytest.raises(ConfigError, match=r"^track: needs the wandb package"):
        validate(make_config("cartpole", track=True))
    validate(make_config("cartpole"))  # untracked runs never need it


def test_tracking_fields_check_themselves_and_old_configs_get_the_defaults():
    with pytest.raises(ConfigError, match=r"^wandb_project: must be at most 128 characters, none of "):
        make_config(wandb_project="team/project")
    with pytest.raises(ConfigError, match=r"^wandb_project: must be at most 128 characters"):
        make_config(wandb_project="p" * 129)
    with pytest.raises(ConfigError, match=r"^wandb_group: must be a non-empty string \(got ''\)$"):
        make_config(wandb_group="")
    cfg = make_config("cartpole", track=True, wandb_entity="me", wandb_group="g")
    assert from_dict(json.loads(json.dumps(to_dict(cfg)))) == cfg
    data = to_dict(PRESETS["cartpole"])
    del data["tracking"]  # a config.json written before the section existed
    assert from_dict(data) == PRESETS["cartpole"] and not from_dict(data).tracking.track


def test_a_sweep_logs_one_wandb_run_per_configuration(tmp_path):
    """Two learning rates x 2 seeds train as one program (one group), and W&B gets one run per configuration: its
    own config, its own seeds' scalars (those of its TensorBoard run), grouped by the sweep's folder."""
    out, env = tmp_path / "lr-sweep", offline_env(tmp_path)
    result = jaxdqn("sweep", *SHORT_RUN, "--total-steps", "2000", "--num-seeds", "2", "--learning-rate",
                    "1e-3,3e-4", "--track", "True", "--out", out, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    group = out / "group-0"
    ids = {path.name: path.read_text().strip() for path in (group / "wandb-run-ids").iterdir()}
    runs = {folder.name.rsplit("-", 1)[1]: wandb_records(folder, env) for folder in offline_runs(group)}
    assert sorted(runs) == sorted(ids.values()) and len(ids) == 2
    metrics = [json.loads(line) for line in (group / "metrics.jsonl").read_text().splitlines()]
    for index, (label, learning_rate) in enumerate(sorted(zip(sorted(ids), (1e-3, 3e-4)))):
        records = runs[ids[label]]
        run = run_record(records)
        assert (run["display_name"], run["run_group"]) == (f"group-0/{label}", "lr-sweep")
        assert run["config"]["update"]["settings"]["optim"]["learning_rate"] == learning_rate
        seeds = [2 * index, 2 * index + 1]
        logged = history(records)
        for record in metrics:
            assert logged[record["env_steps"]] == pytest.approx(
                record_scalars(agents_record(record, seeds), 2), rel=1e-12)
