"""Throughput measurement behind `jaxdqn bench`: the harness, its Markdown/PNG report, the host-loop
reference DQN and the machine facts stored with every result.

The scripts in the repository's `benchmarks/` folder (preset suites, the Nature-CNN and prioritized
replay studies, the Gymnasium fallback) build on these modules; they are not installed.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_RESULTS_HELP = "$XDG_DATA_HOME/jaxdqn/bench, or ~/.local/share/jaxdqn/bench without an absolute XDG_DATA_HOME"


def default_results_dir() -> Path:
    """Where `jaxdqn bench` writes and `jaxdqn bench report` reads by default (see DEFAULT_RESULTS_HELP)."""
    data_home = os.environ.get("XDG_DATA_HOME", "")
    # The XDG spec says a relative path there is invalid and must be ignored.
    base = Path(data_home) if os.path.isabs(data_home) else Path.home() / ".local" / "share"
    return base / "jaxdqn" / "bench"
