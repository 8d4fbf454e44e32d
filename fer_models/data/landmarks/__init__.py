"""Landmark backends: one module per ``LANDMARKS`` entry (imported on first lookup).

The public API is here: :class:`LandmarkBackend` (the base a backend subclasses),
:func:`default_backend` (what ``landmarks: auto`` resolves to) and the helpers
:func:`as_landmarks` (a backend's version string uses :func:`fer_models.versions.package_version`). A new backend is one new module in this
package; its ``auto_order=`` registration metadata places it in the ``auto`` order (lower first)
and its :meth:`LandmarkBackend.suits` says whether it can serve a manifest.
"""

from fer_models.data.landmarks._base import (
    LandmarkBackend,
    as_landmarks,
    default_backend,
)

__all__ = ["LandmarkBackend", "as_landmarks", "default_backend"]
