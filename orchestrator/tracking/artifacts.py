"""The files of a finished trial run, written into a folder that is then logged as artifacts."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path
from typing import Any

import yaml

from orchestrator.tracking.layout import CONFIG_ARTIFACT, HISTORY_ARTIFACT, WEIGHTS_ARTIFACT


def dump_config(cfg: Any) -> str:
    """``cfg`` (a config dataclass) as the YAML of ``config.yaml``."""
    from fer_models.config import to_dict

    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def write_trial_artifacts(result: Any, cfg: Any, out: Path) -> Path:
    """Write a finished trial's artifacts (:mod:`orchestrator.tracking.layout`) into ``out``.

    ``result`` is the :class:`fer_models.train.TrainResult` of ``cfg``: ``config.yaml``,
    ``weights/best.pt``, the test evaluation's matrices and mean maps
    (:func:`fer_models.metrics.save_figures`) and the per-epoch ``history.csv``.
    """
    from fer_models.metrics import save_figures

    out.mkdir(parents=True, exist_ok=True)
    (out / CONFIG_ARTIFACT).write_text(dump_config(cfg))
    (out / WEIGHTS_ARTIFACT).parent.mkdir(exist_ok=True)
    shutil.copyfile(result.best_path, out / WEIGHTS_ARTIFACT)
    save_figures(result.test, out, title=f"{cfg.method} {'w/' if cfg.au else 'w/o'} AU")
    if result.history:
        keys = sorted({k for row in result.history for k in row})
        with open(out / HISTORY_ARTIFACT, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=keys)
            w.writeheader()
            w.writerows(result.history)
    return out
