"""Shared test helpers: the installed `jaxdqn` command, run as a user types it.

Test modules import them as `from tests.conftest import JAXDQN, jaxdqn`.
"""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from jaxdqn.compile_cache import CACHE_ENV_VAR

# The installed console script: next to this interpreter (a virtual environment) or on PATH.
JAXDQN = str(Path(sys.executable).with_name("jaxdqn")) if Path(sys.executable).with_name("jaxdqn").exists() \
    else shutil.which("jaxdqn")

REPO = Path(__file__).resolve().parents[1]
WITH_TESTS = {"PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
"""Makes the agents and environments in tests/ importable by path (`--agent tests.toy_agents:ReplayToy`), as a fork's own
package would be."""


def jaxdqn(*args, timeout=900, env=None):
    """Run `jaxdqn ARGS` in a subprocess (with `env` added to this environment); return the CompletedProcess."""
    assert JAXDQN, "the jaxdqn command is not installed (pip install -e .)"
    return subprocess.run([JAXDQN, *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **WITH_TESTS, **(env or {})})


# The suite's compiled programs go to a cache of its own (this process and the `jaxdqn` subprocesses), not the
# user's; a test that checks the cache itself sets its own directory.
os.environ.setdefault(CACHE_ENV_VAR, str(Path(tempfile.mkdtemp(prefix="jaxdqn-test-")) / "xla"))
