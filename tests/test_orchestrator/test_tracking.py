"""MLflow layout helpers: experiments, trial runs, artifacts, UI command, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fer_models.config import TrainConfig
from fer_models.errors import FerOrchError
from fer_models.metrics import EvalResult
from fer_models.train import TrainResult
from orchestrator import tracking


@pytest.fixture
def uri(tmp_path):
    return f"sqlite:///{tmp_path / 'db' / 'mlflow.db'}"


def test_experiment_artifacts_live_beside_the_sqlite_db(uri, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a Tune worker's cwd is its trial folder: must not matter
    exp = tracking.ensure_experiment("e1", uri)
    assert tracking.ensure_experiment("e1", uri) == exp  # idempotent
    loc = tracking.client(uri).get_experiment(exp).artifact_location
    assert loc.startswith("file://") and str(tmp_path / "db" / "mlartifacts" / "e1") in loc


def test_trial_artifacts_and_weights_round_trip(uri, tmp_path):
    exp = tracking.ensure_experiment("e2", uri)
    parent = tracking.create_grid_run(exp, "g", {tracking.STUDY_TAG: "grid"}, uri)
    tracking.log_grid_artifacts(parent, "a: 1\n", [{"hash": "h1", "name": "n", "study": "grid"}], uri)
    best = tmp_path / "best.pt"
    torch.save({"fc.weight": torch.ones(7, 3)}, best)
    k = 7
    test = EvalResult(
        metrics={"cl": 50.0},
        confusion=np.arange(k * k).reshape(k, k),
        cosine_matrix=np.random.rand(k, 6),  # classes x (layers 1-5, CAM)
        mean_maps={"cam": np.random.rand(k, 6, 6), "att": np.random.rand(k, 6, 6)},
    )
    res = TrainResult(best_path=best, best_epoch=2, best_val={"cl": 45.0}, test=test,
                      history=[{"epoch": 1.0, "val_cl": 40.0}, {"epoch": 2.0, "val_cl": 45.0}])
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
    assert c.download_artifacts(parent, tracking.GRID_ARTIFACT, str(tmp_path / "dl2")).endswith("grid.yaml")
    assert (out / "history.csv").read_text().splitlines()[1:] == ["1.0,40.0", "2.0,45.0"]
    assert tracking.finished_run_id(exp, "h1", uri) == run.run_id


def test_a_retry_reopens_its_unfinished_run(uri):
    """One trial = one run: a retry without checkpoint finds the run by parent + hash."""
    exp = tracking.ensure_experiment("e3", uri)
    parent = tracking.create_grid_run(exp, "g", None, uri)
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


def _grid_run(exp, name, tags, trials, uri):
    run_id = tracking.create_grid_run(exp, name, tags, uri)
    tracking.log_grid_artifacts(run_id, "", trials, uri)
    return run_id


def test_study_runs_picks_the_latest_invocation(uri):
    exp = tracking.ensure_experiment("e4", uri)
    old = _grid_run(exp, "old", {tracking.STUDY_TAG: "lambda"}, [{"hash": "a", "study": "lambda", "name": "a"}], uri)
    run = tracking.TrialRun(uri, exp, old, "a", {tracking.HASH_TAG: "a"})
    run.end("FINISHED")
    new = _grid_run(exp, "new", {tracking.STUDY_TAG: "lambda,grid"},
                    [{"hash": "a", "study": "lambda", "name": "a"}, {"hash": "b", "study": "lambda", "name": "b"}], uri)
    parent, runs = tracking.study_runs(exp, "lambda", uri)
    assert parent.info.run_id == new
    assert [r.info.run_id for r in runs] == [run.run_id]  # b never finished; a reused from the old one
    assert tracking.study_runs(exp, "layers", uri) == (None, [])


def test_parents_written_before_the_one_study_tag_are_still_read(uri):
    """Older grid parents carried ``fer_orch.studies`` = "lambda,grid" and ``fer_orch.study`` = "lambda+grid"."""
    exp = tracking.ensure_experiment("e5", uri)
    old = _grid_run(exp, "old", {tracking.STUDY_TAG: "lambda+grid", tracking.OLD_STUDIES_TAG: "lambda,grid"},
                    [{"hash": "a", "study": "grid", "name": "a"}], uri)
    assert tracking.study_runs(exp, "grid", uri)[0].info.run_id == old
    assert tracking.studies_of({tracking.STUDY_TAG: "layers,grid"}) == ["layers", "grid"]


def test_client_resolves_its_uri_once(monkeypatch):
    """An HTTP store is checked (a socket opened) the first time only; the client is reused."""
    from orchestrator.tracking import store

    calls = []
    monkeypatch.setattr(store, "resolve_uri", lambda u: calls.append(u) or u)
    monkeypatch.setattr(store, "_CLIENTS", {})
    first = tracking.client("http://127.0.0.1:9")
    assert tracking.client("http://127.0.0.1:9") is first and calls == ["http://127.0.0.1:9"]
    assert tracking.client("http://127.0.0.1:8") is not first and len(calls) == 2


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


def test_a_run_is_rebuilt_with_the_class_count_it_trained_with(mlflow_store, log_trial):
    """Identity runs (paper 003) and 8-class CK+ runs do not have 7 outputs: the trial logs
    ``built.num_classes`` and ``load_trained_model`` builds that many; weights that do not fit
    are one sentence, not a state-dict traceback."""
    import torch

    from fer_models.config import DataConfig, TrainConfig
    from fer_models.errors import FerOrchError
    from fer_models.methods import build_model
    from orchestrator import tracking

    cfg = TrainConfig(method="cam", backbone="resnet-tiny", data=DataConfig(image_size=32, map_size=16))
    c, exp = mlflow_store.client, mlflow_store.exp
    parent = c.create_run(exp).info.run_id
    rid = log_trial(c, exp, parent, cfg, build_model(cfg, 12).state_dict(), "identity-run")
    with pytest.raises(FerOrchError, match="do not fit"):
        tracking.load_trained_model(rid, mlflow_store.uri)  # no class count logged: 7 outputs
    c.log_param(rid, "built.num_classes", 12)
    model, _ = tracking.load_trained_model(rid, mlflow_store.uri)
    assert model(torch.zeros(2, 3, 32, 32)).logits.shape == (2, 12)


def test_a_damaged_logged_weights_file_is_one_sentence(mlflow_store, log_trial):
    """A logged best.pt that is not a state dict is one StateDictError sentence naming the run,
    never torch's advice to turn weights_only off."""
    import torch

    from fer_models.config import DataConfig, TrainConfig
    from fer_models.errors import StateDictError
    from orchestrator import tracking

    cfg = TrainConfig(method="cam", backbone="resnet-tiny", data=DataConfig(image_size=32, map_size=16))
    c, exp = mlflow_store.client, mlflow_store.exp
    rid = log_trial(c, exp, c.create_run(exp).info.run_id, cfg, [torch.ones(2)], "damaged")
    with pytest.raises(StateDictError, match=f"run {rid}'s logged weights") as e:
        tracking.load_trained_model(rid, mlflow_store.uri)
    assert "weights_only" not in str(e.value)
