"""Run the real `jaxdqn` CLI in this process, crashing it in the middle of writing a file.

    python tests/crash_during_save.py MODULE:FUNCTION K JAXDQN-ARGS...

MODULE.FUNCTION is the function that writes the file (its first argument is the file's path), for example
`jaxdqn.run.checkpoint:write_arrays`. Its K-th call writes the file, cuts it to half its size and kills the
process with SIGKILL (no cleanup, as in a power cut or `kill -9`), so a test can check what a kill in the
middle of a checkpoint save leaves behind.
"""

import functools
import importlib
import os
import signal
import sys
from pathlib import Path


def crash_on_call(module_name: str, function_name: str, k: int) -> None:
    """Replace MODULE.FUNCTION by a wrapper whose K-th call writes half the file and SIGKILLs the process."""
    module = importlib.import_module(module_name)
    original = getattr(module, function_name)
    calls = 0

    @functools.wraps(original)
    def wrapper(path, *args, **kwargs):
        nonlocal calls
        calls += 1
        result = original(path, *args, **kwargs)
        if calls == k:
            with open(path, "r+b") as f:
                f.truncate(Path(path).stat().st_size // 2)
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    setattr(module, function_name, wrapper)


def main(argv: list[str]) -> int:
    """Install the crash, then run `jaxdqn ARGS` through the real CLI entry point."""
    target, k, *args = argv
    module_name, function_name = target.split(":")
    crash_on_call(module_name, function_name, int(k))
    from jaxdqn.cli import main as jaxdqn_main

    return jaxdqn_main(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
