"""The seed papers' documented commands (docs/reproducing-seed-papers.md) through the real CLI
on the synthetic layouts: RaFD, KDEF, CK+ and DISFA stand-ins for the real datasets, the same
flags, nothing of the documented path replaced. Slow: each trains or probes for real."""

from __future__ import annotations

import json

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
