"""JAX's random numbers in the training loop on CPU without a loop: the Threefry-2x32 hash as straight-line code.

Every `jax.random` call (split, fold_in, uniform, randint, ...) hashes its counters with Threefry-2x32 (Salmon
et al. 2011: 20 rounds in five groups of four, a key injection after each group). JAX lowers the hash with its
five groups unrolled on GPU and as a `while` loop of five trips on CPU, to keep CPU programs small. On XLA:CPU
every trip of such a loop runs its ops as separate small kernels (thunks): in the compiled training loop, where
acting, the environments and the replay draw random numbers at every step, the loops cost about a third of an
acting iteration (gymnax CartPole, 10 environments: 36.0 -> 21.9 us an iteration).

`install()` (run when jaxdqn is imported) lowers the hash on CPU with `threefry2x32`: unrolled while a program
is lowered inside `with unrolled():` (the training loop's chunk, whose random calls run at every step) and as a
loop of five trips elsewhere, as JAX does (unrolled everywhere, an agent's `init`, whose vmapped parameter
initialisers chain many hashes, took 5 s to compile instead of 1.6 s). `JAXDQN_CPU_THREEFRY=loop` leaves JAX's
own lowering in place. The hash's words are bit for bit JAX's (tested against the published test vectors and
against JAX's lowering), so a run is the same run either way, only faster: on 2026-11-29 Rainbow CartPole runs
were bit for bit the runs without it (EnvPool, 10 environments, 100,000 steps: every logged metric and the final
checkpoint's arrays; gymnax, the suite's seed: the same losses up to solved at step 210,900), and the whole suite
passed with it set, but for the test of the opt-in itself and one test that failed without it too. (It was an
opt-in until then: the Rainbow CartPole preset had once ended at a greedy 302.8 instead of >= 475 with it, for a
cause not found, and that did not happen again.)

JAX reuses a function's lowering for arguments of the same shapes whatever the context: a function called
through `jax.jit` (or lowered) outside `unrolled()` keeps the loop when it is lowered again inside it.

The training loop of a config with noisy layers is lowered with JAX's loop all the same: its noise is drawn in
every forward pass of the update, and unrolled, the Rainbow chunk compiled in 21 s instead of 14 s (cold, two
runs each) for a run about 4% faster.
"""

from __future__ import annotations

import contextlib
import contextvars
import os

import jax
import jax.numpy as jnp
import numpy as np

ENV_VAR = "JAXDQN_CPU_THREEFRY"
LOOP = "loop"
"""The value of `ENV_VAR` that keeps JAX's own lowering."""
ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
"""The rotation amounts of Threefry-2x32's rounds, for odd and even groups of four."""
KEY_PARITY = np.uint32(0x1BD11BDA)
"""Threefish's key-schedule constant: the third key word is key0 ^ key1 ^ this."""

_unroll = contextvars.ContextVar("jaxdqn_threefry_unroll", default=False)
_installed = False


def rotate_left(x, bits):
    """Rotate the uint32 words of `x` left by `bits` (1..31)."""
    bits = jnp.asarray(bits, jnp.uint32)
    return (x << bits) | (x >> (jnp.uint32(32) - bits))


def _group(x0, x1, rotations, key_a, key_b, group):
    """One group of four rounds, then the key injection of group number `group` (1..5)."""
    for bits in rotations:
        x0 = x0 + x1
        x1 = rotate_left(x1, bits) ^ x0
    return x0 + key_a, x1 + key_b + jnp.asarray(group, jnp.uint32)


def threefry2x32(key0, key1, count0, count1, unroll: bool = True):
    """The Threefry-2x32 hash (20 rounds) of the counter words (count0, count1) under the key (key0, key1), all
    uint32 arrays of broadcastable shapes: the two words of the result. `unroll`: straight-line code; otherwise a
    `fori_loop` over the five groups of rounds (a smaller program)."""
    key0, key1, count0, count1 = jnp.broadcast_arrays(key0, key1, count0, count1)
    keys = (key0, key1, key0 ^ key1 ^ KEY_PARITY)
    x0, x1 = count0 + keys[0], count1 + keys[1]
    if unroll:
        for group in range(1, 6):
            x0, x1 = _group(x0, x1, ROTATIONS[(group - 1) % 2], keys[group % 3], keys[(group + 1) % 3], group)
        return x0, x1

    table = jnp.asarray(ROTATIONS, jnp.uint32)

    def body(index, carry):  # group index + 1 injects keys[(index + 1) % 3] and keys[(index + 2) % 3]
        x0, x1, key_a, key_b, key_c = carry
        x0, x1 = _group(x0, x1, [table[index % 2, i] for i in range(4)], key_a, key_b, index + 1)
        return x0, x1, key_b, key_c, key_a

    x0, x1, *_ = jax.lax.fori_loop(0, 5, body, (x0, x1, keys[1], keys[2], keys[0]))
    return x0, x1


@contextlib.contextmanager
def unrolled(enabled: bool = True):
    """Programs lowered inside this block hash their random numbers with straight-line code on CPU (with `enabled`;
    otherwise as a loop, as elsewhere)."""
    token = _unroll.set(enabled)
    try:
        yield
    finally:
        _unroll.reset(token)


def install() -> bool:
    """Lower `jax.random`'s Threefry hash on CPU with `threefry2x32` (once per process), unrolled inside
    `unrolled()`; False, JAX's own lowering left in place, when `$JAXDQN_CPU_THREEFRY` is `loop`."""
    global _installed
    if os.environ.get(ENV_VAR, "").strip().lower() == LOOP:
        return False
    if not _installed:
        from jax.extend.random import threefry2x32_p
        from jax.interpreters import mlir

        straight = mlir.lower_fun(lambda *words: list(threefry2x32(*words)), multiple_results=True)
        looped = mlir.lower_fun(lambda *words: list(threefry2x32(*words, unroll=False)), multiple_results=True)
        mlir.register_lowering(threefry2x32_p, lambda ctx, *words: (straight if _unroll.get() else looped)(
            ctx, *words), platform="cpu", inline=False)
        _installed = True
    return True
