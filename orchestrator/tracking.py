"""MLflow: the store, and the run layout every fer-orch job shares.

Layout of a trial run (a nested child of its grid's parent run):

- tags ``fer_orch.kind`` = ``trial`` (the parent: ``grid``), ``method``, ``dataset``,
  ``au``, ``lambda``, ``layers``, ``seed``, ``git_commit``; ``mlflow.parentRunId``;
- artifact ``config.yaml``: ``fer_models.config.to_dict(TrainConfig)``;
- artifact ``weights/best.pt``: the selected checkpoint, a ``state_dict`` only.

Analysis jobs (explain, probe) read that layout through :func:`load_trained_model`
and log back under ``explain/<job>/`` or ``probe/<job>/`` of the same run.
"""

from __future__ import annotations

import os
import socket
import tempfile
import urllib.parse
from pathlib import Path
from typing import Any

import yaml

from fer_models import paths
from fer_models.errors import FerOrchError

KIND_TAG = "fer_orch.kind"
CONFIG_ARTIFACT = "config.yaml"
WEIGHTS_ARTIFACT = "weights/best.pt"


def default_tracking_uri() -> str:
    return f"sqlite:///{paths.home() / 'mlflow.db'}"


def resolve_uri(uri: str | None) -> str:
    """The tracking URI to use, checked before any long work starts.

    SQLite (the offline default) needs its folder to exist; an HTTP server must answer.
    """
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri()
    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme == "sqlite":
        # sqlite:///relative.db or sqlite:////absolute/path.db
        Path(uri[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    elif parsed.scheme in ("http", "https"):
        host, port = parsed.hostname, parsed.port or (443 if parsed.scheme == "https" else 80)
        try:
            socket.create_connection((host, port), timeout=3).close()
        except OSError:
            raise FerOrchError(
                f"MLflow tracking server {uri} is unreachable; start it (e.g. `mlflow server "
                f"--host 0.0.0.0 --port {port}` on the head node) or pass --tracking-uri"
            ) from None
    elif parsed.scheme in ("", "file"):
        raise FerOrchError(
            f"MLflow tracking URI '{uri}' is a file store, which MLflow refuses; "
            f"use sqlite:///{Path(uri).absolute()}/mlflow.db or an http:// server"
        )
    return uri


def client(uri: str | None = None):
    import mlflow

    return mlflow.MlflowClient(tracking_uri=resolve_uri(uri))


def resolve_runs(run_id: str, uri: str | None = None) -> list[str]:
    """A trial run id -> [it]; a grid's parent run id -> the ids of all its trial children."""
    c = client(uri)
    try:
        run = c.get_run(run_id)
    except Exception:
        raise FerOrchError(f"no MLflow run '{run_id}' in {resolve_uri(uri)}") from None
    if run.data.tags.get(KIND_TAG) != "grid":
        return [run_id]
    children = c.search_runs(
        [run.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{run_id}'",
        max_results=10000,
    )
    return [r.info.run_id for r in children if r.data.tags.get(KIND_TAG) == "trial"]


def load_run_config(run_id: str, uri: str | None = None):
    from fer_models.config import TrainConfig, from_dict

    c = client(uri)
    with tempfile.TemporaryDirectory() as d:
        path = c.download_artifacts(run_id, CONFIG_ARTIFACT, d)
        return from_dict(TrainConfig, yaml.safe_load(Path(path).read_text()))


def load_trained_model(run_id: str, uri: str | None = None, device: str = "cpu"):
    """Rebuild a trial's model from its logged config and best weights: ``(model, cfg)``."""
    import torch

    from fer_models.methods import build_model

    cfg = load_run_config(run_id, uri)
    c = client(uri)
    with tempfile.TemporaryDirectory() as d:
        path = c.download_artifacts(run_id, WEIGHTS_ARTIFACT, d)
        state = torch.load(path, map_location=device, weights_only=True)
    model = build_model(cfg)
    model.load_state_dict(state)
    return model.to(device).eval(), cfg


def log_to_run(
    run_id: str,
    artifact_dir: Path | None = None,
    artifact_path: str | None = None,
    metrics: dict[str, float] | None = None,
    uri: str | None = None,
) -> None:
    """Log a folder of files and/or metrics to an existing (possibly finished) run."""
    c = client(uri)
    if artifact_dir is not None:
        c.log_artifacts(run_id, str(artifact_dir), artifact_path)
    for k, v in (metrics or {}).items():
        c.log_metric(run_id, k, float(v))


def dump_config(cfg: Any) -> str:
    from fer_models.config import to_dict

    return yaml.safe_dump(to_dict(cfg), sort_keys=False)
