"""The seed papers' documented commands (docs/reproducing-seed-papers.md) through the real CLI
on the synthetic layouts: RaFD, KDEF, CK+ and DISFA stand-ins for the real datasets, the same
flags, nothing of the documented path replaced. Slow: each trains or probes for real."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from orchestrator.cli import main


def _cli(*args: str) -> str:
    res = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return res.output


def _summary(client, run_id: str) -> dict:
    path = client.download_artifacts(run_id, "probe/summary.json")
    with open(path) as fh:
        return json.load(fh)


@pytest.fixture
def light_cnn_run(mlflow_store, log_trial):
    """A paper-004 light CNN trial logged as the grid logs it (config + weights)."""
    from fer_models.config import DataConfig, TrainConfig
    from fer_models.methods import build_model
    from orchestrator import tracking

    c, exp = mlflow_store.client, mlflow_store.exp
    parent = c.create_run(exp, tags={tracking.KIND_TAG: "grid"}).info.run_id
    cfg = TrainConfig(method="light-cnn", au=False, data=DataConfig(dataset="synthetic-kdef", image_size=48,
                                                                    color="gray", normalize="none", augment=False))
    torch.manual_seed(0)
    return log_trial(c, exp, parent, cfg, build_model(cfg).state_dict(), "nn2")


@pytest.mark.slow
def test_probe_on_disfa_and_kdef_draws_across_identities(light_cnn_run, mlflow_store):
    """`fer-orch probe --run RUN --dataset disfa` (or `kdef`, `--split all`): the probe set is
    spread over the subjects, not the first rows of one; DISFA's empty train split is no crash."""
    uri, c = mlflow_store.uri, mlflow_store.client
    common = ("--run", light_cnn_run, "--tracking-uri", uri, "--num-actors", "0", "--no-umap", "--device", "cpu")
    out = _cli("probe", *common, "--dataset", "synthetic-disfa", "--n-samples", "60",
               "--data-opt", "n_frames=20")
    assert "probe set: 60 rows of synthetic-disfa (test split) from 6 identities, 10-10 each" in out
    ps = _summary(c, light_cnn_run)["probe_set"]
    assert ps["per_identity"] == {f"SN00{k}": 10 for k in range(1, 7)}
    # every 2nd frame of each subject's 20: the set spans each whole video
    out = _cli("probe", *common, "--dataset", "synthetic-kdef", "--split", "all", "--n-samples", "1000",
               "--untrained-control")  # Table 1a's NN3 beside the trained network
    ps = _summary(c, light_cnn_run)["probe_set"]
    assert ps["rows"] == 140 and ps["split"] == "all"  # every straight image: 10 subjects x 2 sessions x 7
    assert ps["per_identity"] == {f"{s}0{k}": 14 for s in "FM" for k in range(1, 6)}
    metrics = c.get_run(light_cnn_run).data.metrics
    assert "silhouette_identity_dense_1" in metrics and "silhouette_identity_dense_1_untrained" in metrics
    out = _cli("probe", *common, "--dataset", "synthetic-kdef", "--probes", "valence-arousal")
    assert "PC1~valence r=" in out
    ps = _summary(c, light_cnn_run)["probe_set"]
    assert ps["split"] == "test" and ps["identities"] == 2 and ps["rows"] == 28  # fold 0 of 5: 2 subjects


