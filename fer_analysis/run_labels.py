"""What a run was trained to predict, and what an explanation job knows about the run.

A run's ``TrainConfig.target`` is ``expression`` (the project's 7/8 classes) or ``identity``
(paper 003 trains the same Tiny VGG for 67-identity face recognition on RaFD). The jobs read
the per-row columns of the batches (docs/contracts.md, the loader's batches):

- the **class** a network was trained on (:func:`class_labels`): ``label`` for an expression
  run; for an identity run the ``identity`` column (FaceDataset numbers identities by their
  position in the cache's ``meta["identities"]``, which is how an identity run's classes are
  numbered);
- the **expression** of a row (:func:`expression_labels`): an ``expression`` column when the
  batches carry one, else ``label`` -- except on an identity run whose ``label`` equals its
  ``identity`` column (the loader then relabelled the rows and the expression is unknown);
- the **subject** of a row (:func:`subject_labels`): ``identity``, -1 where unknown.

:class:`RunContext` is what ``orchestrator.explain`` hands every job that asks for it (a
``context`` keyword): the run's target, its class names, whether it was trained with the AU
loss, and for ``backtrack --compare-run`` the second run's model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch

from fer_models.errors import ConfigError

TARGETS = ("expression", "identity")


def run_target(cfg: Any) -> str:
    """The target of a run's config (a ``TrainConfig``; configs written before the field
    existed are read with its default, ``expression``)."""
    target = str(cfg.target)
    if target not in TARGETS:
        raise ConfigError(f"unknown training target '{target}'; fer-orch knows {', '.join(TARGETS)}")
    return target


def au_loss_used(cfg: Any) -> bool:
    """Whether a run was trained with the AU alignment loss (paper 002 Eq. 3) switched on."""
    from fer_models.config import au_loss_weight

    return au_loss_weight(cfg) > 0


def _column(extras: Mapping[str, Any], key: str, n: int) -> torch.Tensor | None:
    v = extras.get(key)
    if v is None:
        return None
    t = torch.as_tensor(v).reshape(-1).cpu()
    return t.long() if t.numel() == n else None


def class_labels(extras: Mapping[str, Any], target: str = "expression") -> torch.Tensor:
    """The class each row of a batch belongs to for a network trained on ``target``."""
    n = len(torch.as_tensor(extras["label"]).reshape(-1))
    if target == "identity":
        ids = _column(extras, "identity", n)
        if ids is None:
            raise ConfigError("an identity run needs the identity column in the batches; this dataset has none")
        return ids
    return torch.as_tensor(extras["label"]).reshape(-1).cpu().long()


def expression_labels(extras: Mapping[str, Any], target: str = "expression") -> torch.Tensor:
    """The expression of each row (project order), -1 where unknown."""
    label = torch.as_tensor(extras["label"]).reshape(-1).cpu().long()
    n = len(label)
    expr = _column(extras, "expression", n)
    if expr is not None:
        return expr
    if target == "identity":
        ids = _column(extras, "identity", n)
        if ids is not None and torch.equal(ids, label):
            return torch.full_like(label, -1)
    return label


def subject_labels(extras: Mapping[str, Any]) -> torch.Tensor:
    """The subject (identity) of each row, -1 where unknown."""
    n = len(torch.as_tensor(extras["label"]).reshape(-1))
    ids = _column(extras, "identity", n)
    return torch.full((n,), -1, dtype=torch.long) if ids is None else ids


def identity_names(loader: Any) -> list[str] | None:
    """The identity names of a FaceDataset's cache (class ``i`` of an identity run is the
    ``i``-th), or None when the loader does not say."""
    ds = getattr(loader, "dataset", None)
    meta = getattr(getattr(ds, "info", None), "meta", None)
    if isinstance(meta, dict) and meta.get("identities"):
        return [f"id {x}" for x in meta["identities"]]
    return None


def class_names_for(target: str, num_classes: int, loader: Any = None) -> list[str]:
    """Names of a run's classes: the expressions (a class subset's own, as the loader's cache
    names them: ``fer_models.labels.output_classes``), or the identities of an identity run."""
    from fer_models.labels import class_names

    own = getattr(getattr(loader, "dataset", None), "class_names", None)
    if target == "identity":
        names = identity_names(loader) or []
    elif own is not None and len(own) == num_classes:
        names = list(own)
    else:
        names = class_names(min(num_classes, 8))
    names = list(names[:num_classes])
    return names + [f"class {i}" for i in range(len(names), num_classes)]


@dataclass
class CompareRun:
    """The second run of ``backtrack --compare-run``: its model (eval mode) and what it predicts."""

    run_id: str
    model: torch.nn.Module
    target: str = "expression"
    class_names: Sequence[str] | None = None
    loader: Any = None  # its own test split (None: the explained run's is used for both)
    exclude: frozenset = frozenset()  # rows of the explained run's test split it trained or validated on
    overlap: dict[str, int] | None = None  # counts of the images the two runs' splits share


@dataclass
class RunContext:
    """What a job knows about the explained run besides its model and loader."""

    run_id: str = ""
    target: str = "expression"
    class_names: Sequence[str] | None = None
    au_loss: bool = False
    compare: CompareRun | None = None

    def names(self, num_classes: int) -> list[str]:
        names = list(self.class_names or class_names_for(self.target, num_classes))
        return names + [f"class {i}" for i in range(len(names), num_classes)]
