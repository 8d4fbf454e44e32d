"""The analysis side: find a grid's trial runs, rebuild a trained model, log results back.

Used by ``fer-orch explain``, ``fer-orch probe`` and ``fer-orch report``; reads the layout
of :mod:`orchestrator.tracking.layout`.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import yaml

from fer_models.errors import FerOrchError
from orchestrator.tracking.layout import CONFIG_ARTIFACT, KIND_TAG, WEIGHTS_ARTIFACT, run_class_names
from orchestrator.tracking.store import client, resolve_uri


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
    """The ``TrainConfig`` a trial run logged as ``config.yaml``."""
    from fer_models.config import TrainConfig, from_dict

    c = client(uri)
    with tempfile.TemporaryDirectory() as d:
        path = c.download_artifacts(run_id, CONFIG_ARTIFACT, d)
        return from_dict(TrainConfig, yaml.safe_load(Path(path).read_text()))


def load_trained_model(run_id: str, uri: str | None = None, device: str = "cpu"):
    """Rebuild a trial's model from its logged config and best weights: ``(model, cfg)``;
    ``model.class_names`` names its outputs where a class subset renamed them (else None)."""
    from fer_models.methods import build_model
    from fer_models.torch_utils import load_state_file

    cfg = load_run_config(run_id, uri)
    c = client(uri)
    with tempfile.TemporaryDirectory() as d:
        path = c.download_artifacts(run_id, WEIGHTS_ARTIFACT, d)
        state = load_state_file(path, "cpu", what=f"run {run_id}'s logged weights",  # moved to device below
                                fix="train the run again (its artifact is damaged)")
    # the class count the run trained with (identities, 8-class CK+ ...); runs before it was logged: 7
    k = c.get_run(run_id).data.params.get("built.num_classes", "none")
    model = build_model(cfg, int(k) if k.isdigit() else None)
    model.class_names = run_class_names(c.get_run(run_id).data.params)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise FerOrchError(
            f"the weights of run {run_id} do not fit the model its config.yaml builds ({str(e).splitlines()[0]}); "
            f"was the run trained by another fer-orch version?"
        ) from None
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
