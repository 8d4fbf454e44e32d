"""Grid parent runs and their trial children: how the grid writes them and finds them again.

:class:`TrialRun` is the child run of one Tune trial (opened in the worker); the parent run
of a grid invocation is created by :func:`create_grid_run` and lists its trials with
:func:`log_grid_artifacts`. The queries (:func:`finished_trials`, :func:`study_runs`, ...)
serve resuming (skip what already FINISHED), λ selection and the report.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from orchestrator.tracking.layout import (
    GRID_ARTIFACT, HASH_TAG, KIND_TAG, PARENT_TAG, TRIALS_ARTIFACT, studies_of,
)
from orchestrator.tracking.provenance import git_info, package_versions
from orchestrator.tracking.store import client, reopen_run, search_all, set_tags

# --------------------------------------------------------------------------------------
# grid parent runs
# --------------------------------------------------------------------------------------


def create_grid_run(experiment_id: str, name: str, tags: dict[str, str] | None = None, uri: str | None = None) -> str:
    """A new parent run for one grid invocation (kind, git and package-version tags + ``tags``)."""
    all_tags = {KIND_TAG: "grid", **git_info(), **package_versions(), **(tags or {})}
    return client(uri).create_run(experiment_id, tags=all_tags, run_name=name).info.run_id


def log_grid_artifacts(run_id: str, grid_yaml: str, trials: list[dict[str, Any]], uri: str | None = None) -> None:
    """(Re)write a parent run's ``grid/grid.yaml`` and ``grid/trials.json`` (hash, name, study of each trial)."""
    with tempfile.TemporaryDirectory() as d:
        for rel, text in ((GRID_ARTIFACT, grid_yaml), (TRIALS_ARTIFACT, json.dumps(trials, indent=1))):
            (Path(d) / rel).parent.mkdir(parents=True, exist_ok=True)
            (Path(d) / rel).write_text(text)
        client(uri).log_artifacts(run_id, d)


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


# --------------------------------------------------------------------------------------
# queries over finished trials
# --------------------------------------------------------------------------------------


def finished_trials(experiment_id: str, uri: str | None = None) -> dict[str, Any]:
    """``config hash -> Run`` of the FINISHED trial runs of an experiment (the latest per hash)."""
    runs = search_all(
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


def study_runs(experiment_id: str, study: str, uri: str | None = None) -> tuple[Any, list[Any]]:
    """``(parent, runs)``: the latest grid invocation that contained ``study``, and the
    FINISHED trial runs (any invocation) of that study's configs. ``(None, [])`` if none."""
    c = client(uri)
    parents = search_all(c, experiment_id, f"tags.`{KIND_TAG}` = 'grid'")
    parents = [p for p in parents if study in studies_of(p.data.tags)]
    if not parents:
        return None, []
    parent = max(parents, key=lambda r: r.info.start_time or 0)
    wanted = {t["hash"] for t in grid_trials(parent.info.run_id, uri) if t.get("study") == study}
    done = finished_trials(experiment_id, uri)
    return parent, [done[h] for h in sorted(wanted) if h in done]


# --------------------------------------------------------------------------------------
# trial child runs
# --------------------------------------------------------------------------------------


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
            old = search_all(
                self.c,
                experiment_id,
                f"tags.`{PARENT_TAG}` = '{parent_id}' and tags.`{HASH_TAG}` = '{h}' "
                f"and attributes.status != 'FINISHED'",
            )
            run_id = old[0].info.run_id if old else None
        if run_id is not None:
            reopen_run(run_id, uri)
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

    def set_tags(self, tags: dict[str, Any]) -> None:
        if tags:
            set_tags(self.run_id, tags, self.uri)

    def log_metrics(self, metrics: dict[str, Any], step: int = 0) -> None:
        """Log the finite real numbers of ``metrics`` (NaN, bools and non-numbers are left out)."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        values = {_metric_key(k): float(v) for k, v in metrics.items() if _is_number(v)}
        items = [Metric(k, v, now, int(step)) for k, v in values.items() if math.isfinite(v)]
        if items:
            self.c.log_batch(self.run_id, metrics=items)

    def log_artifacts(self, local_dir: Path, artifact_path: str | None = None) -> None:
        self.c.log_artifacts(self.run_id, str(local_dir), artifact_path)

    def end(self, status: str) -> None:
        self.c.set_terminated(self.run_id, status)


def _is_number(v: Any) -> bool:
    """A real number: Python/numpy scalars and 0-d arrays or tensors, not bools."""
    if isinstance(v, bool):
        return False
    if isinstance(v, numbers.Real):
        return True
    return getattr(v, "ndim", None) == 0 and hasattr(v, "item")


def _metric_key(k: str) -> str:
    """``k`` with the characters MLflow refuses in a metric name replaced by ``_``."""
    return "".join(ch if ch.isalnum() or ch in "_-./ " else "_" for ch in str(k))
