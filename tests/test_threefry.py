"""The Threefry-2x32 hash jaxdqn lowers on CPU when opted in (`JAXDQN_CPU_THREEFRY=unrolled`): the published
answers, JAX's own random numbers bit for bit, and no loop in programs lowered for the training loop."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from jaxdqn.core import threefry

# Known-answer vectors of Threefry-2x32 with 20 rounds (Random123's kat_vectors): key, counter -> result
KNOWN_ANSWERS = [
    ((0x00000000, 0x00000000), (0x00000000, 0x00000000), (0x6B200159, 0x99BA4EFE)),
    ((0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF), (0x1CB996FC, 0xBB002BE7)),
    ((0x13198A2E, 0x03707344), (0x243F6A88, 0x85A308D3), (0xC4923A9C, 0x483DF7A0)),
]

DRAWS = """
import contextlib, json, sys
import jax, jax.numpy as jnp
import jaxdqn
from jaxdqn.core import threefry

def draws(key):
    a, b = jax.random.split(key)
    return {"uniform": jax.random.uniform(a, (7,)),
            "randint": jax.random.randint(jax.random.fold_in(b, 3), (300,), 0, 1000),
            "normal": jax.vmap(lambda k: jax.random.normal(k, (3, 5)))(jax.random.split(key, 4)),
            "split": jax.random.split(b, 5)}

with threefry.unrolled() if sys.argv[1] == "unrolled" else contextlib.nullcontext():
    lowered = jax.jit(draws).lower(jax.random.PRNGKey(11))
text = lowered.compile().as_text()
out = {name: jax.device_get(x).tolist() for name, x in lowered.compile()(jax.random.PRNGKey(11)).items()}
print(json.dumps({"loops": text.count(" while("), "draws": out}))
"""


def draws(mode: str, **environment) -> dict:
    """The random draws of one program and its count of while loops, from a fresh process."""
    result = subprocess.run([sys.executable, "-c", DRAWS, mode], capture_output=True, text=True, check=True,
                            env={**os.environ, **environment})
    return json.loads(result.stdout.splitlines()[-1])


@pytest.mark.parametrize("unroll", [True, False])
def test_threefry_gives_the_published_answers(unroll):
    hash_ = jax.jit(lambda key, count: threefry.threefry2x32(key[0], key[1], count[0], count[1], unroll=unroll))
    for key, count, expected in KNOWN_ANSWERS:
        words = hash_(np.asarray(key, np.uint32), np.asarray(count, np.uint32))
        assert [int(w) for w in words] == list(expected)


def test_the_opt_in_draws_jax_random_numbers_without_a_loop_in_training_loop_programs():
    jax_own = draws("unrolled")  # not opted in: JAX's lowering (a loop of five trips) even inside unrolled()
    looped, straight = (draws(mode, JAXDQN_CPU_THREEFRY="unrolled") for mode in ("default", "unrolled"))
    assert jax_own["loops"] > 0 and looped["loops"] > 0
    assert straight["loops"] == 0
    assert looped["draws"] == jax_own["draws"]
    assert straight["draws"] == jax_own["draws"]


def test_jax_lowering_stays_unless_opted_in(monkeypatch):
    monkeypatch.delenv(threefry.ENV_VAR, raising=False)
    assert threefry.install() is False
    monkeypatch.setenv(threefry.ENV_VAR, "loop")
    assert threefry.install() is False
