"""MLflow: the store, and the run layout every fer-orch job shares.

Layout of a trial run (a nested child of its grid's parent run):

- tags ``fer_orch.kind`` = ``trial`` (the parent: ``grid``), ``method``, ``dataset``,
  ``au``, ``lambda``, ``layers``, ``seed``, ``git_commit``; ``mlflow.parentRunId``;
- artifact ``config.yaml``: ``fer_models.config.to_dict(TrainConfig)``;
- artifact ``weights/best.pt``: the selected checkpoint, a ``state_dict`` only.

Analysis jobs (explain, probe) read that layout through :func:`load_trained_model`
and log back under ``explain/<job>/`` or ``probe/<job>/`` of the same run.

Written by the grid (:mod:`orchestrator.grid`) in addition:

- trial tags ``fer_orch.config_hash`` (what the trial learns, :func:`orchestrator.config.config_hash`),
  ``fer_orch.study`` (``grid`` | ``lambda`` | ``layers``), ``git_dirty``, ``versions.<package>``;
- trial params: the flattened config (``data.dataset``, ``lam``, ...);
- trial metrics: every number ``train`` hands to ``on_epoch`` (step = epoch), then
  ``test_<k>`` for the test metrics (``cl``, ``cam_cos``, ``att_cos``, ``gt_cam_cos``,
  ``gt_att_cos``), ``best_val_<k>`` (validation metrics of the selected epoch),
  ``best_epoch`` and ``train_seconds``;
- trial artifacts ``matrices/{confusion,cosine}.{csv,png}``, ``maps/mean_<kind>.png``
  (per-class mean CAM / attention / AU maps, paper 002 Figs. 6-9), ``history.csv``;
- the parent (grid) run: tags ``fer_orch.studies``, ``lambda``, ``lambda_source``; artifacts
  ``grid/grid.yaml`` (the resolved GridConfig) and ``grid/trials.json`` (every trial of the
  invocation: hash, name, study; finished trials reused from earlier invocations included),
  and ``report/`` once ``fer-orch report`` ran.

One trial is one MLflow run, also across retries and ``--resume``: the run id travels in
the trial's Tune checkpoint, and a retry without checkpoint reopens the unfinished run of
the same parent and config hash.
"""

from __future__ import annotations

import json
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
HASH_TAG = "fer_orch.config_hash"
STUDY_TAG = "fer_orch.study"
PARENT_TAG = "mlflow.parentRunId"
TRIALS_ARTIFACT = "grid/trials.json"
GRID_ARTIFACT = "grid/grid.yaml"


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


# --------------------------------------------------------------------------------------
# Experiments, provenance, grid parents and trial children (used by orchestrator.grid)
# --------------------------------------------------------------------------------------


def ensure_experiment(name: str, uri: str | None = None) -> str:
    """The id of experiment ``name``, created if missing.

    With a SQLite store the artifacts go to an absolute folder beside the database, so a
    Tune worker (whose working directory is its trial folder) writes them to the same
    place; with an HTTP server the server decides (``--serve-artifacts`` proxies them).
    """
    uri = resolve_uri(uri)
    c = client(uri)
    exp = c.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            c.restore_experiment(exp.experiment_id)
        return exp.experiment_id
    location = None
    if uri.startswith("sqlite:///"):
        location = (Path(uri[len("sqlite:///") :]).resolve().parent / "mlartifacts" / name).as_uri()
    try:
        return c.create_experiment(name, artifact_location=location)
    except Exception:  # created concurrently by another process
        exp = c.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


def git_info() -> dict[str, str]:
    """``{"git_commit": sha or "unknown", "git_dirty": "true"|"false"|"unknown"}`` of this checkout."""
    import subprocess

    repo = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=repo, capture_output=True, text=True, timeout=10, check=True,
        ).stdout
        return {"git_commit": sha, "git_dirty": str(bool(status.strip())).lower()}
    except (OSError, subprocess.SubprocessError):
        return {"git_commit": "unknown", "git_dirty": "unknown"}


_VERSIONED = ("fer-orch", "torch", "torchvision", "timm", "numpy", "ray", "mlflow", "grad-cam", "captum")


