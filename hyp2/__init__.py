"""Old import name of HyP² (``hyp2``), kept for one release: use ``hubness_pr.hyp2``.

Every old module path still imports (the same module object, e.g. ``import hubness.summary``); see
CHANGELOG.md for the map from old to new names.
"""
from hubness_pr._aliases import install, package_getattr

install()
__getattr__ = package_getattr(__name__)
