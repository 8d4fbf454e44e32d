"""Name -> object registries, one per extension family (DESIGN.md, "Extension points").

Each registry knows the package whose modules hold its entries and imports them all on
first lookup, so a new entry is one new file with a ``@REGISTRY.register("name")``
decorator and nothing else.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any, Callable, Generic, Iterator, TypeVar

from fer_models.errors import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, family: str, package: str | None = None):
        """``package``: the package (or single module) whose import registers the entries."""
        self.family = family
        self.package = package
        self._entries: dict[str, T] = {}
        self._meta: dict[str, dict[str, Any]] = {}
        self._loaded = package is None

    def register(self, name: str, **meta: Any) -> Callable[[T], T]:
        """Decorator: ``@DATASETS.register("rafdb", description=...)``."""
        key = name.lower()

        def deco(obj: T) -> T:
            if key in self._entries and self._entries[key] is not obj:
                raise ValueError(f"{self.family} '{key}' is registered twice")
            self._entries[key] = obj
            doc = (getattr(obj, "__doc__", None) or "").strip().splitlines()
            self._meta[key] = {"description": doc[0] if doc else "", **meta}
            return obj

        return deco

    def _load(self) -> None:
        """Import every entry module. Marked loaded only once all imports succeeded, so a
        broken entry module raises its own ImportError on every lookup instead of the
        registry later claiming its entries are unknown."""
        if self._loaded:
            return
        pkg = importlib.import_module(self.package)
        if hasattr(pkg, "__path__"):  # a package: one module per entry; else the module holds them
            for mod in pkgutil.iter_modules(pkg.__path__):
                if not mod.name.startswith("_"):
                    importlib.import_module(f"{self.package}.{mod.name}")
        self._loaded = True

    def get(self, name: str) -> T:
        self._load()
        key = name.lower()
        if key not in self._entries:
            raise UnknownNameError(
                f"unknown {self.family} '{name}'; known {self.family}s: {', '.join(self.names())}"
            )
        return self._entries[key]

    def names(self) -> list[str]:
        self._load()
        return sorted(self._entries)

    def meta(self, name: str) -> dict[str, Any]:
        self.get(name)
        return dict(self._meta[name.lower()])

    def __contains__(self, name: str) -> bool:
        self._load()
        return name.lower() in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


# The families of fer_models. fer_analysis declares its own (explainers, probes).
DATASETS: Registry = Registry("dataset", "fer_models.data.readers")
LANDMARKS: Registry = Registry("landmark backend", "fer_models.data.landmarks")
BACKBONES: Registry = Registry("backbone", "fer_models.backbones")
METHODS: Registry = Registry("method", "fer_models.methods")
CODEBOOKS: Registry = Registry("codebook", "fer_models.data.au")