def package_versions() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for name in _VERSIONED:
        try:
            out[f"versions.{name}"] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[f"versions.{name}"] = "absent"
    return out


def start_grid_run(
    experiment_id: str,
    name: str,
    grid_yaml: str,
    trials: list[dict[str, Any]],
    tags: dict[str, str] | None = None,
    uri: str | None = None,
    run_id: str | None = None,
) -> str:
    """Create (or reopen, when ``run_id`` is given) the parent run of one grid invocation."""
    c = client(uri)
    if run_id is not None:
        c.update_run(run_id, status="RUNNING")
    else:
        all_tags = {KIND_TAG: "grid", **git_info(), **package_versions(), **(tags or {})}
        run_id = c.create_run(experiment_id, tags=all_tags, run_name=name).info.run_id
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "grid").mkdir()
        (Path(d) / "grid" / "grid.yaml").write_text(grid_yaml)
        (Path(d) / "grid" / "trials.json").write_text(json.dumps(trials, indent=1))
        c.log_artifacts(run_id, d)
    return run_id


def set_tags(run_id: str, tags: dict[str, Any], uri: str | None = None) -> None:
    from mlflow.entities import RunTag

    client(uri).log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])


def end_run(run_id: str, status: str = "FINISHED", uri: str | None = None) -> None:
    client(uri).set_terminated(run_id, status)


def finished_trials(experiment_id: str, uri: str | None = None) -> dict[str, Any]:
    """``config hash -> Run`` of the FINISHED trial runs of an experiment (the latest per hash)."""
    runs = _search_all(
        client(uri),
        experiment_id,
        f"tags.`{KIND_TAG}` = 'trial' and attributes.status = 'FINISHED'",
    )
    out: dict[str, Any] = {}
    for r in sorted(runs, key=lambda r: r.info.start_time or 0):
        h = r.data.tags.get(HASH_TAG)
        if h:
            out[h] = r
    return out


def finished_run_id(experiment_id: str, config_hash: str, uri: str | None = None) -> str | None:
    """The id of a FINISHED trial run with this config hash, if any."""
    runs = client(uri).search_runs(
        [experiment_id],
        filter_string=f"tags.`{HASH_TAG}` = '{config_hash}' and attributes.status = 'FINISHED'",
        max_results=1,
    )
    return runs[0].info.run_id if runs else None


def _search_all(c, experiment_id: str, filter_string: str) -> list:
    runs, token = [], None
    while True:
        page = c.search_runs([experiment_id], filter_string=filter_string, max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def grid_trials(parent_run_id: str, uri: str | None = None) -> list[dict[str, Any]]:
    """The ``grid/trials.json`` list of a parent run ([] when it has none)."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    c = client(uri)
    with tempfile.TemporaryDirectory() as d:
        try:
            path = c.download_artifacts(parent_run_id, TRIALS_ARTIFACT, d)
        except Exception:
            return []
        return json.loads(Path(path).read_text())


def study_runs(experiment_id: str, study: str, uri: str | None = None) -> tuple[Any, list[Any]]:
    """``(parent, runs)``: the latest grid invocation that contained ``study``, and the
    FINISHED trial runs (any invocation) of that study's configs. ``(None, [])`` if none."""
    c = client(uri)
    parents = _search_all(c, experiment_id, f"tags.`{KIND_TAG}` = 'grid'")
    parents = [p for p in parents if study in p.data.tags.get("fer_orch.studies", "").split(",")]
    if not parents:
        return None, []
    parent = max(parents, key=lambda r: r.info.start_time or 0)
    wanted = {t["hash"] for t in grid_trials(parent.info.run_id, uri) if t.get("study") == study}
    done = finished_trials(experiment_id, uri)
    return parent, [done[h] for h in sorted(wanted) if h in done]


class TrialRun:
    """The MLflow child run of one Tune trial, opened in the worker.

    Uses ``MlflowClient`` with explicit run ids rather than the fluent API (global
    state, one active run per process), so a reused Tune actor cannot log to the
    previous trial's run.
    """

    def __init__(self, uri: str, experiment_id: str, parent_id: str, name: str, tags: dict[str, str],
                 run_id: str | None = None):
        self.uri = uri
        self.c = client(uri)
        if run_id is None:  # a retry with no checkpoint yet: reopen the unfinished run
            h = tags.get(HASH_TAG)
            old = _search_all(
                self.c,
                experiment_id,
                f"tags.`{PARENT_TAG}` = '{parent_id}' and tags.`{HASH_TAG}` = '{h}' "
                f"and attributes.status != 'FINISHED'",
            )
            run_id = old[0].info.run_id if old else None
        if run_id is not None:
            self.c.update_run(run_id, status="RUNNING")
            self.run_id, self.resumed = run_id, True
        else:
            all_tags = {KIND_TAG: "trial", PARENT_TAG: parent_id, **package_versions(), **tags}
            self.run_id = self.c.create_run(experiment_id, tags=all_tags, run_name=name).info.run_id
            self.resumed = False

    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        if self.resumed:  # params are immutable and were logged on the first attempt
            return
        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(items), 100):
            self.c.log_batch(self.run_id, params=items[i : i + 100])

    def log_metrics(self, metrics: dict[str, Any], step: int = 0) -> None:
        import math
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [
            Metric(_metric_key(k), float(v.item() if hasattr(v, 'item') else v), now, int(step))
            for k, v in metrics.items()
            if _is_number(v) and math.isfinite(float(v.item() if hasattr(v, 'item') else v))
        ]
        if items:
            self.c.log_batch(self.run_id, metrics=items)

    def log_artifacts(self, local_dir: Path, artifact_path: str | None = None) -> None:
        self.c.log_artifacts(self.run_id, str(local_dir), artifact_path)

    def end(self, status: str) -> None:
        self.c.set_terminated(self.run_id, status)


