"""The Threefry-2x32 hash jaxdqn lowers on CPU (`JAXDQN_CPU_THREEFRY=loop` keeps JAX's): the published answers, JAX's
own random numbers bit for bit, and no loop in programs lowered for the training loop but a noisy network's."""

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

modes = {"unrolled": threefry.unrolled(), "disabled": threefry.unrolled(False), "default": contextlib.nullcontext()}
with modes[sys.argv[1]]:
    lowered = jax.jit(draws).lower(jax.random.PRNGKey(11))
text = lowered.compile().as_text()
out = {name: jax.device_get(x).tolist() for name, x in lowered.compile()(jax.random.PRNGKey(11)).items()}
print(json.dumps({"loops": text.count(" while("), "draws": out}))
"""


def draws(mode: str, **environment) -> dict:
    """The random draws of one program and its count of while loops, from a fresh process (`environment` added to
    this one's, without JAXDQN_CPU_THREEFRY unless it is given)."""
    inherited = {k: v for k, v in os.environ.items() if k != threefry.ENV_VAR}
    result = subprocess.run([sys.executable, "-c", DRAWS, mode], capture_output=True, text=True, check=True,
                            env={**inherited, **environment})
    return json.loads(result.stdout.splitlines()[-1])


@pytest.mark.parametrize("unroll", [True, False])
def test_threefry_gives_the_published_answers(unroll):
    hash_ = jax.jit(lambda key, count: threefry.threefry2x32(key[0], key[1], count[0], count[1], unroll=unroll))
    for key, count, expected in KNOWN_ANSWERS:
        words = hash_(np.asarray(key, np.uint32), np.asarray(count, np.uint32))
        assert [int(w) for w in words] == list(expected)


def test_training_loop_programs_draw_jax_random_numbers_without_a_loop():
    jax_own = draws("unrolled", JAXDQN_CPU_THREEFRY="loop")  # JAX's lowering (a loop of five trips) even in unrolled()
    looped, disabled, straight = (draws(mode) for mode in ("default", "disabled", "unrolled"))
    assert jax_own["loops"] > 0 and looped["loops"] > 0 and disabled["loops"] > 0
    assert straight["loops"] == 0
    assert looped["draws"] == jax_own["draws"] == disabled["draws"]
    assert straight["draws"] == jax_own["draws"]


def test_jax_lowering_stays_when_asked(monkeypatch):
    monkeypatch.setenv(threefry.ENV_VAR, "loop")
    assert threefry.install() is False
    monkeypatch.delenv(threefry.ENV_VAR)
    assert threefry.install() is True


def test_only_a_noisy_network_keeps_the_loop_in_the_training_loop():
    """Noisy layers draw their noise in every forward pass of the update: unrolled, the Rainbow chunk compiles about
    half again as long for a run a few percent faster, so the driver lowers it with JAX's loop."""
    from jaxdqn.config.build import make_config
    from jaxdqn.run.driver import has_noisy_layers

    noisy = {preset: has_noisy_layers(make_config(preset))
             for preset in ("cartpole", "c51-cartpole", "rainbow-cartpole", "pqn-cartpole", "frozenlake")}
    assert noisy == {"cartpole": False, "c51-cartpole": False, "rainbow-cartpole": True, "pqn-cartpole": False,
                     "frozenlake": False}
    assert has_noisy_layers(make_config("cartpole", noisy=True, epsilon_schedule="constant", epsilon_start=0.0))
