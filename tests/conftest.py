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


def jaxdqn(*args, timeout=900, env=None):
    """Run `jaxdqn ARGS` in a subprocess (with `env` added to this environment); return the CompletedProcess."""
    assert JAXDQN, "the jaxdqn command is not installed (pip install -e .)"
    return subprocess.run([JAXDQN, *args], capture_output=True, text=True, timeout=timeout,
                          env=None if env is None else {**os.environ, **env})
