"""Old import name of the toolkit (``hubness``), kept for one release: use ``hubness_pr``.

Every old module path still imports (the same module object, e.g. ``import hubness.summary``); see
CHANGELOG.md for the map from old to new names.
"""
from hubness_pr._aliases import install, package_getattr

install()
__getattr__ = package_getattr(__name__)
