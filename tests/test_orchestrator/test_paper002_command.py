"""Paper 002's documented command through the real CLI: `fer-orch grid --preset paper-released
--datasets rafdb,affectnet`, then `fer-orch report` (docs/reproducing-paper-002.md), on the two
datasets' synthetic stand-ins. Faked at the edge only: the datasets (stand-ins, which take the
real datasets' `dataset_overrides`), the ImageNet weights (none can be downloaded: off) and the
cost (64 px faces, one method, one seed, one epoch, a two-value λ study and one layer set)."""

from __future__ import annotations

import re

import pytest
import yaml
from click.testing import CliRunner

from orchestrator import presets
from orchestrator.cli import main


def _cli(*args: str) -> str:
    res = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return res.output


def _small_yaml(path) -> list[str]:
    """The preset's recipe at 64 px instead of 224 (stored 73 instead of 256): the released
    train steps with their sizes scaled, weights off, small stand-ins, a tiny λ and layer
    study. Returns the train steps written."""
    released = presets.get("paper-released").base.data
    steps = [s.replace("resize:256", "resize:73").replace(",224,", ",64,") for s in released.augment]
    assert steps != list(released.augment)  # the sizes are where the preset says
    path.write_text(yaml.safe_dump({
        "lambdas": [1.0, 4.0],
        "layer_sets": ["5+4"],
        "base": {"pretrained": False,  # no download here: the ImageNet weights are the one thing off
                 "data": {"image_size": 64, "stored_size": 73, "map_size": 8, "num_workers": 0,
                          "augment": steps, "eval_steps": ["resize:64"],
                          "options": {"n_train": 112, "n_test": 56}}},
    }))
    return steps


def _md_rows(md: str, table: str, dataset: str) -> dict[str, str]:
    """The `cam` row of ``dataset`` in the report's ``### <table>`` section, header -> cell."""
    section = re.search(rf"^### {table}\b.*?(?=^### |\Z)", md, re.S | re.M).group(0)
    block = section.split(f"**{dataset}**", 1)[1].strip().split("\n\n", 1)[0].splitlines()
    header = [c.strip() for c in block[0].strip("|").split("|")]
    row = next(line for line in block[2:] if line.startswith("| cam |"))
    return dict(zip(header, (c.strip() for c in row.strip("|").split("|"))))


@pytest.mark.slow
@pytest.mark.ray
def test_paper_released_grid_and_report_on_synthetic_rafdb_affectnet(ray_local, tmp_path):
    """`fer-orch grid --preset paper-released --datasets rafdb,affectnet` (here
    synthetic-rafdb,synthetic-affectnet), then `fer-orch report`: every trial finishes and logs
    Figs. 6-9's mean maps and Figs. 10-11's matrices, w/o and w/ AU on both datasets; the
    report's Tables 1-2 hold those trials' numbers; the trials ran the released recipe."""
    from orchestrator import tracking

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    steps = _small_yaml(tmp_path / "small.yaml")
    _cli("grid", "--preset", "paper-released", "--datasets", "synthetic-rafdb,synthetic-affectnet",
         "--config", str(tmp_path / "small.yaml"), "--methods", "cam", "--seeds", "1", "--epochs", "1",
         "--experiment", "p002", "--tracking-uri", uri, "--storage", str(tmp_path / "ray"),
         "--gpus-per-trial", "0", "--cpus-per-trial", "1")
    c = tracking.client(uri)
    exp = c.get_experiment_by_name("p002").experiment_id
    runs = c.search_runs([exp], "tags.`fer_orch.kind` = 'trial'")
    assert len(runs) == 6 and {r.info.status for r in runs} == {"FINISHED"}  # λ: w/o, 1, 4; AffectNet: 2; layers: 1
    assert {(r.data.tags["dataset"], r.data.tags["au"]) for r in runs} == {
        (d, au) for d in ("synthetic-rafdb", "synthetic-affectnet") for au in ("false", "true")}
    for r in runs:
        files = {f.path for d in ("maps", "matrices") for f in c.list_artifacts(r.info.run_id, d)}
        assert {"maps/mean_cam.png", "maps/mean_att.png", "matrices/confusion.png", "matrices/cosine.png"} <= files
        p = r.data.params  # the released recipe (orchestrator/presets/paper_released.py)
        assert (p["backbone"], p["weights_tag"], p["pretrained"]) == ("resnet50-s8", "tv_in1k", "False")
        assert (p["optimizer"], p["nesterov"], p["weight_decay"], p["lr"]) == ("sgd", "True", "0.0005", "0.002")
        assert (p["data.codebook"], p["metric_def"], p["data.augment"]) == ("paper002-released", "released", str(steps))
        affectnet = r.data.tags["dataset"] == "synthetic-affectnet"
        assert (p["epochs"], p["batch_size"]) == ("1", "224" if affectnet else "32")  # --epochs beats AffectNet's 20
    out = tmp_path / "report"
    _cli("report", "--experiment", "p002", "--tracking-uri", uri, "--out", str(out))
    md = (out / "report.md").read_text()
    lam = re.search(r"λ = (\S+) \(validation", md).group(1)  # chosen on validation from the λ study
    main_grid = [r for r in runs if r.data.tags["layers"] == "5" and r.data.tags["lambda"] in ("0", lam)]
    for dataset in ("synthetic-rafdb", "synthetic-affectnet"):
        m = {r.data.tags["au"]: r.data.metrics for r in main_grid if r.data.tags["dataset"] == dataset}
        t1, t2 = _md_rows(md, "Table 1", dataset), _md_rows(md, "Table 2", dataset)
        for side, au in (("w/o", "false"), ("w/", "true")):
            assert t1[f"CL {side} AU"] == f"{m[au]['test_cl']:.2f}"
            assert t1[f"CAM-COS {side} AU"] == f"{m[au]['test_cam_cos']:.2f}"
            assert t2[f"ATT-COS {side} AU"] == f"{m[au]['test_att_cos']:.2f}"
    assert "### Table 3" in md and "| w/ AU at 5+4 |" in md and (out / "fig5_lambda.png").is_file()


def test_epochs_flag_beats_the_presets_per_dataset_epochs():
    """`--epochs 1` trains every trial once, AffectNet's too (the preset's 20 there); the
    rest of AffectNet's override (batch 224) stays."""
    from orchestrator.commands.grid import build_grid_config

    g = build_grid_config(datasets="rafdb,affectnet", preset="paper-released", epochs=1)
    for dataset, batch in (("rafdb", 32), ("affectnet", 224), ("synthetic-affectnet", 224)):
        cfg = g.train_config("cam", dataset, au=False)
        assert (cfg.epochs, cfg.batch_size) == (1, batch)
    g = build_grid_config(datasets="rafdb,affectnet", preset="paper-released")
    assert g.train_config("cam", "affectnet", au=False).epochs == 20
