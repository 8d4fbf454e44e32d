"""The Tune grid: trials, MLflow layout, resume after a killed driver, loss of a worker node.

Most tests inject a fake ``train`` that follows the contract of ``fer_models.train.train``
(checkpoint.pt every epoch, resume, on_epoch, a TrainResult) and takes well under a
second, so the orchestration itself is what is tested; the slow test at the end runs the
real trainer.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from ray import cloudpickle

from fer_models.config import DataConfig, TrainConfig
from fer_models.metrics import EvalResult
from fer_models.train import TrainResult
from orchestrator import tracking
from orchestrator.config import GridConfig, Resources

# The fakes below are sent to Ray workers by value (this module is not importable there).
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def fake_train(cfg: TrainConfig, run_dir, *, on_epoch=None, resume=True, loaders=None, progress=True,
               cache_root=None, cache_dir=None, trained_by=None, sleep=0.0, marker_dir=None) -> TrainResult:
    """``fer_models.train.train``'s contract, fast: epochs 1..cfg.epochs, checkpoint.pt and
    best.pt every epoch, resume after the saved epoch, a TrainResult with the test EvalResult;
    deterministic metrics from the config (AU and λ raise them)."""
    import torch

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt = run_dir / "checkpoint.pt"
    start, history = 1, []
    if resume and ckpt.is_file():
        state = torch.load(ckpt, weights_only=True)
        start, history = int(state["epoch"]) + 1, list(state["history"])
    if marker_dir is not None:  # record where each attempt started
        Path(marker_dir).mkdir(parents=True, exist_ok=True)
        (Path(marker_dir) / f"{cfg.method}-{cfg.seed}-{cfg.lam:g}-{os.getpid()}-{start}").write_text(str(cache_dir))
    bonus = 0.1 * cfg.lam / (1 + cfg.lam) if cfg.au else 0.0
    for epoch in range(start, cfg.epochs + 1):
        if sleep:
            time.sleep(sleep)
        m = {"train_loss": 1.0 / epoch, "val_cl": 0.5 + 0.01 * epoch + bonus / 2, "val_cam_cos": 0.3 + bonus}
        history.append({"epoch": float(epoch), **m})
        torch.save({"w": torch.ones(2) * epoch}, run_dir / "best.pt")
        torch.save({"epoch": epoch, "history": history}, ckpt)
        if on_epoch is not None:
            on_epoch(epoch, m)
    k = 7
    test = EvalResult(
        metrics={"cl": 0.6 + bonus, "cam_cos": 0.4 + bonus, "att_cos": 0.45 + bonus, "gt_cam_cos": 0.3,
                 "gt_att_cos": 0.35},
        confusion=np.eye(k, dtype=np.int64) * 5 + 1,
        cosine_matrix=np.full((k, 6), 0.5),
        mean_maps={"cam": np.random.rand(k, 8, 8), "att": np.random.rand(k, 8, 8)},
    )
    best = history[-1]
    return TrainResult(best_path=run_dir / "best.pt", best_epoch=cfg.epochs,
                       best_val={"cl": best["val_cl"], "cam_cos": best["val_cam_cos"]}, test=test, history=history)


def test_fake_train_takes_what_train_takes():
    """The fake stands in for train in the grid tests: it must accept every argument train does."""
    import inspect

    from fer_models.train import train

    real, fake = inspect.signature(train).parameters, inspect.signature(fake_train).parameters
    assert all(name in fake and fake[name].kind == p.kind for name, p in real.items())


def tiny_grid(tmp_path, **kw) -> GridConfig:
    base = TrainConfig(backbone="tiny", epochs=2, device="cpu", data=DataConfig(image_size=32, map_size=16))
    d = dict(
        datasets=("synthetic-rafdb", "synthetic-affectnet"),
        methods=("cam", "gradcam"),
        seeds=(0,),
        lambdas=(0.5, 4.0),
        layer_sets=("5", "5+4"),
        base=base,
        resources=Resources(cpus=1),
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        experiment="test-grid",
        storage_path=str(tmp_path / "ray"),
        max_failures=1,
    )
    d.update(kw)
    return GridConfig(**d)


def _no_preprocess(data_cfg, address=None):
    return None


def _children(outcome):
    c = tracking.client(outcome.uri)
    return c.search_runs([outcome.experiment_id], filter_string=f"tags.`{tracking.KIND_TAG}` = 'trial'", max_results=1000)


@pytest.mark.ray
def test_grid_logs_parent_and_children(ray_local, tmp_path):
    from functools import partial
    from types import SimpleNamespace

    from orchestrator.tuning import run_grid

    prepared = []

    def preprocess(data_cfg, address=None):  # the driver's cache, handed to every trial
        prepared.append(data_cfg)
        d = tmp_path / "cache" / data_cfg.dataset
        d.mkdir(parents=True, exist_ok=True)
        (d / "meta.json").write_text("{}")  # a finished cache: trials use it (orchestrator.trial.cache_here)
        return SimpleNamespace(dir=d)

    g = tiny_grid(tmp_path, datasets=("synthetic-rafdb",))
    train = partial(fake_train, marker_dir=tmp_path / "markers")
    out = run_grid(g, studies=("grid",), train_fn=train, preprocess_fn=preprocess, verbose=False)
    assert out.ok, (out.failed, out.unfinished)
    # Grad-CAM published its training for its twins (orchestrator.trial); a finished grid deletes it
    trained = Path(os.environ["FER_ORCH_HOME"]) / "trained"
    assert trained.is_dir() and not (trained / out.parent_run_id).exists()
    assert len(prepared) == 1  # one data config, prepared once by the driver
    assert {p.read_text() for p in (tmp_path / "markers").iterdir()} == {str(tmp_path / "cache" / "synthetic-rafdb")}
    c = tracking.client(out.uri)
    parent = c.get_run(out.parent_run_id)
    assert parent.data.tags[tracking.KIND_TAG] == "grid"
    assert tracking.studies_of(parent.data.tags) == ["grid"] and tracking.OLD_STUDIES_TAG not in parent.data.tags
    assert parent.info.status == "FINISHED"
    kids = _children(out)
    assert len(kids) == 2 * 2 == len(out.ran)
    for r in kids:
        assert r.info.status == "FINISHED"
        assert r.data.tags["mlflow.parentRunId"] == out.parent_run_id
        for tag in ("method", "dataset", "au", "lambda", "layers", "seed", "git_commit", "git_dirty", "versions.torch"):
            assert tag in r.data.tags, tag
        assert r.data.params["data.dataset"] == r.data.tags["dataset"]
        for m in ("test_cl", "test_cam_cos", "test_att_cos", "test_gt_cam_cos", "best_val_cl", "train_seconds"):
            assert m in r.data.metrics, m
        val_cl = c.get_metric_history(r.info.run_id, "val_cl")
        assert sorted(p.step for p in val_cl) == [1, 2]  # one point per epoch, steps numbered as train numbers them
        assert r.data.metrics["best_epoch"] == 2 and r.data.metrics["best_val_cl"] == max(p.value for p in val_cl)
        arts = {a.path for a in c.list_artifacts(r.info.run_id)}
        assert {"config.yaml", "weights", "matrices", "maps"} <= arts
        inner = {a.path for a in c.list_artifacts(r.info.run_id, "matrices")}
        assert {"matrices/confusion.csv", "matrices/confusion.png", "matrices/cosine.png"} <= inner
    # the weights round-trip as a state_dict
    import torch

    p = c.download_artifacts(kids[0].info.run_id, tracking.WEIGHTS_ARTIFACT, str(tmp_path / "dl"))
    assert set(torch.load(p, weights_only=True)) == {"w"}
    # the parent lists every trial
    listed = tracking.grid_trials(out.parent_run_id, out.uri)
    assert {t["hash"] for t in listed} == {r.data.tags[tracking.HASH_TAG] for r in kids}
    # running the same command again restores the finished Tune experiment: nothing re-runs
    again = run_grid(g, studies=("grid",), train_fn=fake_train, preprocess_fn=_no_preprocess, verbose=False)
    assert again.ok and again.ran == [] and again.parent_run_id == out.parent_run_id
    assert len(_children(out)) == 4


# --------------------------------------------------------------------------------------
# fast: configuration, trial expansion, λ on validation, MLflow errors (no Ray)
# --------------------------------------------------------------------------------------


def test_cpu_preset_expands_the_paper_grid():
    from fer_models.methods import paper_methods
    from orchestrator import presets
    from orchestrator.studies import expand

    g = presets.get("cpu")
    grid = expand(g, "grid", lam=2.0)
    assert len(grid) == 11 * 2 * 2 * 3  # Table 1: methods x datasets x {w/o, w/ AU} x 3 seeds
    assert {t.cfg.seed for t in grid} == {0, 1, 2}
    assert {t.cfg.method for t in grid} == set(paper_methods())
    assert all(t.cfg.lam == (2.0 if t.cfg.au else 0.0) for t in grid)
    lam = expand(g, "lambda")
    assert [t.cfg.lam for t in lam] == [0.0, *g.lambdas] and {t.cfg.method for t in lam} == {"cam"}
    assert {t.cfg.seed for t in lam} == {0}  # ablation_seeds: the curves stay at one seed
    assert {t.cfg.seed for t in expand(__import__("dataclasses").replace(g, ablation_seeds=None), "lambda")} == {0, 1, 2}  # None: seeds
    layers = expand(g, "layers", lam=2.0)
    assert [t.cfg.layers for t in layers][1:] == [(1,), (2,), (3,), (4,), (5,), (5, 4), (5, 4, 3), (5, 4, 3, 2), (5, 4, 3, 2, 1)]
    # the vanilla CAM model is one config shared by the three studies (trained once)
    vanilla = {t.hash for t in grid if t.cfg.method == "cam" and not t.cfg.au and t.cfg.data.dataset == g.datasets[0]
               and t.cfg.seed == 0}
    assert vanilla == {lam[0].hash} == {layers[0].hash}
    # the layer-5 entry of Table 3 is the grid's CAM w/ AU model
    assert layers[5].hash in {t.hash for t in grid}


def test_paper_preset_follows_paper_002():
    from orchestrator import presets
    from orchestrator.studies import expand

    g = presets.get("paper")
    by = {(t.cfg.method, t.cfg.data.dataset, t.cfg.au): t.cfg for t in expand(g, "grid", lam=4.0)}
    assert by[("cam", "rafdb", True)].epochs == 100 and by[("cam", "rafdb", True)].batch_size == 32
    assert by[("cam", "affectnet", True)].epochs == 20 and by[("cam", "affectnet", True)].batch_size == 224
    assert by[("apvit", "rafdb", True)].data.image_size == 112 and by[("cam", "rafdb", True)].data.image_size == 224
    # ResNet50 with layer3/4 at stride 1, as the released code (docs/reproducing-paper-002.md)
    assert by[("cam", "rafdb", True)].backbone == "resnet50-s8" and g.resources.gpus == 1


def test_yaml_round_trip_and_cli_overrides(tmp_path):
    from orchestrator.commands.grid import build_grid_config
    from orchestrator.presets.cpu import CPU_MAP_SIZE

    g = tiny_grid(tmp_path)
    assert GridConfig.from_dict(__import__("yaml").safe_load(g.to_yaml())) == g
    (tmp_path / "g.yaml").write_text("methods: [cam, acol]\nbase: {epochs: 7, data: {image_size: 40}}\nlambdas: [1, 3]\n")
    c = build_grid_config(config_path=str(tmp_path / "g.yaml"), seeds="3", gpus_per_trial=0.25, epochs=4)
    assert c.preset == "cpu" and c.methods == ("cam", "acol") and c.seeds == (0, 1, 2)
    assert c.base.epochs == 4  # the CLI beats the file, the file beats the preset
    assert c.base.data.image_size == 40 and c.base.data.map_size == CPU_MAP_SIZE and c.lambdas == (1, 3)
    assert c.resources.gpus == 0.25 and c.resources.cpus == 1
    assert build_grid_config(datasets="rafdb").preset == "paper"


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(methods=()), "no methods"),
        (dict(lambdas=(0.0, 1.0)), "λ must be > 0"),
        (dict(lambdas=(float("nan"), 1.0)), "λ must be > 0 and finite"),
        (dict(lam=float("inf")), "λ must be > 0 and finite"),
        (dict(resources=Resources(cpus=0)), "cpus > 0"),
        (dict(layer_sets=("6",)), "numbered 1..5"),
    ],
)
def test_bad_grid_config_is_one_sentence(tmp_path, kw, match):
    from fer_models.errors import ConfigError

    with pytest.raises(ConfigError, match=match):
        tiny_grid(tmp_path, **kw)


def test_missing_config_file_is_clear(tmp_path):
    from fer_models.errors import ConfigError

    with pytest.raises(ConfigError, match="does not exist"):
        GridConfig.from_yaml(tmp_path / "nope.yaml")


def test_unreachable_mlflow_fails_before_any_trial(tmp_path):
    import socket

    from click.testing import CliRunner

    from fer_models.errors import FerOrchError
    from orchestrator.cli import main
    from orchestrator.tuning import run_grid

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    calls = []
    g = tiny_grid(tmp_path, tracking_uri=f"http://127.0.0.1:{port}")
    t0 = time.perf_counter()
    with pytest.raises(FerOrchError, match="unreachable"):
        run_grid(g, train_fn=lambda *a, **k: calls.append(a), preprocess_fn=lambda *a, **k: calls.append(a))
    assert calls == [] and time.perf_counter() - t0 < 10
    assert not (tmp_path / "ray").exists()
    res = CliRunner().invoke(main, ["grid", "--tracking-uri", f"http://127.0.0.1:{port}", "--methods", "cam"])
    assert res.exit_code == 2
    assert "unreachable" in res.output and "Traceback" not in res.output
    assert len([x for x in res.output.strip().splitlines() if x.strip()]) == 1


def test_print_config_runs_nothing(tmp_path):
    from click.testing import CliRunner

    from orchestrator.cli import main

    res = CliRunner().invoke(main, ["grid", "--print-config", "--methods", "cam,acol", "--seeds", "2"])
    assert res.exit_code == 0, res.output
    assert "# grid: 16 trials" in res.output and "# lambda:" in res.output
    assert not (tmp_path / "fer-orch-out" / "ray").exists()


def _finished(uri, exp, parent, trial, metrics):
    run = tracking.TrialRun(uri, exp, parent, trial.name, trial.tags())
    run.log_metrics(metrics)
    run.end("FINISHED")


def test_lambda_is_chosen_on_validation_not_test(tmp_path):
    from orchestrator.tuning import choose_lambda
    from orchestrator.studies import expand

    g = tiny_grid(tmp_path, lambdas=(0.5, 4.0, 20.0))
    uri = g.tracking_uri
    exp = tracking.ensure_experiment(g.experiment, uri)
    assert choose_lambda(g, exp, uri)[1].startswith("default")
    parent = tracking.create_grid_run(exp, "abl", {tracking.STUDY_TAG: "lambda"}, uri)
    vanilla, l05, l4, l20 = expand(g, "lambda")
    # test metrics point the other way on purpose: they must not be read
    _finished(uri, exp, parent, vanilla, {"best_val_cl": 60, "best_val_cam_cos": 0.3, "test_cam_cos": 0.9})
    _finished(uri, exp, parent, l05, {"best_val_cl": 62, "best_val_cam_cos": 0.4, "test_cam_cos": 0.99})
    _finished(uri, exp, parent, l4, {"best_val_cl": 61, "best_val_cam_cos": 0.6, "test_cam_cos": 0.1})
    _finished(uri, exp, parent, l20, {"best_val_cl": 50, "best_val_cam_cos": 0.8, "test_cam_cos": 0.1})
    lam, source = choose_lambda(g, exp, uri)
    assert lam == 4.0 and source.startswith("validation")  # λ=20 localises best but lowers val CL
    # an ablation run with another base config (e.g. other epochs) is not used
    other = tiny_grid(tmp_path, base=g.base.__class__(epochs=9))
    assert choose_lambda(other, exp, uri)[1].startswith("default")
    assert choose_lambda(tiny_grid(tmp_path, lam=7.0), exp, uri) == (7.0, "configured")


# --------------------------------------------------------------------------------------
# slow: a killed driver, a lost worker node, the real trainer
# --------------------------------------------------------------------------------------

_DRIVER = """
import os, sys
os.environ["OMP_NUM_THREADS"] = "1"
sys.path.insert(0, {tests!r})
from functools import partial
import test_grid as tg
from orchestrator.tuning import run_grid
from pathlib import Path
g = tg.tiny_grid(Path({tmp!r}), datasets=("synthetic-rafdb",), base=tg.TrainConfig(epochs=3, device="cpu"),
                 max_concurrent=1)
