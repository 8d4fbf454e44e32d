"""MLflow: the store and the run layout every fer-orch job shares.

One module per concern; every public name is re-exported here, so ``from orchestrator
import tracking; tracking.X`` is the way to use them:

- :mod:`~orchestrator.tracking.layout`: tag and artifact names, the layout of a run;
- :mod:`~orchestrator.tracking.store`: the tracking URI (checked once), clients, experiments,
  run status, the ``mlflow ui`` command;
- :mod:`~orchestrator.tracking.provenance`: git commit and package-version tags;
- :mod:`~orchestrator.tracking.read`: the analysis side (explain, probe, report): a grid's
  trial runs, a trained model rebuilt from its run, logging results back;
- :mod:`~orchestrator.tracking.trials`: grid parent runs and trial child runs, written by
  the grid and queried to resume, choose λ and report;
- :mod:`~orchestrator.tracking.artifacts`: the files of a finished trial.
"""

from orchestrator.tracking.artifacts import dump_config, write_trial_artifacts
from orchestrator.tracking.layout import (
    CONFIG_ARTIFACT, GRID_ARTIFACT, HASH_TAG, HISTORY_ARTIFACT, KIND_TAG, OLD_STUDIES_TAG, PARENT_TAG, STUDY_TAG,
    TRIALS_ARTIFACT, WEIGHTS_ARTIFACT, studies_of,
)
from orchestrator.tracking.provenance import git_info, package_versions
from orchestrator.tracking.read import load_run_config, load_trained_model, log_to_run, resolve_runs
from orchestrator.tracking.store import (
    client, default_tracking_uri, end_run, ensure_experiment, reopen_run, resolve_uri, search_all, set_tags,
    ui_command,
)
from orchestrator.tracking.trials import (
    TrialRun, create_grid_run, finished_run_id, finished_trials, grid_trials, log_grid_artifacts, study_runs,
)

__all__ = [
    "CONFIG_ARTIFACT", "GRID_ARTIFACT", "HASH_TAG", "HISTORY_ARTIFACT", "KIND_TAG", "OLD_STUDIES_TAG", "PARENT_TAG",
    "STUDY_TAG", "TRIALS_ARTIFACT", "WEIGHTS_ARTIFACT", "TrialRun", "client", "create_grid_run", "default_tracking_uri",
    "dump_config", "end_run", "ensure_experiment", "finished_run_id", "finished_trials", "git_info", "grid_trials",
    "load_run_config", "load_trained_model", "log_grid_artifacts", "log_to_run", "package_versions", "reopen_run",
    "resolve_runs", "resolve_uri", "search_all", "set_tags", "studies_of", "study_runs", "ui_command",
    "write_trial_artifacts",
]
