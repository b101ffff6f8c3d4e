"""Package attributes that import their module on first use (PEP 562), so that importing a package stays cheap."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any


class _ExportsOverSubmodules(ModuleType):
    """A package that exports a name equal to one of its sub-modules' names (`hf_rrg.metrics.bleu` is the function
    `bleu` of `metrics/bleu.py`). When the import system binds that sub-module to the package (the first
    ``from .bleu import ...`` anywhere), the exported object is bound instead, as an eager ``from .bleu import bleu``
    in ``__init__`` would have left it."""

    def __setattr__(self, name: str, value: Any) -> None:
        if (
            isinstance(value, ModuleType)
            and name in self.__dict__.get("_exports_named_like_submodules", ())
            and value.__name__ == f"{self.__name__}.{name}"
        ):
            value = getattr(value, name)
        super().__setattr__(name, value)


def lazy_exports(
    namespace: dict[str, Any], exports: Mapping[str, tuple[str, ...]]
) -> tuple[list[str], Callable[[str], Any], Callable[[], list[str]]]:
    """`(__all__, __getattr__, __dir__)` for the package whose `globals()` is `namespace` and whose public names
    live in its sub-modules: ``__all__, __getattr__, __dir__ = lazy_exports(globals(), {...})``.

    `exports` maps a sub-module (relative name, e.g. ``"configuration_r2gen"``) to the names it exports. A name is
    imported on first access (``package.Name`` or ``from package import Name``) and then cached in the package. A
    name equal to its sub-module's name stays the exported object, never the sub-module
    (`_ExportsOverSubmodules`).
    """
    package = namespace["__name__"]
    where = {name: module for module, names in exports.items() for name in names}
    named_like_submodules = frozenset(name for name, module in where.items() if name == module)
    if named_like_submodules:
        namespace["_exports_named_like_submodules"] = named_like_submodules
        sys.modules[package].__class__ = _ExportsOverSubmodules

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{module}", package), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(where))

    return sorted(where), __getattr__, __dir__
