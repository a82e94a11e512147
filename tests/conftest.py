"""Shared test helpers: the installed `jaxdqn` command, run as a user types it.

Test modules import them as `from tests.conftest import JAXDQN, jaxdqn`.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

# The installed console script: next to this interpreter (a virtual environment) or on PATH.
JAXDQN = str(Path(sys.executable).with_name("jaxdqn")) if Path(sys.executable).with_name("jaxdqn").exists() \
    else shutil.which("jaxdqn")

REPO = Path(__file__).resolve().parents[1]
WITH_TESTS = {"PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
"""Makes the agents in tests/ importable by path (`--agent tests.toy_agents:ReplayToy`), as a fork's own
package would be."""


def jaxdqn(*args, timeout=900, env=None):
    """Run `jaxdqn ARGS` in a subprocess (with `env` added to this environment); return the CompletedProcess."""
    assert JAXDQN, "the jaxdqn command is not installed (pip install -e .)"
    return subprocess.run([JAXDQN, *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **WITH_TESTS, **(env or {})})
