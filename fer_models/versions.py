"""Installed package versions, for cache keys (landmark backends) and run provenance (MLflow tags)."""

from __future__ import annotations

import importlib.metadata


def package_version(*dists: str) -> str:
    """The installed version of the first of ``dists`` found, else ``"absent"``.

    Several names cover a package published under more than one distribution name
    (``dlib-bin`` / ``dlib``).
    """
    for dist in dists:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "absent"
