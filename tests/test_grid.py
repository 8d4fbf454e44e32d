"""The Tune grid: trials, MLflow layout, resume after a killed driver, loss of a worker node.

Most tests inject a fake ``train`` that follows the contract of ``fer_models.train.train``
(checkpoint.pt every epoch, resume, on_epoch, TrainResult fields) and takes well under a
second, so the orchestration itself is what is tested; the slow test at the end runs the
real trainer.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ray import cloudpickle

from fer_models.config import DataConfig, TrainConfig
from orchestrator import tracking
from orchestrator.config import GridConfig, Resources

# The fakes below are sent to Ray workers by value (this module is not importable there).
cloudpickle.register_pickle_by_value(sys.modules[__name__])


@dataclass
class FakeResult:
    best_path: Path
    best_epoch: int
    test: dict
    history: list = field(default_factory=list)
    confusion: Any = None
    cosine_matrix: Any = None
    mean_maps: Any = None


def fake_train(cfg: TrainConfig, run_dir, *, on_epoch=None, resume=True, sleep=0.0, marker_dir=None):
    """Contract-shaped trainer: deterministic metrics from the config, checkpoint each epoch."""
    import torch

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt = run_dir / "checkpoint.pt"
    start, history = 0, []
    if resume and ckpt.is_file():
        state = torch.load(ckpt, weights_only=True)
        start, history = int(state["epoch"]) + 1, list(state["history"])
    if marker_dir is not None:  # record where each attempt started
        Path(marker_dir).mkdir(parents=True, exist_ok=True)
        (Path(marker_dir) / f"{cfg.method}-{cfg.seed}-{cfg.lam:g}-{os.getpid()}-{start}").touch()
    bonus = 0.1 * cfg.lam / (1 + cfg.lam) if cfg.au else 0.0
    for epoch in range(start, cfg.epochs):
        if sleep:
            time.sleep(sleep)
        m = {"train_loss": 1.0 / (epoch + 1), "val_cl": 0.5 + 0.01 * epoch + bonus / 2, "val_cam_cos": 0.3 + bonus}
        history.append({"epoch": epoch, **m})
        torch.save({"w": torch.ones(2) * epoch}, run_dir / "best.pt")
        torch.save({"epoch": epoch, "history": history}, ckpt)
        if on_epoch is not None:
            on_epoch(epoch, m)
    k = 7
    return FakeResult(
        best_path=run_dir / "best.pt",
        best_epoch=cfg.epochs - 1,
        test={"cl": 0.6 + bonus, "cam_cos": 0.4 + bonus, "att_cos": 0.45 + bonus, "gt_cam_cos": 0.3, "gt_att_cos": 0.35},
        history=history,
        confusion=np.eye(k) * 5 + 1,
        cosine_matrix=np.full((k, k), 0.5),
        mean_maps={"cam": np.random.rand(k, 8, 8), "att": np.random.rand(k, 8, 8)},
    )


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
    from orchestrator.grid import run_grid

    g = tiny_grid(tmp_path)
    out = run_grid(g, studies=("grid",), train_fn=fake_train, preprocess_fn=_no_preprocess, verbose=False)
    assert out.ok, (out.failed, out.unfinished)
    c = tracking.client(out.uri)
    parent = c.get_run(out.parent_run_id)
    assert parent.data.tags[tracking.KIND_TAG] == "grid"
    assert parent.info.status == "FINISHED"
    kids = _children(out)
    assert len(kids) == 2 * 2 * 2 == len(out.ran)
    for r in kids:
        assert r.info.status == "FINISHED"
        assert r.data.tags["mlflow.parentRunId"] == out.parent_run_id
        for tag in ("method", "dataset", "au", "lambda", "layers", "seed", "git_commit", "git_dirty", "versions.torch"):
            assert tag in r.data.tags, tag
        assert r.data.params["data.dataset"] == r.data.tags["dataset"]
        for m in ("test_cl", "test_cam_cos", "test_att_cos", "test_gt_cam_cos", "best_val_cl", "train_seconds"):
            assert m in r.data.metrics, m
        assert len(c.get_metric_history(r.info.run_id, "val_cl")) == 2  # one point per epoch
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
