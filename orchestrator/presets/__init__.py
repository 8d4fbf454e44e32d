"""Named starting points for a :class:`~orchestrator.config.GridConfig` (``--preset``).

A preset is one module in this package holding a function registered in
:data:`orchestrator.registry.PRESETS` that takes no argument and returns a ``GridConfig``::

    @PRESETS.register("cpu", default_for="synthetic")
    def cpu() -> GridConfig: ...

``default_for`` ("synthetic" or "real", optional) makes the preset the one ``fer-orch grid``
picks when ``--preset`` is not given (:func:`for_datasets`). ``fer-orch list presets``
shows each preset with the first line of its docstring.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from orchestrator.config import GridConfig
from orchestrator.registry import PRESETS


def get(name: str, **changes: Any) -> GridConfig:
    """Preset ``name`` with ``changes`` applied (``GridConfig.override``); ``preset`` records the name."""
    g = PRESETS.get(name)()
    g = dataclasses.replace(g, preset=name.lower())
    return g.override(**changes) if changes else g


def for_datasets(datasets: tuple[str, ...] | None) -> str:
    """The preset registered ``default_for="synthetic"`` when no datasets are given or all are
    synthetic (``synthetic-*``), else the one registered ``default_for="real"``."""
    kind = "synthetic" if not datasets or all(d.startswith("synthetic-") for d in datasets) else "real"
    return next(n for n in PRESETS.names() if PRESETS.meta(n).get("default_for") == kind)
