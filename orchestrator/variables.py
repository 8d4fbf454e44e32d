"""The grid's variables: the fields of a trial's config that a grid varies, each with its
MLflow tag and its column in the report's runs frame, in one table.

:meth:`orchestrator.config.Trial.tags` writes the tags from this table,
:func:`orchestrator.tables.runs_frame` reads them back into columns, and the MLflow UI
view (``orchestrator/tracking/ui.py``) shows them. A column is named like its config field
(``lam``); a tag keeps the name existing runs carry (``lambda``), so older runs still report.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class Variable:
    column: str  # the runs frame's column, the config field's name
    tag: str  # the MLflow tag of every trial run
    value: Callable[[Any], str | None]  # the tag's text from a TrainConfig (None: no tag)
    read: Callable[[str | None], Any]  # the column's value from the tag's text (None: a run without it)
    shown: bool = True  # a column of the MLflow UI's default view


def _fold(c) -> str | None:
    return str(c.data.options["fold"]) if "fold" in c.data.options else None  # the report averages over folds


#: method, dataset, au, lam, layers, seed, au_source, fold, target
GRID_VARIABLES: tuple[Variable, ...] = (
    Variable("method", "method", lambda c: c.method, lambda t: t),
    Variable("dataset", "dataset", lambda c: c.data.dataset, lambda t: t),
    Variable("au", "au", lambda c: str(bool(c.au)).lower(), lambda t: t == "true"),
    Variable("lam", "lambda", lambda c: f"{c.lam:g}", lambda t: float("nan" if t is None else t)),
    Variable("layers", "layers", lambda c: "+".join(map(str, c.layers)), lambda t: t),
    Variable("seed", "seed", lambda c: str(c.seed), lambda t: int(0 if t is None else t)),
    Variable("au_source", "au_source", lambda c: c.data.au_source, lambda t: "codebook" if t is None else t,
             shown=False),
    Variable("fold", "fold", _fold, lambda t: int(t) if (t or "").lstrip("-").isdigit() else math.nan, shown=False),
    Variable("target", "target", lambda c: None if c.target == "expression" else c.target,
             lambda t: "expression" if t is None else t, shown=False),
)


def tags_of(cfg) -> dict[str, str]:
    """The grid-variable tags of a trial of ``cfg`` (a tag whose value is the default is left out)."""
    return {v.tag: text for v in GRID_VARIABLES if (text := v.value(cfg)) is not None}


def columns_of(tags: dict[str, str]) -> dict[str, Any]:
    """The runs frame's grid-variable columns of a run with ``tags``."""
    return {v.column: v.read(tags.get(v.tag)) for v in GRID_VARIABLES}


#: the tags of the MLflow UI's default trial view
VIEW_TAGS: tuple[str, ...] = tuple(v.tag for v in GRID_VARIABLES if v.shown)
