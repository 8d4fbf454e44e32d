"""MLflow layout helpers: experiments, trial runs, artifacts, UI command, errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from fer_models.config import TrainConfig
from fer_models.errors import FerOrchError
from orchestrator import tracking


@pytest.fixture
def uri(tmp_path):
    return f"sqlite:///{tmp_path / 'db' / 'mlflow.db'}"


@dataclass
class Result:
    best_path: Path
    best_epoch: int = 2
    test: dict = field(default_factory=dict)
    history: Any = None
    confusion: Any = None
    cosine_matrix: Any = None
    mean_maps: Any = None


def test_experiment_artifacts_live_beside_the_sqlite_db(uri, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a Tune worker's cwd is its trial folder: must not matter
    exp = tracking.ensure_experiment("e1", uri)
    assert tracking.ensure_experiment("e1", uri) == exp  # idempotent
    loc = tracking.client(uri).get_experiment(exp).artifact_location
    assert loc.startswith("file://") and str(tmp_path / "db" / "mlartifacts" / "e1") in loc


def test_trial_artifacts_and_weights_round_trip(uri, tmp_path):
    exp = tracking.ensure_experiment("e2", uri)
    parent = tracking.start_grid_run(exp, "g", "a: 1\n", [{"hash": "h1", "name": "n", "study": "grid"}],
                                     {"fer_orch.studies": "grid"}, uri)
    best = tmp_path / "best.pt"
    torch.save({"fc.weight": torch.ones(7, 3)}, best)
    k = 7
    res = Result(
        best_path=best,
        test={"cl": 50.0},
        history=[{"epoch": 1.0, "val_cl": 40.0}, {"epoch": 2.0, "val_cl": 45.0}],
        confusion=np.arange(k * k).reshape(k, k),
        cosine_matrix=torch.rand(k, 6),  # classes x (layers 1-5, CAM)
        mean_maps={"cam": np.random.rand(k, 6, 6), "att": np.random.rand(k, 6, 6), "bad": "x"},
    )
    out = tracking.write_trial_artifacts(res, TrainConfig(method="acol"), tmp_path / "art")
    names = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert {"config.yaml", "weights/best.pt", "matrices/confusion.csv", "matrices/confusion.png",
            "matrices/cosine.csv", "matrices/cosine.png", "maps/mean_cam.png", "maps/mean_att.png",
            "history.csv"} == names
    csv = (out / "matrices" / "confusion.csv").read_text().splitlines()
    assert csv[0].split(",")[1:] == ["anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral"]
    assert csv[2].split(",")[1:3] == ["7", "8"]  # row "disgust" of arange(49)
    cos_header = (out / "matrices" / "cosine.csv").read_text().splitlines()[0]
    assert cos_header.split(",")[1:] == ["layer1", "layer2", "layer3", "layer4", "layer5", "cam"]
    run = tracking.TrialRun(uri, exp, parent, "t", {tracking.HASH_TAG: "h1", "method": "acol"})
    run.log_params({"method": "acol", "data.dataset": "x"})
    run.log_metrics({"test_cl": 50.0, "nan": float("nan"), "flag": True, "t0": torch.tensor(3.0)})
    run.log_artifacts(out)
    run.end("FINISHED")
    c = tracking.client(uri)
    r = c.get_run(run.run_id)
    assert r.data.tags["mlflow.parentRunId"] == parent and r.data.tags[tracking.KIND_TAG] == "trial"
    assert r.data.metrics == {"test_cl": 50.0, "t0": 3.0}  # NaN and bools are not metrics
    assert tracking.resolve_runs(parent, uri) == [run.run_id]
    assert tracking.load_run_config(run.run_id, uri).method == "acol"
    state = torch.load(c.download_artifacts(run.run_id, tracking.WEIGHTS_ARTIFACT, str(tmp_path / "dl")),
                       weights_only=True)
    assert torch.equal(state["fc.weight"], torch.ones(7, 3))
    assert tracking.grid_trials(parent, uri) == [{"hash": "h1", "name": "n", "study": "grid"}]
    assert tracking.finished_run_id(exp, "h1", uri) == run.run_id


def test_a_retry_reopens_its_unfinished_run(uri):
    """One trial = one run: a retry without checkpoint finds the run by parent + hash."""
    exp = tracking.ensure_experiment("e3", uri)
    parent = tracking.start_grid_run(exp, "g", "", [], None, uri)
    first = tracking.TrialRun(uri, exp, parent, "t", {tracking.HASH_TAG: "abc"})
    first.log_params({"a": 1})
    first.log_metrics({"val_cl": 1.0}, step=1)
    first.end("FAILED")  # the worker died
    again = tracking.TrialRun(uri, exp, parent, "t", {tracking.HASH_TAG: "abc"})
    assert again.run_id == first.run_id and again.resumed
    again.log_params({"a": 1})  # params are not logged twice (MLflow would refuse a change)
    again.log_metrics({"val_cl": 2.0}, step=2)
    again.end("FINISHED")
    other = tracking.TrialRun(uri, exp, parent, "t2", {tracking.HASH_TAG: "zzz"})
    assert other.run_id != first.run_id and not other.resumed
    c = tracking.client(uri)
    assert [m.value for m in c.get_metric_history(first.run_id, "val_cl")] == [1.0, 2.0]
    done = tracking.finished_trials(exp, uri)
    assert set(done) == {"abc"} and done["abc"].info.run_id == first.run_id


def test_study_runs_picks_the_latest_invocation(uri):
    exp = tracking.ensure_experiment("e4", uri)
    old = tracking.start_grid_run(exp, "old", "", [{"hash": "a", "study": "lambda", "name": "a"}],
                                  {"fer_orch.studies": "lambda"}, uri)
    run = tracking.TrialRun(uri, exp, old, "a", {tracking.HASH_TAG: "a"})
    run.end("FINISHED")
    new = tracking.start_grid_run(exp, "new", "", [{"hash": "a", "study": "lambda", "name": "a"},
                                                  {"hash": "b", "study": "lambda", "name": "b"}],
                                  {"fer_orch.studies": "lambda,grid"}, uri)
    parent, runs = tracking.study_runs(exp, "lambda", uri)
    assert parent.info.run_id == new
    assert [r.info.run_id for r in runs] == [run.run_id]  # b never finished; a reused from the old one
    assert tracking.study_runs(exp, "layers", uri) == (None, [])


def test_store_errors_are_one_sentence(tmp_path):
    with pytest.raises(FerOrchError, match="unreachable.*--tracking-uri"):
        tracking.resolve_uri("http://127.0.0.1:9")
    with pytest.raises(FerOrchError, match="file store"):
        tracking.resolve_uri(str(tmp_path / "mlruns"))


def test_ui_command_serves_the_same_store(uri):
    cmd = tracking.ui_command(uri, host="0.0.0.0", port=5123)
    assert cmd[1:4] == ["-m", "mlflow", "ui"]
    assert cmd[cmd.index("--backend-store-uri") + 1] == uri
    assert cmd[cmd.index("--host") + 1] == "0.0.0.0" and cmd[cmd.index("--port") + 1] == "5123"


def test_provenance_tags():
    g = tracking.git_info()
    assert set(g) == {"git_commit", "git_dirty"} and g["git_dirty"] in {"true", "false", "unknown"}
    v = tracking.package_versions()
    assert v["versions.torch"] == torch.__version__.split("+")[0] or v["versions.torch"].startswith(torch.__version__[:3])
