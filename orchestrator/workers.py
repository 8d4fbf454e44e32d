"""``Resources.workers_per_trial``: how many data-parallel workers a trial gets
(``orchestrator.ddp`` runs them), read from ``--workers-per-trial`` or a grid YAML."""

from __future__ import annotations

from typing import Any

from fer_models.errors import ConfigError


def workers_for(table: dict[str, int], method: str, dataset: str) -> int:
    """``Resources.workers_per_trial`` of a trial: ``"<method>/<dataset>"``, else ``"<dataset>"``,
    else ``"*"``, else 1; always 1 for a method that borrows another's training (Grad-CAM++,
    LayerCAM: they mostly only evaluate Grad-CAM's network)."""
    from fer_models.methods import trains_as

    if trains_as(method) != method.lower():
        return 1
    return int(table.get(f"{method}/{dataset}", table.get(dataset, table.get("*", 1))))


def check_workers_table(table: dict[str, Any]) -> None:
    """``workers_per_trial``: whole numbers >= 1 under ``"*"``, a dataset or ``method/dataset``
    (names of the registries: a misspelt key would silently leave its trials on one worker)."""
    from fer_models.registry import DATASETS, METHODS

    for key, n in table.items():
        method, _, dataset = key.rpartition("/")
        known = key == "*" or (dataset.lower() in DATASETS.names() and (not method or method.lower() in METHODS.names()))
        if not known or not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ConfigError(f"--workers-per-trial {key}={n} is not usable: give a whole number >= 1 for '*' (every "
                              f"trial), a dataset or METHOD/DATASET (e.g. affectnet=4 or acol/affectnet=2)")


def parse_workers(text: str | None) -> dict[str, int] | None:
    """``--workers-per-trial``: ``"2"`` (every trial) -> ``{"*": 2}``; ``"affectnet=4,rafdb/acol=2"``
    -> per dataset or ``method/dataset`` (``Resources.workers_per_trial``)."""
    if text is None:
        return None
    items = [x.strip() for x in str(text).split(",") if x.strip()]
    out: dict[str, int] = {}
    for item in items:
        name, sep, n = item.rpartition("=")
        try:
            out[name.strip() if sep else "*"] = int(n)
        except ValueError:
            raise ConfigError(f"--workers-per-trial takes N or KEY=N[,KEY=N] (KEY: a dataset or method/dataset), "
                              f"got '{item}'") from None
    return out
