"""The documented commands of TFD (paper 001, Table 1) and FER2013 (paper 004, Table 1a) through
the real CLI on their synthetic layouts (faces packed in TFD's .mat files and FER2013's csv,
read by the real ``tfd`` / ``fer2013`` readers). Slow: each trains for real."""

from __future__ import annotations

import pytest
import torch

from tests.test_orchestrator.test_seed_paper_commands import _cli


def _trials(uri: str, experiment: str) -> list:
    from orchestrator import tracking

    c = tracking.client(uri)
    exp = c.get_experiment_by_name(experiment)
    return [r for r in c.search_runs([exp.experiment_id], "tags.`fer_orch.kind` = 'trial'")
            if r.info.status == "FINISHED"]


@pytest.mark.slow
@pytest.mark.ray
def test_paper_001_table_1_on_synthetic_tfd(ray_local, tmp_path):
    """`fer-orch grid --preset khorrami2015 --datasets tfd` on the TFD stand-in: a trial per
    official fold (5), each fold's own validation split, and `fer-orch report` gives mean ± sd
    over the folds."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    small = tmp_path / "small.yaml"  # 48 px instead of 96 so that a CPU trains 5 folds in seconds
    small.write_text("base:\n  data: {image_size: 48}\n")
    _cli("grid", "--preset", "khorrami2015", "--datasets", "synthetic-tfd", "--config", str(small), "--seeds", "1",
         "--epochs", "1", "--experiment", "p001-tfd", "--tracking-uri", uri, "--storage", str(tmp_path / "ray"),
         "--gpus-per-trial", "0", "--cpus-per-trial", "1")
    runs = _trials(uri, "p001-tfd")
    assert sorted(r.data.tags["fold"] for r in runs) == ["0", "1", "2", "3", "4"]
    for r in runs:
        assert r.data.params["method"] == "zerobias-cnn" and r.data.params["data.color"] == "gray"
        assert 0.0 <= r.data.metrics["test_cl"] <= 100.0  # percent
    out = _cli("report", "--experiment", "p001-tfd", "--tracking-uri", uri, "--out", str(tmp_path / "report"),
               "--no-log")
    md = next((tmp_path / "report").glob("*.md")).read_text()
    row = next(line for line in md.splitlines() if line.startswith("| zerobias-cnn"))
    assert "±" in row, out  # mean ± sd over the 5 folds


@pytest.mark.slow
@pytest.mark.ray
def test_paper_004_nn2_and_nn1_on_synthetic_fer2013(ray_local, tmp_path):
    """`fer-orch grid --preset devanand-t` (NN2, 7 classes) and `... --data-opt
    classes=happiness,sadness,neutral --experiment nn1` on the FER2013 stand-in: Training /
    PublicTest / PrivateTest as train / val / test; NN2 has 7 outputs, NN1 sees the three
    classes only and has 3 outputs (paper 004, Fig. 1: "an outputsize of 3")."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    common = ("--datasets", "synthetic-fer2013", "--seeds", "1", "--epochs", "1", "--tracking-uri", uri,
              "--storage", str(tmp_path / "ray"), "--gpus-per-trial", "0", "--cpus-per-trial", "1")
    _cli("grid", "--preset", "devanand-t", *common, "--experiment", "nn2")
    _cli("grid", "--preset", "devanand-t", "--data-opt", "classes=happiness,sadness,neutral", *common,
         "--experiment", "nn1")
    from fer_analysis.hooks import first_tensor
    from fer_models.data.dataset import build_loaders
    from fer_models.data.readers import read_dataset
    from orchestrator import tracking

    for exp, classes in (("nn2", None), ("nn1", "happiness,sadness,neutral")):
        (run,) = _trials(uri, exp)
        assert run.data.params["method"] == "light-cnn" and run.data.params.get("data.options.classes") == classes
        cfg = tracking.load_run_config(run.info.run_id, uri)
        assert cfg.data.image_size == 48 and cfg.data.color == "gray"
        assert 0.0 <= run.data.metrics["test_cl"] <= 100.0  # percent
        # PrivateTest is the test split: its 70 faces, or those of NN1's three classes
        m = read_dataset("synthetic-fer2013", **({"classes": classes} if classes else {}), progress=False)
        assert run.data.metrics["test_n"] == len(m.split("test")) == (70 if classes is None else
                                                                      run.data.metrics["test_n"])
        if classes:
            assert {s.label for s in m.samples} == {3, 4, 6} and run.data.metrics["test_n"] < 70
        # the network's outputs: logged, and rebuilt with that width from MLflow
        outputs = 7 if classes is None else 3
        assert run.data.params["built.num_classes"] == str(outputs)
        assert run.data.params.get("built.class_names") == (None if classes is None else classes)
        model, _ = tracking.load_trained_model(run.info.run_id, uri, "cpu")
        batch = next(iter(build_loaders(cfg.data, 4, cfg.seed, progress=False).test))
        with torch.no_grad():
            assert first_tensor(model(batch["image"])).shape == (len(batch["image"]), outputs)
