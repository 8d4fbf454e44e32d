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
    from fer_analysis.audit import per_sample_cam_cos
    from fer_models.metrics import evaluate

    ps = per_sample_cam_cos(mini, small_loaders.test)
    for d, key in (("project", "cam_cos"), ("released", "released_cam_cos")):
        ev = evaluate(mini, small_loaders.test, num_classes=7, metric_def=d, codebook="paper002")
        assert np.isfinite(ps[key]).sum() > 10
        assert np.nanmean(ps[key]) == pytest.approx(ev.metrics["cam_cos"], abs=1e-6), d
        if d == "project":
            assert np.nanmean(ps["gt_cam_cos"]) == pytest.approx(ev.metrics["gt_cam_cos"], abs=1e-6)
    assert not np.allclose(ps["cam_cos"], ps["released_cam_cos"], equal_nan=True)
    assert ps["mean_au"].shape == (7, 32, 32) and ps["mean_au"][6].max() == 0  # neutral: no AU


def test_intervals():
    from fer_analysis.audit import cl_ci, mean_ci

    iv = cl_ci(35, 100)
    assert iv.mean == 35.0 and iv.low == pytest.approx(26.4, abs=0.1) and iv.high == pytest.approx(44.7, abs=0.1)
    m = mean_ci([0.2, 0.4, float("nan"), 0.6])
    assert m.n == 3 and m.mean == pytest.approx(0.4) and m.low == pytest.approx(0.4 - 4.303 * 0.2 / math.sqrt(3), abs=1e-3)


def test_audit_a_zoo_model_on_a_dataset_then_report_through_the_cli(mlflow_uri, tmp_path):
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
    res = CliRunner().invoke(main, ["report", "--tracking-uri", mlflow_uri, "--out", str(tmp_path / "rep")])
    assert res.exit_code == 0, res.output
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "## Audited models" in md and "| synthetic-rafdb | fer-mini-xception | 48 faces |" in md
    assert "audit_mean_maps.png" in md and (tmp_path / "rep" / "audit_mean_maps.png").stat().st_size > 5000


def test_audit_refuses_mistakes_in_one_sentence(mlflow_uri):
    run = lambda *a: CliRunner().invoke(main, ["audit", *a, "--num-actors", "0", "--tracking-uri", mlflow_uri])  # noqa: E731
    res = run("--model", "nope", "--dataset", "synthetic-rafdb")
    assert res.exit_code == 2 and "unknown model 'nope'; known models: emofan, fer-mini-xception" in res.output
    res = run("--model", "fer-mini-xception")
    assert res.exit_code == 2 and "pass --dataset NAME and/or --images FOLDER" in res.output
    res = run("--model", "fer-mini-xception", "--dataset", "synthetic-rafdb", "--cam", "NoCAM")
    assert res.exit_code == 2 and "not a pytorch-grad-cam class" in res.output
    res = run("--model", "fer-mini-xception", "--images", "/nonexistent/photos")
    assert res.exit_code == 2 and "--images /nonexistent/photos is not a folder" in res.output
    res = run("--model", "timm", "--dataset", "synthetic-rafdb", "--arch", "resnet18")
    assert res.exit_code == 2 and "needs --weights, --classes, --input" in res.output


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


def test_report_rows_zoo_models_by_their_intervals_and_grid_methods_over_seeds():
    import pandas as pd

    from orchestrator.audit_report import model_table

    zoo = {"model": "fer-mini-xception", "group": "fer-mini-xception", "dataset": "synthetic-rafdb", "zoo": True,
           "cl": 35.0, "cl_ci_low": 30.3, "cl_ci_high": 40.3, "test_n": 350.0, "cam_cos": 0.39}
    seeds = [{"model": f"cam (run {i})", "group": "cam w/o AU (grid)", "dataset": "synthetic-rafdb", "zoo": False,
              "cl": cl, "cam_cos": 0.4} for i, cl in enumerate((40.0, 42.0, 44.0))]
    rows = model_table(pd.DataFrame([zoo, *seeds]))
    assert rows[0][:4] == ["synthetic-rafdb", "fer-mini-xception", "350 faces", "35.0 [30.3, 40.3]"]
    assert rows[0][4] == "0.390" and rows[0][6] == "–"  # no interval logged: the value alone; none: a dash
    half = 4.303 * 2.0 / 3 ** 0.5  # t(0.975, 2) x sd / sqrt(n)
    assert rows[1][:4] == ["synthetic-rafdb", "cam w/o AU (grid)", "3 seeds",
                           f"42.0 [{42 - half:.1f}, {42 + half:.1f}] (n=3)"]
    assert rows[1][4] == "0.400 [0.400, 0.400] (n=3)"
