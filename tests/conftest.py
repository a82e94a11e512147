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
"""Makes the agents and environments in tests/ importable by path (`--agent tests.toy_agents:ReplayToy`), as a fork's
own package would be."""


# Most of the suite's time is XLA compiling small runs, and LLVM's optimizations are half of that: the suite's
# programs are compiled without them (the same XLA programs, the machine code less optimised: 9.8 -> 4.9 s of
# compiling an 8-seed gymnax run, its 4,000 steps 0.4 s slower). A learning test passes `optimized=True`: its
# run is long enough that the optimised code pays, and it runs the code a user's run does.
UNOPTIMIZED_XLA = "--xla_backend_optimization_level=0"


def with_xla_flags(flags: str, optimized: bool = False) -> str:
    """XLA_FLAGS for a process of the suite: `flags` with the suite's compile setting (none when `optimized`)."""
    return " ".join(filter(None, [flags.replace(UNOPTIMIZED_XLA, "").strip(), None if optimized else UNOPTIMIZED_XLA]))


def subprocess_env(env=None, optimized: bool = False) -> dict:
    """This process's environment for a subprocess, with `env` added (its XLA_FLAGS joined to the suite's)."""
    env = {**os.environ, **WITH_TESTS, **(env or {})}
    env["XLA_FLAGS"] = with_xla_flags(env.get("XLA_FLAGS", ""), optimized)
    return env


def jaxdqn(*args, timeout=900, env=None, optimized=False):
    """Run `jaxdqn ARGS` in a subprocess (with `env` added to this environment; XLA's optimizations on with
    `optimized`, for a learning test); return the CompletedProcess."""
    assert JAXDQN, "the jaxdqn command is not installed (pip install -e .)"
    return subprocess.run([JAXDQN, *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          env=subprocess_env(env, optimized))


REFUSALS = """
import contextlib, io, json, sys
from jaxdqn.cli import main
results = []
for args in json.loads(sys.argv[1]):
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):  # not stdout: tyro words its errors otherwise when it is not a file
        code = main(args)
    results.append([code, stderr.getvalue()])
print(json.dumps(results))
"""


def jaxdqn_refused(arg_lists, env=None):
    """Run `jaxdqn ARGS` for each of `arg_lists` in one subprocess, through the command's own `main` (one start of
    Python and JAX for all of them, with `env` added to this environment); return [(exit code, stderr)] in order.
    For input refused before anything compiles: a run that goes further runs here as it would alone."""
    import json

    result = subprocess.run([sys.executable, "-c", REFUSALS, json.dumps([list(map(str, a)) for a in arg_lists])],
                            capture_output=True, text=True, timeout=900, env=subprocess_env(env))
    assert result.returncode == 0, result.stderr[-3000:]
    return [tuple(outcome) for outcome in json.loads(result.stdout.strip().splitlines()[-1])]


def pytest_collection_modifyitems(items):
    """Tests marked `long` run first: with the suite split over worker processes (pytest -n 2), a long test left
    for the end would keep one worker busy while the other waits."""
    items.sort(key=lambda item: item.get_closest_marker("long") is None)  # stable: the rest keep their order


def final_arrays(run) -> dict:
    """The arrays of the last checkpoint of the run directory `run`."""
    import numpy as np

    with np.load(sorted((run / "checkpoints").glob("step_*"))[-1] / "arrays.npz") as data:
        return {name: data[name] for name in data.files}


def assert_same_arrays(run, reference):
    """The last checkpoints of the run directories `run` and `reference` hold the same arrays, bit for bit."""
    import numpy as np

    ours, theirs = final_arrays(run), final_arrays(reference)
    assert sorted(ours) == sorted(theirs)
    assert not [name for name in ours if not np.array_equal(ours[name], theirs[name])], run


def stopped_at_half(run, copy, total_steps: int = 4000, interval: int = 1000):
    """The run directory `run` (`total_steps`, a checkpoint with its replay every `interval` steps) copied to
    `copy` as if it had stopped after its checkpoint at half the steps."""
    shutil.copytree(run, copy)
    for later in range(total_steps // 2 + interval, total_steps + 1, interval):
        shutil.rmtree(copy / "checkpoints" / f"step_{later:012d}")


def assert_half_run_resumes_exactly(tmp_path, args, total_steps: int, env=None, whole=None):
    """`jaxdqn train ARGS` run to `total_steps` in one go (or the run already in `whole`), and run to half of it
    then resumed with --exact: both end with the same checkpoint arrays (ARGS must fix --schedule-steps, as a
    resume keeps the first run's); `env` is added to the processes' environment. Returns the uninterrupted
    run's directory."""
    half = tmp_path / "half"
    if whole is None:
        whole = tmp_path / "whole"
        assert jaxdqn("train", *args, "--total-steps", total_steps, "--out", whole, env=env).returncode == 0
    assert jaxdqn("train", *args, "--total-steps", total_steps // 2, "--out", half, env=env).returncode == 0
    resumed = jaxdqn("train", "--resume", half, "--total-steps", total_steps, "--exact", env=env)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert_same_arrays(half, whole)
    return whole


# The suite's compiled programs go to a cache of its own (this process and the `jaxdqn` subprocesses), not the
# user's; a test that checks the cache itself sets its own directory.
os.environ.setdefault(CACHE_ENV_VAR, str(Path(tempfile.mkdtemp(prefix="jaxdqn-test-")) / "xla"))
# The suite runs in several worker processes (pytest -n), each with its own `jaxdqn` subprocesses: on a GPU none may
# take JAX's default 75% of its memory up front.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
os.environ["XLA_FLAGS"] = with_xla_flags(os.environ.get("XLA_FLAGS", ""))  # before this process's JAX starts
