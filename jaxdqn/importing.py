"""Objects named by import path (`module:attribute`): how a fork's agent or JAX environment reaches jaxdqn
without an edit to it; and stand-ins for modules that a dependency imports but a run does not use."""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import sys
import types


def load_object(path: str):
    """The object at import path `module:attribute`, a class instantiated with no arguments; ImportError naming
    the reason when the module or the attribute is missing."""
    module_name, _, attribute = path.partition(":")
    try:
        target = getattr(importlib.import_module(module_name), attribute)
    except AttributeError as error:
        raise ImportError(str(error)) from None
    return target() if isinstance(target, type) else target


class DeferredModule(types.ModuleType):
    """Stands in `sys.modules` for a module not yet imported: `import name` binds it at no cost, and the first
    attribute read from it imports the real module (which then takes its place in `sys.modules`) and is
    forwarded to it, as is every later one. An `open_package` stand-in has the package's `__path__`: a module
    of the package imports alone, without the package's own `__init__` (and is an attribute of the package once
    that is imported)."""

    def __init__(self, spec, open_package: bool = False):
        super().__init__(spec.name)
        self.__spec__ = spec
        if open_package and spec.submodule_search_locations is not None:
            self.__path__ = list(spec.submodule_search_locations)

    def __getattr__(self, attribute):
        name = self.__spec__.name
        if sys.modules.get(name) is self:
            del sys.modules[name]
        module = importlib.import_module(name)
        for key, value in vars(self).items():  # modules of the package imported through the stand-in
            if isinstance(value, types.ModuleType) and value.__name__ == f"{name}.{key}":
                module.__dict__.setdefault(key, value)
        return getattr(module, attribute)


def defer_imports(names, open_packages: bool = False) -> None:
    """Put a `DeferredModule` in `sys.modules` for each module of `names` that is installed and not yet imported
    (`open_packages`: see `DeferredModule`). Its parent packages are not imported to find it.
    (`importlib.util.LazyLoader` does not serve here: a second `import` of a lazy module reads its `__spec__`,
    which loads it.)"""
    for name in names:
        if name in sys.modules:
            continue
        try:
            spec = _find_spec(name)
        except ImportError:
            continue
        if spec is not None:
            sys.modules[name] = DeferredModule(spec, open_packages)


def _find_spec(name: str):
    # importlib.util.find_spec imports the parents of a dotted name; this walks their folders instead
    top, *parts = name.split(".")
    spec = importlib.util.find_spec(top)
    for part in parts:
        if spec is None or spec.submodule_search_locations is None:
            return None
        spec = importlib.machinery.PathFinder.find_spec(f"{spec.name}.{part}", spec.submodule_search_locations)
    return spec
