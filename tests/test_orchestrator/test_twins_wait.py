"""Grad-CAM++ and LayerCAM wait for Grad-CAM's training of the same config: they run in a
second Tuner, after it published its checkpoint, so no network is trained twice."""

from __future__ import annotations

from functools import partial

import pytest

from fer_models.config import TrainConfig
from orchestrator.studies import expand
from tests.test_orchestrator.test_grid import _no_preprocess, fake_train, tiny_grid


def test_split_twins_defers_only_twins_whose_publisher_runs(tmp_path):
    from orchestrator.tuning import split_twins

    g = tiny_grid(tmp_path, datasets=("synthetic-rafdb",), methods=("cam", "gradcam", "gradcampp", "layercam"),
                  au=(False,))
    first, twins = split_twins(expand(g, "grid"))
    assert sorted(t.cfg.method for t in first) == ["cam", "gradcam"]
    assert sorted(t.cfg.method for t in twins) == ["gradcampp", "layercam"]
    alone = tiny_grid(tmp_path, datasets=("synthetic-rafdb",), methods=("gradcampp", "layercam"), au=(False,))
    first, twins = split_twins(expand(alone, "grid"))
    assert len(first) == 2 and not twins  # no publisher in the grid: they train themselves


@pytest.mark.ray
def test_twins_borrow_instead_of_training_twice(ray_local, tmp_path):
    from orchestrator import tracking
    from orchestrator.tuning import run_grid

    markers = tmp_path / "markers"
    g = tiny_grid(tmp_path, datasets=("synthetic-rafdb",), methods=("gradcam", "gradcampp", "layercam"), au=(False,),
                  base=TrainConfig(backbone="tiny", epochs=2, device="cpu"), max_concurrent=3)
    out = run_grid(g, studies=("grid",), train_fn=partial(fake_train, sleep=0.5, marker_dir=markers),
                   preprocess_fn=_no_preprocess, verbose=False)
    assert out.ok, (out.failed, out.unfinished)
    starts = {p.name.split("-")[0]: int(p.name.rsplit("-", 1)[1]) for p in markers.iterdir()}
    assert starts == {"gradcam": 1, "gradcampp": 3, "layercam": 3}  # the twins started past the last epoch
    c = tracking.client(g.tracking_uri)
    runs = c.search_runs([out.experiment_id], "tags.`fer_orch.kind` = 'trial'")
    by = {r.data.tags["method"]: r for r in runs}
    assert by["gradcampp"].data.tags.get("fer_orch.trained_by") == "gradcam"
    assert by["layercam"].data.tags.get("fer_orch.trained_by") == "gradcam"