@pytest.fixture
def trained_light_cnn_run(mlflow_store, log_trial):
    """A paper-004 light CNN trained for a few epochs on the KDEF stand-in's training split
    (so that it differs from the untrained control of the same seed), logged as the grid logs it."""
    from fer_analysis.hooks import first_tensor
    from fer_models.config import DataConfig, TrainConfig
    from fer_models.data.dataset import build_loaders
    from fer_models.methods import build_model
    from orchestrator import tracking

    c, exp = mlflow_store.client, mlflow_store.exp
    parent = c.create_run(exp, tags={tracking.KIND_TAG: "grid"}).info.run_id
    cfg = TrainConfig(method="light-cnn", au=False, data=DataConfig(dataset="synthetic-kdef", image_size=48,
                                                                    color="gray", normalize="none", augment=False))
    torch.manual_seed(0)
    net = build_model(cfg)
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    loaders = build_loaders(cfg.data, 16, 0, progress=False)
    for _ in range(4):
        for batch in loaders.train:
            opt.zero_grad()
            torch.nn.functional.cross_entropy(first_tensor(net(batch["image"])), batch["label"]).backward()
            opt.step()
    return log_trial(c, exp, parent, cfg, net.eval().state_dict(), "nn2-trained")


def _csv(client, run_id: str, path: str) -> list[dict]:
    import csv

    with open(client.download_artifacts(run_id, path), newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.slow
def test_probe_figures_faces_control_maps_and_correct(trained_light_cnn_run, mlflow_store):
    """`fer-orch probe --run RUN --dataset kdef --untrained-control` on the KDEF stand-in makes
    paper 004's Fig. 2d / 6 (21 faces along PC1, PC2, UMAP1, UMAP2 of the penultimate layer),
    Fig. 3c (the untrained control's maps) and Fig. 7 (right and wrong predictions on PC1/PC2)."""
    from fer_analysis.hooks import first_tensor
    from fer_models.data.dataset import build_loaders
    from orchestrator import tracking

    uri, c, run = mlflow_store.uri, mlflow_store.client, trained_light_cnn_run
    out = _cli("probe", "--run", run, "--dataset", "synthetic-kdef", "--untrained-control", "--tracking-uri", uri,
               "--num-actors", "0", "--device", "cpu")
    files = {f.path for f in c.list_artifacts(run, "probe/faces")} | {f.path for f in c.list_artifacts(run, "probe/maps")}
    assert {"probe/faces/face_strips.png", "probe/maps/maps.png", "probe/maps/maps_untrained.png"} <= files, files
    # Fig. 2d / 6: 21 faces per axis, left to right from the smallest coordinate to the largest
    strips, coords = _csv(c, run, "probe/faces/face_strips.csv"), _csv(c, run, "probe/faces/face_coords.csv")
    assert len(coords) == 28  # KDEF's test fold: 2 subjects x 2 sessions x 7 expressions
    for axis in ("PC1", "PC2", "UMAP1", "UMAP2"):
        picked = [r for r in strips if r["axis"] == axis]
        assert len(picked) == 21
        along = [float(r["coordinate"]) for r in picked]
        assert along == sorted(along)
        every = [float(r[axis]) for r in coords]
        assert along[0] == pytest.approx(min(every)) and along[-1] == pytest.approx(max(every))
        assert all(float(coords[int(r["row"])][axis]) == pytest.approx(float(r["coordinate"])) for r in picked)
    # Fig. 3c: the control's maps are its own
    maps = _csv(c, run, "probe/maps/maps_silhouette_2d.csv")
    trained = {r["layer"]: r for r in maps if r["network"] == "trained"}
    control = {r["layer"]: r for r in maps if r["network"] == "untrained"}
    assert set(trained) == set(control) and "dropout_4" in control
    assert any(trained[k]["umap_identity"] != control[k]["umap_identity"] for k in trained)
    # Fig. 7: the counts are the network's own predictions on the test split, computed here again
    model, cfg = tracking.load_trained_model(run, uri, "cpu")
    right = total = 0
    for batch in build_loaders(cfg.data, 16, cfg.seed, progress=False).test:
        with torch.no_grad():
            right += int((first_tensor(model(batch["image"])).argmax(1) == batch["label"]).sum())
        total += len(batch["label"])
    m = c.get_run(run).data.metrics
    assert total == 28 and m["correct_n"] == right and m["wrong_n"] == total - right
    per_class = _csv(c, run, "probe/correct/correct_per_class.csv")
    assert [int(r["faces"]) for r in per_class] == [4] * 7
    assert sum(int(r["correct"]) for r in per_class) == right
    assert f"predictions on the probe set: {right} correct, {total - right} wrong, 0 unlabelled" in out


@pytest.mark.slow
def test_block_maps_on_the_light_cnn(light_cnn_run, mlflow_store):
    """`fer-orch explain --run RUN --job block-maps`: Grad-CAM at paper 004's Fig. 2 blocks of the
    light CNN and the per-class mean maps, logged to the run."""
    uri, c = mlflow_store.uri, mlflow_store.client
    _cli("explain", "--run", light_cnn_run, "--job", "block-maps", "--tracking-uri", uri, "--num-actors", "0",
         "--device", "cpu")
    files = {f.path for f in c.list_artifacts(light_cnn_run, "explain/block-maps")}
    assert {"explain/block-maps/gradcam_blocks.png", "explain/block-maps/class_mean_maps.png"} <= files, files
    with open(c.download_artifacts(light_cnn_run, "explain/block-maps/gradcam.json")) as fh:
        got = json.load(fh)
    assert got["blocks"] == ["batchnorm_1", "conv2d_4", "conv2d_6"] and got["images"] > 0
    assert sum(got["class_counts"].values()) > 0


def _grid_run_ids(uri: str, experiment: str) -> dict[str, str]:
    """{target: trial run id} of the finished trials of ``experiment``."""
    from orchestrator import tracking

    c = tracking.client(uri)
    exp = c.get_experiment_by_name(experiment)
    runs = c.search_runs([exp.experiment_id], "tags.`fer_orch.kind` = 'trial'")
    return {r.data.params.get("target", "expression"): r.info.run_id for r in runs if r.info.status == "FINISHED"}


def _fer2013_csv(root, n: int = 210) -> dict[str, list[int]]:
    """FER2013's layout (``fer2013.csv``: emotion, 2,304 grey pixels, Usage) with synthetic
    48 px faces, 7 expressions in FER's ids (the project's order), 70 % Training and 15 % each
    PublicTest and PrivateTest; returns the labels written per Usage."""
    import numpy as np

    from fer_models.data.synth import generate

    faces = generate(n, image_size=48, seed=3, n_identities=30)
    grey = faces.images.mean(axis=3).round().astype(np.uint8).reshape(n, -1)
    usage = ["Training"] * int(0.7 * n) + ["PublicTest"] * int(0.15 * n)
    usage += ["PrivateTest"] * (n - len(usage))
    lines = ["emotion,pixels,Usage"] + [f"{int(faces.labels[i])},{' '.join(map(str, grey[i]))},{usage[i]}"
                                        for i in range(n)]
    root.mkdir(parents=True, exist_ok=True)
    (root / "fer2013.csv").write_text("\n".join(lines) + "\n")
    return {u: [int(faces.labels[i]) for i in range(n) if usage[i] == u] for u in set(usage)}


@pytest.mark.slow
@pytest.mark.ray
def test_paper_004_nn1_on_fer2013s_layout(ray_local, tmp_path):
    """`fer-orch grid --preset devanand-t --data-opt classes=happiness,sadness,neutral --experiment nn1`
    on a FER2013 CSV of synthetic faces (the preset's own dataset, read from its default root):
    every split holds only the three classes, and the network has NN1's 3 outputs (happiness,
    sadness, neutral), named so in its MLflow run, its confusion matrix and the probe's
    `correct` counts (`fer-orch probe --run RUN --dataset kdef`, the KDEF stand-in's test fold)."""
    import os
    from pathlib import Path

    from fer_analysis.hooks import first_tensor
    from fer_models.data.dataset import build_loaders
    from orchestrator import tracking

    written = _fer2013_csv(Path(os.environ["FER_ORCH_HOME"]) / "datasets" / "FER2013")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    _cli("grid", "--preset", "devanand-t", "--data-opt", "classes=happiness,sadness,neutral", "--experiment", "nn1",
         "--seeds", "1", "--epochs", "1", "--tracking-uri", uri, "--storage", str(tmp_path / "ray"),
         "--gpus-per-trial", "0", "--cpus-per-trial", "1")
    run = _grid_run_ids(uri, "nn1")["expression"]
    model, cfg = tracking.load_trained_model(run, uri, "cpu")
    assert cfg.method == "light-cnn" and cfg.data.dataset == "fer2013"
    assert cfg.data.options == {"classes": "happiness,sadness,neutral"}
    assert model.class_names == ["happiness", "sadness", "neutral"]
    loaders = build_loaders(cfg.data, 32, cfg.seed, progress=False)
    assert loaders.num_classes == 3
    for split in ("train", "val", "test"):
        pairs = {(int(a), int(b)) for b in getattr(loaders, split) for a, b in zip(b["label"], b["expression"])}
        assert {e for _, e in pairs} == {3, 4, 6}, (split, pairs)  # happiness, sadness, neutral (project order)
        assert pairs == {(0, 3), (1, 4), (2, 6)}, (split, pairs)  # ... are the outputs 0, 1, 2
    batch = next(iter(loaders.test))
    with torch.no_grad():
        assert first_tensor(model(batch["image"])).shape[1] == 3
    c = tracking.client(uri)
    data = c.get_run(run).data
    assert data.params["built.num_classes"] == "3" and data.params["built.class_names"] == "happiness,sadness,neutral"
    assert data.metrics["test_n"] == sum(k in (3, 4, 6) for k in written["PrivateTest"]) > 0
    with open(c.download_artifacts(run, "matrices/confusion.csv")) as fh:
        rows = [line.split(",") for line in fh.read().splitlines()]
    assert rows[0][1:] == ["happiness", "sadness", "neutral"] and [r[0] for r in rows[1:]] == rows[0][1:]
    assert sum(float(v) for r in rows[1:] for v in r[1:]) == data.metrics["test_n"]
    # the probe compares NN1's predictions with KDEF's expressions in the project's order
    out = _cli("probe", "--run", run, "--dataset", "synthetic-kdef", "--probes", "correct,silhouette",
               "--tracking-uri", uri, "--num-actors", "0", "--device", "cpu")
    kdef = build_loaders(dataclasses.replace(cfg.data, dataset="synthetic-kdef", options={}, augment=False), 16,
                         cfg.seed, progress=False, trainable=False).test
    right = kept = total = 0
    for b in kdef:
        with torch.no_grad():
            pred = torch.tensor([3, 4, 6])[first_tensor(model(b["image"])).argmax(1)]
        inside = torch.isin(b["label"], torch.tensor([3, 4, 6]))
        right += int(((pred == b["label"]) & inside).sum())
        kept, total = kept + int(inside.sum()), total + len(b["label"])
    m = c.get_run(run).data.metrics
    assert (m["correct_n"], m["wrong_n"], m["correct_outside_n"]) == (right, kept - right, total - kept)
    assert kept == 12 and total == 28  # KDEF's test fold: 2 subjects x 2 sessions x 7 expressions
    per_class = _csv(c, run, "probe/correct/correct_per_class.csv")
    assert [r["class"] for r in per_class] == ["happiness", "sadness", "neutral"]
    assert np.isfinite(m["silhouette_expression_dropout_4"])
    assert f"{total - kept} of an expression the network has no output for" in out


@pytest.mark.slow
@pytest.mark.ray
def test_paper_003_commands_on_synthetic_rafd(ray_local, tmp_path):
    """`fer-orch grid --preset fang2017` and `--preset fang2017-identity` on the RaFD stand-in
    (one experiment: the second grid finds it and must not choose λ), then `fer-orch explain
    --run EXPR --job backtrack --compare-run IDENT`: each network on its own test split, the
    overlap of the two random splits reported and left out of the shared comparison."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    small = tmp_path / "small.yaml"  # 48 px instead of 224 so that a CPU trains it in seconds
    small.write_text("base:\n  data: {image_size: 48}\n")
    common = ("--datasets", "synthetic-rafd", "--config", str(small), "--seeds", "1", "--epochs", "1",
              "--experiment", "p003", "--tracking-uri", uri, "--storage", str(tmp_path / "ray"),
              "--gpus-per-trial", "0", "--cpus-per-trial", "1")
    _cli("grid", "--preset", "fang2017", *common)
    _cli("grid", "--preset", "fang2017-identity", *common)
    runs = _grid_run_ids(uri, "p003")
    assert set(runs) == {"expression", "identity"}, runs
    from orchestrator import tracking

    c = tracking.client(uri)
    parent = c.get_run(runs["identity"]).data.tags["mlflow.parentRunId"]
    assert c.get_run(parent).data.tags["lambda_source"].startswith("unused")
    # Fig. 5: the error per epoch, as MLflow's history of val_cl and the trial's history.csv
    assert "history.csv" in {f.path for f in c.list_artifacts(runs["expression"])}
    assert len(c.get_metric_history(runs["expression"], "val_cl")) == 1  # one epoch here
    _cli("explain", "--run", runs["expression"], "--job", "backtrack", "--compare-run", runs["identity"],
         "--tracking-uri", uri, "--num-actors", "0", "--device", "cpu", "--compare-images", "400")
    m = c.get_run(runs["expression"]).data.metrics
    # own test splits: 12 per (angle, expression) = 288 and 12 per (angle, subject) = 288
    assert m["backtrack_compare_own_test_a"] == 288 and m["backtrack_compare_own_test_b"] == 288
    assert m["backtrack_compare_own_misclassified_a"] > 0 and m["backtrack_compare_own_misclassified_b"] > 0
    # the two random splits share images: reported, and left out of the shared comparison
    overlap = m["backtrack_compare_overlap_a_test_in_b_trainval"]
    assert 0 < overlap < 288 and m["backtrack_compare_overlap_b_test_in_a_trainval"] > 0
    assert m["backtrack_compare_images"] == 288 - overlap
    md = open(c.download_artifacts(runs["expression"], "explain/backtrack/compare.md")).read()
    assert "Overlap of the two runs' splits" in md and "on its own test split" in md
    assert m["backtrack_cases"] == m["backtrack_pairs_exact"] + m["backtrack_pairs_fallback"]


@pytest.mark.slow
@pytest.mark.ray
def test_paper_001_commands_on_synthetic_ckplus(ray_local, tmp_path):
    """`fer-orch grid --preset khorrami2015 --datasets ckplus --data-opt classes=6` on the CK+
    stand-in (subject folds), then `fer-orch explain --run PARENT --job topn --job filter-au`
    on its trials: Table 4's rows and the top-10 images of the same filters."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    small = tmp_path / "small.yaml"
    small.write_text("base:\n  data: {image_size: 48}\n")
    out = _cli("grid", "--preset", "khorrami2015", "--datasets", "synthetic-ckplus", "--data-opt", "classes=6",
               "--folds", "2", "--config", str(small), "--seeds", "1", "--epochs", "1", "--experiment", "p001",
               "--tracking-uri", uri, "--storage", str(tmp_path / "ray"), "--gpus-per-trial", "0",
               "--cpus-per-trial", "1")
    from orchestrator import tracking

    c = tracking.client(uri)
    exp = c.get_experiment_by_name("p001")
    parent = next(r for r in c.search_runs([exp.experiment_id]) if r.data.tags.get(tracking.KIND_TAG) == "grid")
    trials = tracking.resolve_runs(parent.info.run_id, uri)
    assert len(trials) == 2, out  # one per fold
    six = ["anger", "disgust", "fear", "happiness", "sadness", "surprise"]  # Table 3's 6 classes: 6 outputs
    for rid in trials:
        params = c.get_run(rid).data.params
        assert params["built.num_classes"] == "6" and "built.class_names" not in params  # labels kept as they are
        with open(c.download_artifacts(rid, "matrices/confusion.csv")) as fh:
            assert fh.readline().strip().split(",")[1:] == six
    _cli("explain", "--run", parent.info.run_id, "--job", "topn", "--job", "filter-au", "--filters", "3",
         "--min-count", "3", "--permutations", "50", "--tracking-uri", uri, "--num-actors", "0", "--device", "cpu")
    for rid in trials:
        files = {f.path for f in c.list_artifacts(rid, "explain/filter-au")}
        table = next(p for p in files if p.endswith(".md") and "filter_au_" in p)
        md = open(c.download_artifacts(rid, table)).read()
        assert "frames: expressive" in md and "among units of one frame count" in md
        assert md.count("\n| ") >= 3  # a row per filter
        matrix = next(p for p in files if p.endswith(".csv") and "kl_matrix_" in p)
        header = open(c.download_artifacts(rid, matrix)).readline().strip().split(",")
        assert {"AU11", "AU14", "AU22", "AU43"} <= set(header)  # CK+'s AUs beyond the codebooks' are tested
        topn = {f.path for f in c.list_artifacts(rid, "explain/topn")}
        assert any(p.endswith(".png") for p in topn)
        csv_path = next(p for p in topn if p.endswith(".csv"))
        rows = open(c.download_artifacts(rid, csv_path)).read().strip().splitlines()[1:]
        assert len(rows) == 3 * 10  # 3 filters x the paper's 10 images each


def _doc_yaml(name: str) -> dict:
    """The YAML block of docs/reproducing-seed-papers.md whose first line names ``name``."""
    import re
    from pathlib import Path

    import yaml

    doc = (Path(__file__).resolve().parents[2] / "docs" / "reproducing-seed-papers.md").read_text()
    block = next(b for b in re.findall(r"```yaml\n(.*?)```", doc, re.S) if b.startswith(f"# {name}"))
    return yaml.safe_load(block)


@pytest.mark.slow
@pytest.mark.ray
def test_paper_001_plain_variant_from_the_docs(ray_local, tmp_path):
    """`fer-orch grid --preset khorrami2015 --config plain.yaml --experiment 001-plain` with the
    docs' plain.yaml (no dropout, no augmentation; 48 px here): the trials train without either."""
    import yaml

    from orchestrator import tracking

    plain = _doc_yaml("plain.yaml")
    assert plain["base"]["method_kwargs"]["dropout"] == 0.0 and plain["base"]["data"]["augment"] == []
    plain["base"]["data"]["image_size"] = 48  # small, like the other synthetic CK+ test
    path = tmp_path / "plain.yaml"
    path.write_text(yaml.safe_dump(plain))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    _cli("grid", "--preset", "khorrami2015", "--config", str(path), "--experiment", "001-plain",
         "--datasets", "synthetic-ckplus", "--data-opt", "classes=6", "--folds", "2", "--seeds", "1",
         "--epochs", "1", "--tracking-uri", uri, "--storage", str(tmp_path / "ray"), "--gpus-per-trial", "0",
         "--cpus-per-trial", "1")
    c = tracking.client(uri)
    exp = c.get_experiment_by_name("001-plain")
    runs = [r for r in c.search_runs([exp.experiment_id], "tags.`fer_orch.kind` = 'trial'")
            if r.info.status == "FINISHED"]
    assert len(runs) == 2  # one per fold
    for r in runs:
        cfg = tracking.load_run_config(r.info.run_id, uri)
        assert cfg.method == "zerobias-cnn" and cfg.method_kwargs == {"dropout": 0.0, "init": "khorrami"}
        assert tuple(cfg.data.augment) == () and cfg.data.image_size == 48
