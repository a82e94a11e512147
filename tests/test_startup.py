"""What a process does before it trains: jaxdqn's import and the loading of a stored program, each in a fresh
Python process (the suite's own process has imported everything already)."""

import json
import os
import subprocess
import sys

GARBAGE_COLLECTOR_AFTER_IMPORT = """
import gc, json, sys
if sys.argv[1] == "off":
    gc.disable()
import jaxdqn
print(json.dumps({"enabled": gc.isenabled(), "frozen": gc.get_freeze_count()}))
"""


def python(code: str, *args, env=None) -> dict:
    """Run `code` in a fresh interpreter; the JSON object its last line prints."""
    result = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_importing_jaxdqn_freezes_what_it_made_and_leaves_the_collector_as_it_found_it():
    """The objects JAX, Flax and jaxdqn make on import are kept out of every later collection; a process that had
    turned the collector off finds it off, and nothing frozen."""
    assert python(GARBAGE_COLLECTOR_AFTER_IMPORT, "on")["enabled"] is True
    assert python(GARBAGE_COLLECTOR_AFTER_IMPORT, "on")["frozen"] > 50_000
    assert python(GARBAGE_COLLECTOR_AFTER_IMPORT, "off") == {"enabled": False, "frozen": 0}


LOADING_A_STORED_PROGRAM = """
import json, os, sys
import jax, jax.numpy as jnp
from jaxdqn.compile_cache import compile_program, program_key
args = (jnp.arange(3.0), jnp.float32(2.0))
key = program_key("scale", {}, args)
out = compile_program(lambda x, scale: x * scale + 1, args, key)(*args)
before = type(sys.modules.get("scipy.linalg")).__name__
blas = "scipy.linalg.cython_blas" in sys.modules
import scipy.linalg
inverse = scipy.linalg.inv([[2.0, 0.0], [0.0, 4.0]]).tolist()
print(json.dumps({"out": out.tolist(), "before": before, "blas": blas, "inverse": inverse,
                  "after": type(sys.modules["scipy.linalg"]).__name__}))
"""


def test_a_stored_program_loads_without_importing_all_of_scipy_linalg(tmp_path):
    """Lowering a program of the program cache readies JAX's LAPACK kernels, which read their BLAS from
    scipy.linalg.cython_blas: that module is loaded alone, scipy.linalg stays a stand-in (0.2 s of every warm
    start), and reading from scipy.linalg afterwards imports the real one. The first process stores the program,
    the second loads the stored copy."""
    env = {**os.environ, "JAXDQN_COMPILE_CACHE": str(tmp_path)}
    for _ in range(2):
        report = python(LOADING_A_STORED_PROGRAM, env=env)
        assert report == {"out": [1.0, 3.0, 5.0], "before": "DeferredModule", "blas": True,
                          "inverse": [[0.5, 0.0], [0.0, 0.25]], "after": "module"}
    assert len(list((tmp_path / "programs").iterdir())) == 1