train = partial(tg.fake_train, sleep=1.5, marker_dir={markers!r})
run_grid(g, studies=("grid",), train_fn=train, preprocess_fn=tg._no_preprocess, verbose=False)
"""


@pytest.mark.slow
@pytest.mark.ray
def test_killed_driver_resumes_without_rerunning_finished_trials(ray_local, tmp_path):
    import signal
    import subprocess
    from functools import partial

    from orchestrator.tuning import run_grid

    markers = tmp_path / "markers"
    script = tmp_path / "driver.py"
    script.write_text(_DRIVER.format(tests=str(Path(__file__).parent), tmp=str(tmp_path), markers=str(markers)))
    env = {**os.environ, "FER_ORCH_HOME": os.environ["FER_ORCH_HOME"]}
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracking.ensure_experiment("test-grid", uri)  # create the store once (no concurrent schema migration)
    log = open(tmp_path / "driver.log", "w")
    proc = subprocess.Popen([sys.executable, str(script)], env=env, start_new_session=True,
                            stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 400
    finished = []
    try:
        while time.time() < deadline and proc.poll() is None:
            time.sleep(2)
            try:
                exp = tracking.client(uri).get_experiment_by_name("test-grid")
                done = tracking.finished_trials(exp.experiment_id, uri) if exp else {}
                finished = [f"{r.data.tags['method']}-{r.data.tags['seed']}-{float(r.data.tags['lambda']):g}"
                            for r in done.values()]
            except Exception:
                continue
            if len(finished) >= 2:
                break
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray it started, nothing else
        proc.wait()
        log.close()
    assert 2 <= len(finished) < 4, "the driver should be killed mid-grid: " + (tmp_path / "driver.log").read_text()[-3000:]
    before = {p.name for p in markers.iterdir()}

    g = tiny_grid(tmp_path, datasets=("synthetic-rafdb",), base=TrainConfig(epochs=3, device="cpu"), max_concurrent=1)
    out = run_grid(g, studies=("grid",), train_fn=partial(fake_train, sleep=1.5, marker_dir=markers),
                   preprocess_fn=_no_preprocess, verbose=False)
    assert out.ok, (out.failed, out.unfinished)
    c = tracking.client(uri)
    runs = _children(out)
    hashes = [r.data.tags[tracking.HASH_TAG] for r in runs]
    assert len(runs) == 4 and len(set(hashes)) == 4  # one trial = one MLflow run, across the kill
    assert all(r.info.status == "FINISHED" for r in runs)
    new = {"-".join(p.name.split("-")[:3]) for p in set(markers.iterdir()) - {markers / b for b in before}}
    assert new and not (new & set(finished))  # finished trials did not start again
    assert new | set(finished) == {"cam-0-0", "cam-0-1", "gradcam-0-0", "gradcam-0-1"}
    assert c.get_run(out.parent_run_id).info.status == "FINISHED"


@pytest.mark.slow
def test_trial_survives_the_loss_of_its_worker_node(tmp_path):
    """A 1-CPU worker node dies mid-trial; Tune restarts the trial on a new node from its
    last checkpoint and it finishes in the same MLflow run."""
    import ray
    from functools import partial
    from ray.cluster_utils import Cluster

    from orchestrator.tuning import run_grid

    was_up = ray.is_initialized()
    ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    node = cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address, log_to_driver=False)
    markers = tmp_path / "markers"
    g = tiny_grid(tmp_path, datasets=("synthetic-rafdb",), methods=("cam",), au=(True,),
                  base=TrainConfig(epochs=4, device="cpu"), max_failures=2)
    uri = g.tracking_uri

    result: dict = {}

    def drive():  # the grid runs in a thread; nodes are added in the main thread (signals)
        try:
            result["out"] = run_grid(g, studies=("grid",), train_fn=partial(fake_train, sleep=2.0, marker_dir=markers),
                                     preprocess_fn=_no_preprocess, verbose=False)
        except BaseException as e:  # noqa: BLE001 - reported by the assertion below
            result["error"] = e

    driver = threading.Thread(target=drive, daemon=True)
    driver.start()
    try:
        deadline = time.time() + 300
        while time.time() < deadline and driver.is_alive():
            time.sleep(0.5)
            try:
                c = tracking.client(uri)
                exp = c.get_experiment_by_name("test-grid")
                runs = c.search_runs([exp.experiment_id], "tags.`fer_orch.kind` = 'trial'")
                if runs and len(c.get_metric_history(runs[0].info.run_id, "val_cl")) >= 2:
                    break
            except Exception:
                continue
        time.sleep(1.0)  # let the epoch-2 checkpoint reach storage
        cluster.remove_node(node, allow_graceful=False)
        cluster.add_node(num_cpus=1)
        driver.join(timeout=300)
    finally:
        ray.shutdown()
        cluster.shutdown()
        if was_up:
            ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    assert "error" not in result, result.get("error")
    out = result["out"]
    assert out.ok, (out.failed, out.unfinished)
    starts = sorted(int(p.name.rsplit("-", 1)[1]) for p in markers.iterdir())
    assert len(starts) == 2 and starts[0] == 1 and starts[1] >= 3  # resumed, not restarted
    runs = _children(out)
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    c = tracking.client(uri)
    epochs = sorted(m.step for m in c.get_metric_history(runs[0].info.run_id, "val_cl"))
    assert set(epochs) == {1, 2, 3, 4}
    resumed = [m.step for m in c.get_metric_history(runs[0].info.run_id, "resumed_from_epoch")]
    assert resumed == [starts[1] - 1]  # the run says where its second attempt took over


@pytest.mark.slow
@pytest.mark.ray
def test_real_preprocess_train_and_report(ray_local, tmp_path):
    """The real pipeline: Ray Data preprocessing, fer_models.train, MLflow, report."""
    from orchestrator import presets
    from orchestrator.tuning import run_grid
    from orchestrator.report import build_report

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    g = presets.get("cpu", methods=("cam",), datasets=("synthetic-rafdb",), lambdas=(1.0,), layer_sets=("5", "5+4"),
                    seeds=(0,), base={"epochs": 1}, tracking_uri=uri, storage_path=str(tmp_path / "ray"),
                    experiment="real")
    out = run_grid(g, verbose=False)
    assert out.ok, (out.failed, out.unfinished)
    runs = _children(out)
    assert len(runs) == 3  # vanilla, λ=1 (= grid w/ AU = layers "5"), layers "5+4"
    c = tracking.client(uri)
    for r in runs:
        assert {"test_cl", "test_cam_cos", "test_att_cos", "test_gt_cam_cos", "best_val_cl", "test_cam_cos_avg",
                "test_att_cos_avg"} <= set(r.data.metrics)
        assert r.data.metrics["test_n"] == 350  # the Wilson interval's n
        assert 0 <= r.data.metrics["test_cl"] <= 100
        maps = {a.path for a in c.list_artifacts(r.info.run_id, "maps")}
        assert any(p.endswith(".png") for p in maps)
        model, cfg = tracking.load_trained_model(r.info.run_id, uri)
        assert cfg.method == "cam" and sum(p.numel() for p in model.parameters()) > 0
    rep = build_report("real", uri, tmp_path / "report")
    assert rep.counts == {"grid": 2, "layers": 3, "au-source": 0, "lambda": 2}
    assert (tmp_path / "report" / "fig5_lambda.png").is_file()


@pytest.mark.slow
@pytest.mark.ray
def test_same_config_and_seed_through_tune_twice_give_identical_metrics(ray_local, tmp_path):
    """Determinism inside Tune: one trial trained twice by the real trainable, in
    two experiments, gives the same numbers to the last bit (seeded data order, init and
    augmentation; one torch thread per trial)."""
    from orchestrator import presets
    from orchestrator.tuning import run_grid

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    metrics = []
    for exp in ("det-a", "det-b"):
        g = presets.get("cpu", methods=("cam",), datasets=("synthetic-rafdb",), au=(True,), seeds=(1,),
                        base={"epochs": 2}, tracking_uri=uri, storage_path=str(tmp_path / "ray"), experiment=exp)
        out = run_grid(g, studies=("grid",), verbose=False)
        assert out.ok and len(out.ran) == 1, (out.failed, out.unfinished)
        (run,) = _children(out)
        c = tracking.client(uri)
        history = [m.value for m in sorted(c.get_metric_history(run.info.run_id, "train_loss"), key=lambda m: m.step)]
        m = {k: v for k, v in run.data.metrics.items() if k.startswith(("test_", "best_val_"))}
        metrics.append((m, history))
    (a, ha), (b, hb) = metrics
    assert len(ha) == 2 and ha == hb
    assert {"test_cl", "test_cam_cos", "test_att_cos"} <= set(a) and a == b
