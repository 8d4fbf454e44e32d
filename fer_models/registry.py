"""Name -> object registries, one per extension family (docs/architecture.md, "Conventions").

Each registry knows the package whose modules hold its entries and imports them all on
first lookup, so a new entry is one new file with a ``@REGISTRY.register("name")``
decorator and nothing else. Keyword arguments of ``register`` are the entry's metadata
(``METHODS.meta("cam")["backbone"]``), so facts about an entry live beside it instead of
in lists elsewhere. A module-level ``Registry`` of ``fer_models.registry``,
``fer_analysis.registry`` or ``orchestrator.registry`` is a family of its own:
``fer-orch list`` and the contract tests find it there.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any, Callable, Generic, Iterator, TypeVar

from fer_models.errors import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, family: str, package: str | None = None, *, plural: str | None = None,
                 cli_name: str | None = None):
        """``package``: the package (or single module) whose import registers the entries;
        ``plural`` (default ``family + "s"``) for messages; ``cli_name`` (default ``plural``)
        names the family in ``fer-orch list``."""
        self.family = family
        self.package = package
        self.plural = plural or f"{family}s"
        self.cli_name = cli_name or self.plural
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

    def rescan(self) -> None:
        """Import the package's modules again on the next lookup (a module added since)."""
        self._loaded = self.package is None

    def get(self, name: str) -> T:
        self._load()
        key = name.lower()
        if key not in self._entries:
            raise UnknownNameError(
                f"unknown {self.family} '{name}'; known {self.plural}: {', '.join(self.names())}"
            )
        return self._entries[key]

    def unregister(self, name: str) -> None:
        """Remove an entry (a notebook redefining one, a test's throw-away entry)."""
        key = name.lower()
        self._entries.pop(key, None)
        self._meta.pop(key, None)

    def names(self) -> list[str]:
        self._load()
        return sorted(self._entries)

    def ordered_by(self, key: str) -> list[str]:
        """Names of the entries that carry metadata ``key``, sorted by its value (then name)."""
        return sorted((n for n in self.names() if key in self._meta[n]), key=lambda n: (self._meta[n][key], n))

    def meta(self, name: str) -> dict[str, Any]:
        self.get(name)
        return dict(self._meta[name.lower()])

    def __contains__(self, name: str) -> bool:
        self._load()
        return name.lower() in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


def registries_in(*modules: str) -> list[Registry]:
    """The ``Registry`` objects defined at module level in ``modules``, in definition order."""
    found: dict[int, Registry] = {}
    for name in modules:
        for value in vars(importlib.import_module(name)).values():
            if isinstance(value, Registry):
                found.setdefault(id(value), value)
    return list(found.values())


# The families of fer_models, in the order `fer-orch list` shows them. fer_analysis and
# orchestrator declare their own in their `registry` modules.
DATASETS: Registry = Registry("dataset", "fer_models.data.readers")
LANDMARKS: Registry = Registry("landmark backend", "fer_models.data.landmarks", cli_name="landmarks")
CODEBOOKS: Registry = Registry("codebook", "fer_models.data.au")
AU_DETECTORS: Registry = Registry("AU detector", "fer_models.data.au_detectors", cli_name="au-detectors")
BACKBONES: Registry = Registry("backbone", "fer_models.backbones")
METHODS: Registry = Registry("method", "fer_models.methods")
MODELS: Registry = Registry("model", "fer_models.zoo")  # trained networks of others (`fer-orch audit`)
