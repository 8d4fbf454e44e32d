"""Trials of several workers in the grid (orchestrator.ddp): Ray Train's TorchTrainer inside a
Tune trial, 2 CPU workers over gloo, rank 0 logging once; a killed worker's trial resumes from
its checkpoint in the same MLflow run; the documented command runs a mix of 1- and 2-worker
trials through the real CLI."""

from __future__ import annotations

import os
import re
import shlex
import sys
from functools import partial
from pathlib import Path

import pytest

from fer_models.config import DataConfig, TrainConfig
from orchestrator import tracking
from orchestrator.config import GridConfig, Resources

from tests.test_fer_models.test_distributed import _loaders  # in-memory batches: the data needs no cache

DOCS = Path(__file__).resolve().parents[2] / "docs" / "cluster.md"


def crash_once(cfg, run_dir, *, on_epoch=None, marker: str = "", after: int = 1, **kw):
    """``fer_models.train.train``, but rank 0 of the first attempt dies right after reporting
    epoch ``after`` (its checkpoint is in Ray Train's storage by then): the edge a lost worker cuts."""
    import torch.distributed as dist

    from fer_models.train import train

    def report(epoch, metrics):
        on_epoch(epoch, metrics)
        if epoch == after and dist.get_rank() == 0 and not Path(marker).exists():
            Path(marker).write_text(str(epoch))
            raise RuntimeError("killed after its checkpoint")

    return train(cfg, run_dir, on_epoch=report, **kw)


@pytest.mark.slow  # ~2.5 min on 2 busy cores: two attempts, each starting a Ray Train worker group
@pytest.mark.ray
def test_a_killed_two_worker_trial_resumes_from_its_checkpoint(ray_local, tmp_path):
    from orchestrator.tuning import run_grid

    base = TrainConfig(backbone="resnet-tiny", epochs=3, batch_size=8, lr=0.05, device="cpu",
                       data=DataConfig(image_size=32, map_size=16))
    g = GridConfig(datasets=("synthetic-rafdb",), methods=("cam",), au=(False,), seeds=(0,), base=base,
                   resources=Resources(cpus=0.5, workers_per_trial={"cam/synthetic-rafdb": 2}),
                   tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", experiment="test-ddp",
                   storage_path=str(tmp_path / "ray"), max_failures=1)
    from tests.test_orchestrator import test_ddp_trials as importable  # by a name Ray's workers import

    marker = tmp_path / "killed"
    out = run_grid(g, studies=("grid",), train_fn=partial(importable.crash_once, marker=str(marker), loaders=_loaders()),
                   preprocess_fn=lambda data_cfg, address=None: None, verbose=False)
    assert out.ok, (out.failed, out.unfinished)
    assert marker.read_text() == "1"  # the first attempt died after epoch 1
    c = tracking.client(out.uri)
    runs = c.search_runs([out.experiment_id], "tags.`fer_orch.kind` = 'trial'")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"  # one MLflow run across the kill
    run = runs[0]
    assert run.data.tags["fer_orch.workers"] == "2"
    assert [m.step for m in c.get_metric_history(run.info.run_id, "resumed_from_epoch")] == [1]
    assert sorted(m.step for m in c.get_metric_history(run.info.run_id, "train_loss")) == [1, 2, 3]  # logged once each
    assert "test_cl" in run.data.metrics and run.data.metrics["best_epoch"] in (1.0, 2.0, 3.0)
    assert not any((tmp_path / "ray" / "train").glob("*"))  # the finished trial's Train run is deleted


def _doc_command() -> str:
    text = DOCS.read_text()
    return next(l for l in text.splitlines() if l.startswith("fer-orch grid") and "--workers-per-trial" in l
                and "synthetic" in l)


@pytest.mark.slow
def test_docs_command_runs_a_mix_of_one_and_two_worker_trials(tmp_path):
    """docs/cluster.md's command, as written, through the CLI in a process of its own."""
    import subprocess

    env = {**os.environ, "FER_ORCH_HOME": str(tmp_path / "home"), "RAY_ADDRESS": ""}
    env.pop("RAY_ADDRESS")
    exe = Path(sys.executable).with_name("fer-orch")
    res = subprocess.run([str(exe), *shlex.split(_doc_command())[1:]], env=env, capture_output=True, text=True,
                         timeout=1200)
    assert res.returncode == 0, res.stderr[-3000:]
    assert re.search(r"fer-orch: 4 trials \(4 trained now, 0 already finished, 0 failed", res.stderr), res.stderr[-2000:]
    uri = f"sqlite:///{tmp_path / 'home' / 'mlflow.db'}"
    c = tracking.client(uri)
    exp = c.get_experiment_by_name("fer-orch")
    runs = c.search_runs([exp.experiment_id], "tags.`fer_orch.kind` = 'trial'")
    workers = sorted((r.data.tags["method"], r.data.tags.get("fer_orch.workers", "1")) for r in runs)
    assert workers == [("cam", "2"), ("cam", "2"), ("gradcam", "1"), ("gradcam", "1")]
    assert all(r.info.status == "FINISHED" and "test_cl" in r.data.metrics for r in runs)
