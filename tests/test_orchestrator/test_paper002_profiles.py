"""Paper 002's two profiles: `paper-released` and `paper` differ in exactly the named
fields, each documented; `--print-config` shows every trial's settings offline; the report sets
the published numbers beside ours on RAF-DB / AffectNet and says why not on synthetic data."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from fer_models.config import flatten
from orchestrator import presets, tracking
from orchestrator.cli import main
from orchestrator.presets.paper_released import DIFFERENCES, FIG5_LAMBDAS
from orchestrator.report import build_report
from orchestrator.tables import NO_PUBLISHED, published, published_value

DOCS = Path(__file__).resolve().parents[2] / "docs" / "reproducing-paper-002.md"


def _flat(name: str) -> dict:
    d = presets.get(name).to_dict()
    d.pop("preset")
    return flatten(d)


def test_the_two_profiles_differ_in_exactly_the_named_fields():
    released, paper = _flat("paper-released"), _flat("paper")
    assert set(released) == set(paper)
    differ = {k for k in released if released[k] != paper[k]}
    assert differ == set(DIFFERENCES)
    for field, (r, p) in DIFFERENCES.items():
        assert (released[field], paper[field]) == (r, p)


def test_every_difference_and_new_field_is_in_the_docs_table():
    text = DOCS.read_text()
    rows = [line for line in text.splitlines() if line.startswith("|")]
    for field in DIFFERENCES:
        assert any(f"`{field}`" in row for row in rows), field
    for field in ("metric_def", "head_lr", "head_layers", "nesterov", "lr_step", "lr_gamma", "min_lr", "weights_tag"):
        assert f"`{field}`" in text, field
    header = next(r for r in rows if "released code" in r)
    assert [c.strip() for c in header.strip("|").split("|")] == [
        "setting", "released code", "paper text", "fer-orch `paper`", "fer-orch `paper-released`", "file"]


def test_paper_profiles_settings():
    for name, codebook in (("paper-released", "paper002-released"), ("paper", "paper002")):
        g = presets.get(name)
        assert g.seeds == (0, 1, 2) and g.lambdas == FIG5_LAMBDAS
        assert g.lambdas[:3] == (0.01, 0.1, 1.0) and g.lambdas[-1] == 20.0 and len(g.lambdas) == 22
        assert g.lam is None  # λ chosen on validation
        c = g.train_config("cam", "rafdb", au=True, lam=4.0)
        assert c.data.codebook == codebook and c.metric_def == "released"
        assert (c.backbone, c.weights_tag, c.optimizer, c.nesterov) == ("resnet50-s8", "tv_in1k", "sgd", True)
        assert (c.epochs, c.batch_size) == (100, 32)
        a = g.train_config("cam", "affectnet", au=True, lam=4.0)
        assert (a.epochs, a.batch_size) == (20, 224)
        v = g.train_config("apvit", "rafdb", au=True, lam=4.0)
        assert v.data.image_size == 112 and v.head_lr is None and v.head_layers == ()
    assert presets.for_datasets(("rafdb",)) == "paper"


def test_print_config_shows_every_trial_offline(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("FER_ORCH_HOME", str(home))
    res = CliRunner().invoke(main, ["grid", "--preset", "paper-released", "--datasets", "rafdb,affectnet",
                                    "--print-config"])
    assert res.exit_code == 0, res.output
    out = res.output
    assert "| id | method | dataset | backbone (weights) |" in out
    assert "| cam | rafdb | resnet50-s8 (hub:tv_in1k) | 224 (stored 256) | sgd m0.9 nesterov wd0.0005 |" in out
    assert "deit-small (hub:fb_in1k) for resnet50-s8" in out and "ir50-vit (file:" in out
    assert "backbone 0.002, head+layer5 0.002" in out and "step x0.9 every 4 ep, floor 1e-07" in out
    assert "kmin_term=False" in out and "released_indexing=True" in out and "paper002-released | released" in out
    assert "| grid | S1 | w/ | 4 (val) | 5 | 0,1,2 |" in out and "| lambda | S1 | w/ | 0.01 | 5 | 0,1,2 |" in out
    assert out.rstrip().endswith("# layers: 30 trials")
    assert not home.exists()  # no cache, no weights, no store


@pytest.fixture()
def store(tmp_path, mlflow_template_db):
    shutil.copy(mlflow_template_db, tmp_path / "mlflow.db")
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def _grid_runs(uri, dataset, params=None):
    exp = tracking.ensure_experiment("p", uri)
    parent = tracking.create_grid_run(exp, "grid", {tracking.STUDY_TAG: "grid", "lambda": "4"}, uri)
    trials = []
    for method, au, cl, cam, cam_avg in (("cam", False, 88.0, 0.50, 0.53), ("cam", True, 89.0, 0.72, 0.71),
                                         ("apvit", True, 91.5, float("nan"), float("nan"))):
        h = f"{method}-{au}"
        tags = {"method": method, "dataset": dataset, "au": str(au).lower(), "lambda": "4" if au else "0",
                "layers": "5", "seed": "0", tracking.HASH_TAG: h, tracking.STUDY_TAG: "grid"}
        run = tracking.TrialRun(uri, exp, parent, h, tags)
        run.log_params(params or {"metric_def": "released"})
        run.log_metrics({"test_cl": cl, "test_cam_cos": cam, "test_cam_cos_avg": cam_avg, "test_att_cos": 0.8,
                         "test_att_cos_avg": 0.84})
        run.end("FINISHED")
        trials.append({"hash": h, "name": h, "study": "grid"})
    tracking.log_grid_artifacts(parent, "x: 1\n", trials, uri)


def test_report_sets_the_published_numbers_beside_ours_on_paper_data(store, tmp_path):
    _grid_runs(store, "rafdb")
    md = build_report("p", store, tmp_path / "out", log=False).markdown
    assert NO_PUBLISHED not in md
    assert "### Tables 1-2 against paper 002 (rafdb, test)" in md
    # CAM, w/ AU: ours (class mean) 0.71 against the paper's 0.70; CL 89.00 against 88.95
    assert "| cam | w/ | CAM-COS (class mean) | 0.71 | 0.70 | +0.01 |" in md
    assert "| cam | w/ | CL | 89.00 | 88.95 | +0.05 |" in md
    assert "| cam | w/o | ATT-COS (class mean) | 0.84 | 0.57 | +0.27 |" in md
    assert "| apvit | w/ | CL | 91.50 | 91.03 | +0.47 |" in md
    assert "apvit | w/ | CAM-COS" not in md  # blank in the paper, no row
    assert "λ of the w/ AU runs: 4 for every method." in md


def test_report_on_synthetic_data_says_why_there_is_no_published_column(store, tmp_path):
    _grid_runs(store, "synthetic-rafdb", params={"metric_def": "project"})
    md = build_report("p", store, tmp_path / "out", log=False).markdown
    assert md.count(NO_PUBLISHED) == 1 and "against paper 002" not in md


def test_published_numbers_are_consistent_with_the_paper():
    p = published()
    assert set(p.table) == {"1", "2", "3", "fig5"}
    assert len(p[p.table == "1"]) == 84 and len(p[p.table == "2"]) == 44  # APViT has no CAM-COS
    assert all(p.source.str.len() > 10)
    # the same model appears in Table 1, Table 3 (layer 5) and Fig. 5 (λ = 4, its λ)
    t1 = published_value("1", "rafdb", "cam", "cl", True)
    assert t1 == 88.95 == published_value("3", "rafdb", "cam", "cl", True, "5")
    assert published_value("fig5", "rafdb", "cam", "cl", True, lam=4.0) == pytest.approx(t1, abs=0.03)
    assert published_value("fig5", "rafdb", "cam", "cam_cos", False) == pytest.approx(0.55, abs=0.006)
    assert published_value("fig5", "rafdb", "cam", "att_cos", False) == pytest.approx(
        published_value("2", "rafdb", "cam", "att_cos", False), abs=0.006)
    assert isinstance(p, pd.DataFrame)


def test_both_profiles_train_with_the_one_released_recipe():
    """One released augmentation recipe (fer_models.data.steps.RELEASED_RECIPE: rotation p 0.5,
    square crops, jitter p 0.8), in both profiles; APViT's is the same at 112 px."""
    from fer_models.data.steps import RELEASED_RECIPE
    from orchestrator import presets

    for name in ("paper", "paper-released"):
        g = presets.get(name)
        assert tuple(g.base.data.augment) == RELEASED_RECIPE, name
        apvit = g.method_overrides["apvit"]["data"]["augment"]
        assert "resized_crop:0.8-1.0,112,1-1" in apvit and "rotate:6,0.5" in apvit
