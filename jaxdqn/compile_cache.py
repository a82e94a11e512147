"""JAX's persistent compilation cache, on by default: a second run of the same program (same config shapes,
same JAX, same machine) loads its compiled executables instead of compiling them again.

The directory is `$JAXDQN_COMPILE_CACHE` if set (`off` turns the cache off), else
`$XDG_CACHE_HOME/jaxdqn/xla` (`~/.cache/jaxdqn/xla`). A directory the user already gave JAX
(`jax_compilation_cache_dir`) is left as it is.

Programs that contain EnvPool's XLA step do not hit the cache across processes: EnvPool embeds its pool's
address in the program, so each process compiles a different one. Programs of the JAX environment backend
(gymnax, user JAX environments) do.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

CACHE_ENV_VAR = "JAXDQN_COMPILE_CACHE"
OFF = "off"
MIN_COMPILE_SECONDS = 0.2
"""Executables that compiled faster than this are not written (JAX's default is 1 s; jaxdqn's small helper
programs take 0.2-0.5 s each and add up to seconds at start-up)."""


def cache_dir() -> Path | None:
    """The cache directory jaxdqn uses, or None when `$JAXDQN_COMPILE_CACHE` is `off`."""
    given = os.environ.get(CACHE_ENV_VAR, "").strip()
    if given.lower() == OFF:
        return None
    if given:
        return Path(given).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "jaxdqn" / "xla"


def enable_compile_cache() -> Path | None:
    """Point JAX's persistent compilation cache at `cache_dir()` (unless JAX already has a directory, or the
    cache is off, or the directory cannot be created); return the directory in use, or None."""
    import jax

    current = jax.config.jax_compilation_cache_dir
    if current:
        return Path(current)
    directory = cache_dir()
    if directory is None:
        return None
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError:  # a read-only home: run without the cache rather than fail
        return None
    # A cache entry that cannot be written (a full disk, a file-size limit) only means a compile next time;
    # JAX's warning about it would be a second line beside the error that matters.
    warnings.filterwarnings("ignore", message="Error writing persistent compilation cache entry")
    jax.config.update("jax_compilation_cache_dir", str(directory))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
    return directory
