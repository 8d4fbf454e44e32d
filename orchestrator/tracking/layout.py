"""The MLflow run layout every fer-orch job shares: the names of its tags and artifacts.

Layout of a trial run (a nested child of its grid's parent run):

- tags ``fer_orch.kind`` = ``trial`` (the parent: ``grid``), ``method``, ``dataset``,
  ``au``, ``lambda``, ``layers``, ``seed``, ``git_commit``; ``mlflow.parentRunId``;
- artifact ``config.yaml``: ``fer_models.config.to_dict(TrainConfig)``;
- artifact ``weights/best.pt``: the selected checkpoint, a ``state_dict`` only.

Analysis jobs (explain, probe) read that layout through
:func:`orchestrator.tracking.load_trained_model` and log back under ``explain/<job>/`` or
``probe/<job>/`` of the same run.

Written by the grid (:mod:`orchestrator.tuning`, :mod:`orchestrator.trial`) in addition:

- trial tags ``fer_orch.config_hash`` (what the trial learns, :func:`orchestrator.config.config_hash`),
  ``fer_orch.study`` (``grid`` | ``lambda`` | ``layers``), ``git_dirty``, ``versions.<package>``;
- trial params: the flattened config (``data.dataset``, ``lam``, ...), and what was built:
  ``built.num_classes``, ``built.backbone``, ``built.weights``, and ``built.class_names`` (the
  outputs' names, comma-separated) only where a class subset renumbered the labels
  (:func:`class_names_param`);
- trial metrics: every number ``train`` hands to ``on_epoch`` (step = epoch), then
  ``test_<k>`` for the test metrics (``cl``, ``cam_cos``, ``att_cos``, ``gt_cam_cos``,
  ``gt_att_cos``, ``att_cos_1``..``att_cos_5``), ``best_val_<k>`` (validation metrics of the
  selected epoch), ``best_epoch`` and ``train_seconds``;
- a trial restarted from its Tune checkpoint (its node was lost): metric ``resumed_from_epoch``
  (step = value = the epoch it took over after); tags ``fer_orch.node`` and ``fer_orch.node_ip``:
  the Ray node of the latest attempt;
- a trial that evaluated weights another method trained for the same config (Grad-CAM++ and
  LayerCAM borrow Grad-CAM's network, :mod:`orchestrator.trial`): tag ``fer_orch.trained_by``
  (that method); its per-epoch metrics are the publisher's, less ``val_cam_cos``;
- trial artifacts ``matrices/{confusion,cosine}.{csv,png}``, ``maps/mean_<kind>.png``
  (per-class mean CAM / attention maps, paper 002 Figs. 6-9), ``history.csv``;
- the parent (grid) run: tags ``fer_orch.study`` (the studies it ran, comma-separated, e.g.
  ``lambda,grid``; runs written before this scheme carry them in ``fer_orch.studies``, which
  the readers still accept), ``fer_orch.invocation``, ``fer_orch.preset``, ``lambda``,
  ``lambda_source``; metrics ``wall_seconds``, ``trials_trained``, ``trials_skipped``;
  artifacts ``grid/grid.yaml`` (the resolved GridConfig) and ``grid/trials.json`` (every
  trial of the invocation: hash, name, study; finished trials reused from earlier
  invocations included), and ``report/`` once ``fer-orch report`` ran.

One trial is one MLflow run, also across retries and ``--resume``: the run id travels in
the trial's Tune checkpoint, and a retry without checkpoint reopens the unfinished run of
the same parent and config hash.
"""

from __future__ import annotations

KIND_TAG = "fer_orch.kind"
HASH_TAG = "fer_orch.config_hash"
STUDY_TAG = "fer_orch.study"  # trial: its study; grid parent: its studies, comma-separated
OLD_STUDIES_TAG = "fer_orch.studies"  # a grid parent's studies before STUDY_TAG was used for both
PARENT_TAG = "mlflow.parentRunId"
CONFIG_ARTIFACT = "config.yaml"
WEIGHTS_ARTIFACT = "weights/best.pt"
HISTORY_ARTIFACT = "history.csv"
GRID_ARTIFACT = "grid/grid.yaml"
TRIALS_ARTIFACT = "grid/trials.json"


def studies_of(parent_tags: dict[str, str]) -> list[str]:
    """The studies a grid parent run ran, from its tags (either scheme)."""
    text = parent_tags.get(OLD_STUDIES_TAG) or parent_tags.get(STUDY_TAG, "")
    return [s for s in text.split(",") if s]


CLASS_NAMES_PARAM = "built.class_names"


def class_names_param(result) -> dict[str, str]:
    """``{"built.class_names": "happiness,sadness,neutral"}`` for a run whose outputs are a
    class subset (``fer_models.labels.output_classes``); empty where the outputs are the
    project's first K classes, so runs without a subset keep the params they always had."""
    from fer_models.labels import class_names

    names = list(getattr(result, "class_names", None) or [])
    k = int(getattr(result, "num_classes", 0) or 0)
    if not names or names == class_names(k):
        return {}
    return {CLASS_NAMES_PARAM: ",".join(names)}


def run_class_names(params: dict[str, str]) -> list[str] | None:
    """The output names a run logged (:func:`class_names_param`); None: the project's first K."""
    value = params.get(CLASS_NAMES_PARAM)
    return value.split(",") if value else None
