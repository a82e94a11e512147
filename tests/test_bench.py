"""The benchmark harness on tiny sizes through the real `jaxdqn bench` command, and its report."""

import fcntl
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import JAXDQN, jaxdqn

STORED_RESULTS = Path(__file__).resolve().parent.parent / "benchmarks" / "results"


@pytest.fixture(scope="module")
def tiny_result(tmp_path_factory, worker_id):
    """`jaxdqn bench --tiny` without --out: it writes under $XDG_DATA_HOME/jaxdqn/bench. It runs once per test
    session: the worker processes of `pytest -n` share it (the first to need it runs it, the others wait for it)."""
    root = tmp_path_factory.getbasetemp()
    if worker_id != "master":
        root = root.parent  # this session's folder, above each worker's own
    with open(root / "tiny-bench.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data_home = root / "tiny-bench-data"
        files = list(data_home.glob("jaxdqn/bench/bench-tiny-*.json"))
        if not files:
            result = jaxdqn("bench", "--tiny", env={"XDG_DATA_HOME": str(data_home)})
            assert result.returncode == 0, result.stderr[-3000:]
            files = list(data_home.glob("jaxdqn/bench/bench-tiny-*.json"))
    assert len(files) == 1
    return files[0]


@pytest.mark.long
def test_tiny_bench_writes_a_complete_result(tiny_result):
    record = json.loads(tiny_result.read_text())
    assert record["command"] == "jaxdqn bench --tiny"
    machine = record["machine"]
    for key in ("backend", "devices", "device_count", "cpu_model", "cpu_cores", "git_commit"):
        assert machine[key] not in (None, "", [])
    assert set(machine["versions"]) >= {"jax", "jaxlib", "flax", "optax", "envpool"}
    assert [r["env_id"] for r in record["env_steps"]] == ["CartPole-v1", "gymnax/CartPole-v1"]
    for env in record["env_steps"]:
        assert env["python_steps_per_second"]["median"] > 0 and env["xla_scan_steps_per_second"]["median"] > 0
        assert not env["host_step"] and "xla_scan_note" not in env  # EnvPool's XLA op exists on CPU
    kinds = {(r["torso"], r["replay"]) for r in record["train_step"] if "variant" not in r}
    assert kinds == {("mlp", "uniform"), ("mlp", "prioritized"), ("nature_cnn", "uniform"), ("nature_cnn", "prioritized")}
    variants = {r["variant"]: r["replay"] for r in record["train_step"] if "variant" in r}
    assert variants == {"n-step 3": "uniform", "pqn": "rollout"}
    for row in record["train_step"]:
        spread = row["updates_per_second"]
        assert spread["min"] <= spread["median"] <= spread["max"] and spread["repeats"] == 2
        assert row["compile_seconds"] > 0
    assert [r["num_seeds"] for r in record["end_to_end"]] == [1]
    assert all(r["env_steps"] == 12_000 and r["sps"] > 0 for r in record["end_to_end"])
    assert record["host_loop"][0]["env_steps"] == 6_000 and record["host_loop"][0]["updates"] > 0
    assert record["memory"]["host_peak_rss_mb"] > 0


def test_report_writes_table_and_charts(tiny_result, tmp_path):
    out = tmp_path / "REPORT.md"
    result = jaxdqn("bench", "report", "--results", str(tiny_result.parent), "--out", str(out), "--include-tiny")
    assert result.returncode == 0, result.stderr
    table = out.read_text()
    assert "| measure | unit | cpu: " in table
    assert "train_step nature_cnn b32" in table and "compiled / host loop SPS" in table
    pngs = sorted(p.name for p in tmp_path.glob("bench-*.png"))
    assert pngs == ["bench-end_to_end.png", "bench-env_steps.png", "bench-train_step.png"]
    assert all((tmp_path / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)


def test_report_says_what_a_machine_does_not_support_and_why(tiny_result, tmp_path):
    """A TPU has no EnvPool XLA op: its pools step through a host callback, and `--env-overlap` is refused.
    The result rows say so (as `bench_env_steps` and `bench_end_to_end` write them there), and so does the
    report, in the cell, instead of leaving it out."""
    record = json.loads(tiny_result.read_text())
    record["env_steps"][0].update(host_step=True, xla_scan_note="host callback: EnvPool has no XLA op on tpu")
    record["end_to_end"].append({"preset": "cartpole", "args": ["--num-envs", "10", "--total-steps", "12000",
                                                                "--env-overlap"], "num_seeds": 1,
                                 "unsupported": "env_overlap: needs EnvPool's XLA step (EnvPool environments on "
                                                "CPU or CUDA), which CartPole-v1 on tpu does not have; allowed "
                                                "here: False"})
    (tmp_path / "bench-tpu.json").write_text(json.dumps(record))
    result = jaxdqn("bench", "report", "--results", str(tmp_path), "--out", str(tmp_path / "r.md"), "--include-tiny")
    assert result.returncode == 0, result.stderr
    table = (tmp_path / "r.md").read_text()
    assert "(host callback: EnvPool has no XLA op on tpu) |" in table
    assert "| end-to-end cartpole --num-envs 10 --total-steps 12000 --env-overlap x1 seeds SPS | env steps/s | " \
           "not supported: env_overlap: needs EnvPool's XLA step" in table


def test_report_rejects_a_result_with_a_missing_field(tiny_result, tmp_path):
    record = json.loads(tiny_result.read_text())
    del record["machine"]["cpu_model"]
    (tmp_path / "bench-broken.json").write_text(json.dumps(record))
    result = jaxdqn("bench", "report", "--results", str(tmp_path), "--out", str(tmp_path / "r.md"))
    assert result.returncode == 2
    assert "bench-broken.json: machine is missing cpu_model" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r.md").exists()

    del record["train_step"]
    (tmp_path / "bench-broken.json").write_text(json.dumps(record))
    result = jaxdqn("bench", "report", "--results", str(tmp_path), "--out", str(tmp_path / "r.md"))
    assert result.returncode == 2 and "missing field(s) train_step" in result.stderr


def test_bench_help_names_the_default_folder(tmp_path):
    for args in (["bench", "--help"], ["bench", "report", "--help"]):
        result = jaxdqn(*args, env={"XDG_DATA_HOME": str(tmp_path), "COLUMNS": "500"})  # no wrapping
        assert result.returncode == 0
        text = " ".join(result.stdout.split())
        assert "$XDG_DATA_HOME/jaxdqn/bench, or ~/.local/share/jaxdqn/bench" in text
        assert f"here {tmp_path / 'jaxdqn' / 'bench'}" in text


def test_report_of_the_stored_results_in_the_default_folder(tmp_path):
    """The stored full results, copied to the default folder, give a report there (not in the working directory)."""
    folder = tmp_path / "data" / "jaxdqn" / "bench"
    folder.mkdir(parents=True)
    stored = sorted(STORED_RESULTS.glob("bench-*.json"))
    assert len(stored) >= 2
    for path in stored:
        shutil.copy(path, folder)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    result = subprocess.run([JAXDQN, "bench", "report"], capture_output=True, text=True, timeout=300, cwd=cwd,
                            env={**os.environ, "XDG_DATA_HOME": str(tmp_path / "data")})
    assert result.returncode == 0, result.stderr
    table = (folder / "REPORT.md").read_text()
    assert "| measure | unit | cpu: " in table and "| gpu: " in table
    assert sorted(p.name for p in folder.glob("bench-*.png")) == [
        "bench-end_to_end.png", "bench-env_steps.png", "bench-train_step.png"]
    assert not list(cwd.iterdir())


def test_report_without_results_in_the_default_folder_is_one_line(tmp_path):
    result = jaxdqn("bench", "report", env={"XDG_DATA_HOME": str(tmp_path)})
    assert result.returncode == 2
    assert result.stderr.strip() == (f"jaxdqn: error: {tmp_path / 'jaxdqn' / 'bench'}: no bench-*.json result files; "
                                     "run `jaxdqn bench` first")
