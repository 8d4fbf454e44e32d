"""Landmark backends, one module per LANDMARKS entry (imported on first lookup).

``default_backend(manifest)`` resolves ``landmarks: auto`` to a backend name.
"""

from fer_models.data.landmarks._base import LandmarkBackend, default_backend

__all__ = ["LandmarkBackend", "default_backend"]
