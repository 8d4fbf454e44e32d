"""What the MLflow UI shows a researcher who opens a fer-orch experiment.

MLflow 3 opens an experiment in its "GenAI" mode (an Overview of traces, none of which
fer-orch logs) unless the experiment says it holds model training. Two experiment tags
fix that, both read by the MLflow web app itself (mlflow 3.x ``server/js``):

- ``mlflow.experimentKind = custom_model_development``: the experiment opens in "Model
  training" mode on its Runs tab;
- ``mlflow.sharedViewState.<key>``: a saved runs-table view (columns, filter, sort) that
  the URL parameter ``viewStateShareKey=<key>`` applies. Ours lists the trial runs only
  (not the grid parents), sorted by method, which makes the table flat instead of
  collapsed under each parent, with the grid's variables and test metrics as columns.

:func:`runs_url` is the address that lands there directly.
"""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

from orchestrator.tracking.layout import KIND_TAG
from orchestrator.variables import VIEW_TAGS as GRID_VIEW_TAGS

KIND_KEY = "mlflow.experimentKind"
MODEL_TRAINING = "custom_model_development"
VIEW_PREFIX = "mlflow.sharedViewState."
VIEW_KEY = "fer-orch-trials"

#: the grid's variables (tags) and the paper's test metrics
VIEW_TAGS = GRID_VIEW_TAGS
VIEW_METRICS = ("test_cl", "test_cam_cos", "test_att_cos", "test_cam_cos_avg", "test_att_cos_avg")


def runs_view() -> dict[str, Any]:
    """The runs-table state of :data:`VIEW_KEY` (MLflow's own keys and column names)."""
    return {
        "selectedColumns": [f"tags.`{t}`" for t in VIEW_TAGS] + [f"metrics.`{m}`" for m in VIEW_METRICS],
        "searchFilter": f"tags.`{KIND_TAG}` = 'trial'",
        "orderByKey": "tags.`method`",
        "orderByAsc": True,
    }


def mark_model_training(c: Any, experiment_id: str) -> None:
    """Tag ``experiment_id`` so the UI opens it in model-training mode with our runs view."""
    c.set_experiment_tag(experiment_id, KIND_KEY, MODEL_TRAINING)
    c.set_experiment_tag(experiment_id, VIEW_PREFIX + VIEW_KEY, json.dumps(runs_view()))


def runs_url(base: str, experiment_id: str) -> str:
    """``http://host:port/#/experiments/<id>/runs?...``: the trials table, model-training mode."""
    query = urllib.parse.urlencode({"workflowType": "machine_learning", "viewStateShareKey": VIEW_KEY})
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs?{query}"
