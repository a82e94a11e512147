"""Machine and version facts stored with every benchmark result."""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import platform
import subprocess
from pathlib import Path


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (or the platform's guess)."""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def git_commit() -> str:
    """$JAXDQN_GIT_COMMIT (a copy without .git), else the commit of the checkout this code runs from, else 'unknown'."""
    if os.environ.get("JAXDQN_GIT_COMMIT"):
        return os.environ["JAXDQN_GIT_COMMIT"]
    here = Path(__file__).resolve()
    try:
        top, commit = subprocess.run(["git", "rev-parse", "--show-toplevel", "HEAD"], capture_output=True, text=True,
                                     cwd=here.parent, check=True).stdout.split()
    except (OSError, ValueError, subprocess.CalledProcessError):
        return "unknown"
    # An installed copy (site-packages) may sit inside some other checkout, whose commit is not this code's.
    source = Path(top) / "jaxdqn" / "bench" / here.name
    return commit if source.exists() and source.samefile(here) else "unknown"


def machine_facts() -> dict:
    """Backend, devices, CPU, core count, package versions, commit and date."""
    import jax

    devices = jax.devices()
    versions = {}
    for package in ("jax", "jaxlib", "flax", "optax", "envpool", "numpy"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "backend": jax.default_backend(),
        "devices": [d.device_kind for d in devices],
        "device_count": len(devices),
        "cpu_model": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "python": platform.python_version(),
        "versions": versions,
        "git_commit": git_commit(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def machine_tag(facts: dict) -> str:
    """A short file-name tag: backend, device or CPU, core count."""
    name = facts["devices"][0] if facts["backend"] != "cpu" else facts["cpu_model"]
    slug = "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")
    while "--" in slug:
        slug = slug.replace("--", "-")
    return f"{facts['backend']}-{slug}-{facts['cpu_cores']}cores"


def write_result(record: dict, out_dir, name: str) -> Path:
    """Write `record` as `out_dir/name-<machine tag>.json` and return the path."""
    path = Path(out_dir) / f"{name}-{machine_tag(record['machine'])}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {path}")
    return path
