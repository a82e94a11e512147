"""Checks on files a command is about to write, run before any work so bad input fails at once."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def unwritable_reason(directory: str | os.PathLike) -> str | None:
    """Why nothing can be created in `directory` (the OS's words), or None if something can.

    Creates and removes a real folder there: `os.access` says yes to root everywhere, even on a read-only
    file system, so only trying says what the disk allows.
    """
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".jaxdqn-probe-", dir=directory))
    except OSError as error:
        return error.strerror or type(error).__name__
    return None


def check_output_path(path: str | os.PathLike, option: str, extensions: tuple[str, ...],
                      error: type[Exception]) -> Path:
    """Return `path` as a Path if a file with one of `extensions` can be written there; else raise
    `error` with one line naming `option`, the problem and what is allowed."""
    path = Path(path)
    if path.suffix.lower() not in extensions:
        raise error(f"{option}: unsupported extension {path.suffix or '(none)'!r} in {path}; "
                    f"allowed: {', '.join(extensions)}")
    if path.is_dir():
        raise error(f"{option}: {path} is a directory; give a file name ending in {' or '.join(extensions)}")
    if not path.parent.is_dir():
        raise error(f"{option}: directory {path.parent} does not exist")
    reason = unwritable_reason(path.parent)
    if reason is not None:
        raise error(f"{option}: {path.parent} is not writable ({reason}), so {path.name} cannot be written there")
    if path.exists() and not os.access(path, os.W_OK):
        raise error(f"{option}: {path} is not writable")
    return path
