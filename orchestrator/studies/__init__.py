"""The studies a grid invocation can run: one module per study, registered in
:data:`orchestrator.registry.STUDIES` (see :class:`orchestrator.studies._base.Study`).

A study says which trials it needs (``configs``), where it sits in the run (``runs_first``)
and in the report (``order``), whether it is an ablation (``fer-orch ablate NAME``), and
writes its own section of ``fer-orch report``. Adding one is one new module here.
"""

from __future__ import annotations

from typing import Iterable

from orchestrator.config import GridConfig, Trial, resolve_lambda
from orchestrator.registry import STUDIES
from orchestrator.studies._base import Ablation, Study

__all__ = ["Ablation", "Study", "expand", "get", "validate", "run_order", "report_order", "grid_studies", "ablations"]


def get(name: str) -> Study:
    """The study registered as ``name`` (an instance)."""
    return STUDIES.get(name)()


def expand(g: GridConfig, study: str = "grid", lam: float | None = None) -> list[Trial]:
    """The trials of ``study`` for ``g``, each config once, in the study's order.

    ``lam``: the λ of the main grid / layer ablation (chosen on validation by the driver);
    which λ wins: :func:`orchestrator.config.resolve_lambda`.
    """
    s = get(study)
    lam = resolve_lambda(g, lam)[0]
    unique: dict[str, Trial] = {}
    for cfg in s.configs(g, lam):  # duplicates (e.g. au=(True, True)) would be one run anyway
        t = Trial(cfg, study.lower())
        unique.setdefault(t.hash, t)
    return list(unique.values())


def validate(g: GridConfig, studies: Iterable[str] = ()) -> GridConfig:
    """:meth:`GridConfig.validate` of every trial config ``studies`` will train (none named:
    the main grid's), each config once: one sentence before any Ray start or cache build."""
    studies = tuple(studies)
    if not studies:
        return g.validate()
    return g.validate({t.hash: t.cfg for s in studies for t in expand(g, s)}.values())


def run_order(names: Iterable[str]) -> tuple[str, ...]:
    """``names`` in the order a grid invocation runs them: ``runs_first`` studies first, then
    the report's order. An unknown name raises ``UnknownNameError`` listing the known ones."""
    return tuple(sorted(dict.fromkeys(n.lower() for n in names), key=lambda n: (not get(n).runs_first, get(n).order, n)))


def report_order() -> tuple[str, ...]:
    """Every study, in the order of the report's sections."""
    return tuple(sorted(STUDIES.names(), key=lambda n: (get(n).order, n)))


def grid_studies(ablations: bool = True) -> tuple[str, ...]:
    """What `fer-orch grid` runs, in run order: every study that is ``in_grid``, the ablations
    only when asked."""
    return run_order(n for n in STUDIES.names() if get(n).in_grid and (ablations or not get(n).ablation))


def ablations() -> list[str]:
    """The studies `fer-orch ablate` accepts."""
    return [n for n in STUDIES.names() if get(n).ablation]
