"""`jaxdqn train` as its own process (cold: compile time included), and the figures read from its run."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from jaxdqn.config.build import config_from_dict


def learning_phase_sps(run_dir: Path) -> float | None:
    """Median SPS over the log chunks that start at or after learning_starts (None if there are none)."""
    config = config_from_dict(json.loads((run_dir / "config.json").read_text()))  # either config.json format
    learning_starts = config.loop.learning_starts
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    sps = sorted(r["sps"] for before, r in zip(records, records[1:]) if before["env_steps"] >= learning_starts)
    return sps[len(sps) // 2] if sps else None


def jaxdqn_command() -> str:
    """The installed `jaxdqn` console script next to this interpreter, or on PATH."""
    local = Path(sys.executable).with_name("jaxdqn")
    return str(local) if local.exists() else (shutil.which("jaxdqn") or "jaxdqn")


def run_case(args: list[str], workdir: Path) -> dict:
    """Run `jaxdqn train ARGS` and return its summary plus the command."""
    out = workdir / "run"
    command = [jaxdqn_command(), "train", *args, "--out", str(out)]
    subprocess.run(command, check=True, capture_output=True, text=True)
    summary = json.loads((out / "summary.json").read_text())
    summary["learning_sps"] = learning_phase_sps(out)
    shutil.rmtree(out)
    keys = ("env_steps", "updates", "wall_seconds", "compile_seconds", "sps", "updates_per_second",
            "eval_return_mean", "return_mean_100", "solved_step", "num_envs", "num_seeds", "learning_sps")
    return {"command": " ".join(["jaxdqn", *command[1:-2]]), **{k: summary[k] for k in keys}}
