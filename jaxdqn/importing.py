"""Objects named by import path (`module:attribute`): how a fork's agent or JAX environment reaches jaxdqn
without an edit to it."""

from __future__ import annotations

import importlib


def load_object(path: str):
    """The object at import path `module:attribute`, a class instantiated with no arguments; ImportError naming
    the reason when the module or the attribute is missing."""
    module_name, _, attribute = path.partition(":")
    try:
        target = getattr(importlib.import_module(module_name), attribute)
    except AttributeError as error:
        raise ImportError(str(error)) from None
    return target() if isinstance(target, type) else target
