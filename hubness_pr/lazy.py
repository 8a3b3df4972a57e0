"""Packages whose names are imported on first use (PEP 562): standard library only."""
from __future__ import annotations

import importlib
import sys


def lazy_attributes(package: str, exports: dict, modules=()):
    """``(__getattr__, __dir__)`` for ``package``: a name of ``exports`` (name -> submodule) is imported
    from its submodule on first use, a name of ``modules`` is that submodule; either is then kept in
    the package, so the import happens once."""
    def __getattr__(name: str):
        if name in exports:
            value = getattr(importlib.import_module(f".{exports[name]}", package), name)
        elif name in modules:
            value = importlib.import_module(f".{name}", package)
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list:
        return sorted(set(vars(sys.modules[package])) | set(exports) | set(modules))

    return __getattr__, __dir__