def _is_number(v: Any) -> bool:
    """A real number: Python/numpy scalars and 0-d arrays or tensors, not bools."""
    import numbers

    if isinstance(v, bool):
        return False
    if isinstance(v, numbers.Real):
        return True
    return getattr(v, "ndim", None) == 0 and hasattr(v, "item")


def _metric_key(k: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "_-./ " else "_" for ch in str(k))


def write_trial_artifacts(result: Any, cfg: Any, out: Path) -> Path:
    """Write a finished trial's artifacts (layout in the module docstring) into ``out``.

    ``result`` is a :class:`fer_models.train.TrainResult`; fields it lacks are skipped.
    """
    import shutil

    import numpy as np

    out.mkdir(parents=True, exist_ok=True)
    (out / CONFIG_ARTIFACT).write_text(dump_config(cfg))
    best = getattr(result, "best_path", None)
    if best and Path(best).is_file():
        (out / "weights").mkdir(exist_ok=True)
        shutil.copyfile(best, out / WEIGHTS_ARTIFACT)
    if getattr(result, "confusion", None) is not None:
        from fer_models.metrics import EvalResult, save_figures

        evaluated = EvalResult(result.test, np.asarray(result.confusion), getattr(result, "cosine_matrix", None),
                               getattr(result, "mean_maps", None) or {})
        save_figures(evaluated, out, title=f"{cfg.method} {'w/' if cfg.au else 'w/o'} AU")
    hist = getattr(result, "history", None)
    rows = _history_rows(hist)
    if rows:
        import csv

        keys = sorted({k for r in rows for k in r})
        with open(out / "history.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=keys)
            w.writeheader()
            w.writerows(rows)
    return out


def _history_rows(hist: Any) -> list[dict[str, Any]]:
    """History as a list of per-epoch dicts (accepts a list of dicts or a dict of lists)."""
    if not hist:
        return []
    if isinstance(hist, dict):
        n = max((len(v) for v in hist.values() if isinstance(v, (list, tuple))), default=0)
        return [{k: v[i] for k, v in hist.items() if isinstance(v, (list, tuple)) and i < len(v)} for i in range(n)]
    return [dict(r) for r in hist if isinstance(r, dict)]


def ui_command(uri: str | None = None, host: str = "127.0.0.1", port: int = 5000) -> list[str]:
    """The ``mlflow ui`` command line serving the same store the grid writes to."""
    import sys

    uri = resolve_uri(uri)
    if uri.startswith(("http://", "https://")):
        raise FerOrchError(f"the tracking store {uri} is already a server; open it in a browser instead of `fer-orch ui`")
    return [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", host, "--port", str(port)]
