"""The toolkit's old import names (``hubness``, ``features``, ``hyp2``), kept for one release.

``import hubness.summary`` gives the module ``hubness_pr.io.summary`` itself (not a copy), and
``hubness.evaluate`` the name ``hubness_pr.evaluate``: code written for 0.x keeps working while it
moves to ``hubness_pr``. Standard library only.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

# old module -> new module (the old packages themselves are the small files hubness/, features/, hyp2/)
OLD_MODULES = {
    "hubness.cross": "hubness_pr.engine.cross", "hubness.kernels": "hubness_pr.engine.kernels",
    "hubness.kernels_jit": "hubness_pr.engine.kernels_jit", "hubness.knn": "hubness_pr.engine.knn",
    "hubness.distances": "hubness_pr.engine.distances", "hubness.frame": "hubness_pr.engine.frame",
    "hubness.distributed": "hubness_pr.engine.distributed", "hubness.mapped": "hubness_pr.engine.mapped",
    "hubness.ann": "hubness_pr.engine.ann", "hubness.metrics": "hubness_pr.metrics",
    "hubness.stats": "hubness_pr.metrics.hubness", "hubness.summary": "hubness_pr.io.summary",
    "hubness.report": "hubness_pr.reports.results", "hubness.gallery": "hubness_pr.reports.gallery",
    "hubness.runlog": "hubness_pr.reports.runlog", "hubness.command": "hubness_pr.commands.metrics",
    "hubness.extract_command": "hubness_pr.commands.features", "hubness.console": "hubness_pr.commands.console",
    "features.store": "hubness_pr.io.store", "features.outputs": "hubness_pr.io.outputs",
    "features.provenance": "hubness_pr.io.provenance", "features.extract": "hubness_pr.extraction.extract",
    "features.images": "hubness_pr.extraction.images", "features.backbones": "hubness_pr.extraction.backbones",
    "features.cli": "hubness_pr.commands.cli", "features.launch": "hubness_pr.commands.launch",
    "features.devices": "hubness_pr.engine.devices", "features.version": "hubness_pr.version",
    "hyp2.command": "hubness_pr.commands.retrieval",
}
OLD_PACKAGES = {"hubness": "hubness_pr", "features": "hubness_pr", "hyp2": "hubness_pr.hyp2"}


def new_name(old: str) -> str | None:
    """The module that the old dotted name ``old`` now is (None: not an old name)."""
    if old in OLD_MODULES:
        return OLD_MODULES[old]
    for prefix, new in (("hyp2.", "hubness_pr.hyp2."), ("features.backbones.", "hubness_pr.extraction.backbones.")):
        if old.startswith(prefix):
            target = new + old[len(prefix):]
            try:
                found = importlib.util.find_spec(target) is not None
            except ImportError:
                found = False
            return target if found else None
    return None


class _Loader(importlib.abc.Loader):
    def __init__(self, target: str):
        self.target = target

    def create_module(self, spec):
        return importlib.import_module(self.target)

    def exec_module(self, module) -> None:
        pass


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        new = new_name(fullname)
        if new is None:
            return None
        return importlib.util.spec_from_loader(fullname, _Loader(new))


def install() -> None:
    """Put the finder of the old names first on ``sys.meta_path`` (once)."""
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())


def package_getattr(old_package: str):
    """``__getattr__`` of an old package: its names and submodules, from the new places."""
    def __getattr__(name: str):
        new = new_name(f"{old_package}.{name}")
        if new is not None:
            return importlib.import_module(f"{old_package}.{name}")
        return getattr(importlib.import_module(OLD_PACKAGES[old_package]), name)
    return __getattr__
