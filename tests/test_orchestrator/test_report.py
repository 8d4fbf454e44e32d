"""`fer-orch report` rebuilds the paper's tables from a hand-made MLflow store."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from orchestrator import tracking
from orchestrator.report import build_report


def _trial(uri, exp, parent, study, method, dataset, au, seed, metrics, lam=2.0, layers="5"):
    h = f"{study}-{method}-{dataset}-{au}-{seed}-{lam}-{layers}"
    tags = {
        "method": method, "dataset": dataset, "au": str(au).lower(), "lambda": f"{lam:g}" if au else "0",
        "layers": layers, "seed": str(seed), tracking.HASH_TAG: h, tracking.STUDY_TAG: study,
    }
    run = tracking.TrialRun(uri, exp, parent, h, tags)
    run.log_metrics({f"test_{k}": v for k, v in metrics.items()})
    run.end("FINISHED")
    return {"hash": h, "name": h, "study": study}


@pytest.fixture(scope="module")
def store(tmp_path_factory, mlflow_template_db):
    tmp_path = tmp_path_factory.mktemp("store")
    shutil.copy(mlflow_template_db, tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    exp = tracking.ensure_experiment("rep", uri)
    # main grid: cam (AU helps), gradcam (AU hurts CL), acol (no difference: +3 / -3 by
    # seed), two seeds each, one dataset of 500 test faces
    gp = tracking.create_grid_run(exp, "grid", {tracking.STUDY_TAG: "grid", "lambda": "2"}, uri)
    trials = []
    for seed, jitter in ((0, -1.0), (1, 1.0)):
        for au, cl in ((False, 70.0), (True, 70.0 + 3 * jitter)):
            trials.append(_trial(uri, exp, gp, "grid", "acol", "synthetic-rafdb", au, seed,
                                 {"cl": cl, "cam_cos": 0.5, "att_cos": 0.4, "cam_cos_avg": 0.45, "n": 500}))
        trials.append(_trial(uri, exp, gp, "grid", "cam", "synthetic-rafdb", False, seed,
                             {"cl": 80 + jitter, "cam_cos": 0.50, "att_cos": 0.4, "gt_cam_cos": 0.3, "gt_att_cos": 0.3}))
        trials.append(_trial(uri, exp, gp, "grid", "cam", "synthetic-rafdb", True, seed,
                             {"cl": 84 + jitter, "cam_cos": 0.70, "att_cos": 0.8, "gt_cam_cos": 0.5, "gt_att_cos": 0.6}))
        trials.append(_trial(uri, exp, gp, "grid", "gradcam", "synthetic-rafdb", False, seed,
                             {"cl": 82.0, "cam_cos": 0.55, "att_cos": 0.5, "gt_cam_cos": 0.3, "gt_att_cos": 0.3}))
        trials.append(_trial(uri, exp, gp, "grid", "gradcam", "synthetic-rafdb", True, seed,
                             {"cl": 81.0, "cam_cos": 0.60, "att_cos": 0.7, "gt_cam_cos": 0.4, "gt_att_cos": 0.5}))
    tracking.log_grid_artifacts(gp, "x: 1\n", trials, uri)
    tracking.end_run(gp, "FINISHED", uri)
    # an unfinished trial must be ignored
    bad = tracking.TrialRun(uri, exp, gp, "bad", {"method": "cam", "dataset": "synthetic-rafdb", "au": "true",
                                                   tracking.HASH_TAG: trials[1]["hash"] + "x"})
    bad.log_metrics({"test_cl": 1.0})
    # λ ablation and layer ablation in another invocation
    lp = tracking.create_grid_run(exp, "abl", {tracking.STUDY_TAG: "lambda,layers"}, uri)
    abl = [_trial(uri, exp, lp, "lambda", "cam", "synthetic-rafdb", False, 0, {"cl": 80, "cam_cos": 0.5, "att_cos": 0.4})]
    for lam in (0.5, 2.0, 8.0):
        abl.append(_trial(uri, exp, lp, "lambda", "cam", "synthetic-rafdb", True, 0,
                          {"cl": 80 + lam, "cam_cos": 0.5 + lam / 20, "att_cos": 0.6}, lam=lam))
    for layers, cl in (("1", 79.0), ("5", 85.0), ("5+4", 83.0)):
        abl.append(_trial(uri, exp, lp, "layers", "cam", "synthetic-rafdb", True, 0,
                          {"cl": cl, "cam_cos": 0.6, "att_cos": 0.7, "att_cos_5": 0.7}, layers=layers))
    abl.append({**abl[0], "study": "layers"})  # the vanilla model is shared by both ablations
    tracking.log_grid_artifacts(lp, "x: 1\n", abl, uri)
    return uri, gp, lp


def test_report_tables_from_mlflow(store, tmp_path):
    uri, gp, lp = store
    rep = build_report("rep", uri, tmp_path / "out")
    assert rep.counts == {"grid": 12, "layers": 4, "au-source": 0, "lambda": 4}
    t1 = pd.read_csv(tmp_path / "out" / "table1.csv")
    cam = t1[(t1.method == "cam") & (t1.metric == "cl")].set_index("au")
    assert cam.loc[True, "mean"] == pytest.approx(84.0) and cam.loc[False, "mean"] == pytest.approx(80.0)
    assert cam.loc[True, "std"] == pytest.approx(2 ** 0.5)  # seeds 83 and 85
    assert (cam["n"] == 2).all()
    md = rep.markdown
    # Table 1 row of cam: w/ AU in bold with an up arrow; gradcam CL went down
    cam_row = next(line for line in md.splitlines() if line.startswith("| cam |"))  # one dataset: one table
    assert "**84.00 ± 1.41**" in cam_row and "↑ +4.00" in cam_row
    grad_row = next(line for line in md.splitlines() if line.startswith("| gradcam |"))
    assert "**82.00 ± 0.00**" in grad_row and "↓ -1.00" in grad_row
    # acol: CL +3 on one seed, -3 on the other: the interval contains 0, nothing is bold
    acol_row = next(line for line in md.splitlines() if line.startswith("| acol |"))
    assert "+0.00 [-38.12, +38.12] n.s." in acol_row and "**" not in acol_row.split("|")[4]
    assert "**" not in acol_row.split("|")[2] + acol_row.split("|")[3]
    assert "95% Student t interval" in md and "over seeds" in md  # the legend says which interval
    # the test split's own sampling error, from the logged test_n
    assert "Test split (synthetic-rafdb): 500 faces" in md
    acol = t1[(t1.method == "acol") & (t1.metric == "cl") & ~t1.au]
    assert acol["cl_ci_low"].item() == pytest.approx(65.84, abs=0.01)  # Wilson, 350/500 (by hand: 0.6984 - 0.0400)
    # the class mean of CAM-COS beside the per-sample mean
    assert "CAM-COS (class mean) w/o AU" in md
    assert not acol.empty and t1.loc[(t1.method == "cam") & (t1.metric == "cl") & t1.au, "delta_significant"].item()
    assert "Table 2" in md and "Table 1b" in md and "Table 3" in md
    # the unfinished run's CL=1 never enters the tables
    assert "1.00 |" not in cam_row
    t3 = pd.read_csv(tmp_path / "out" / "table3_layers.csv")
    assert list(t3["layers"].fillna("")) == ["", "1", "5", "5+4"]
    assert t3.loc[t3.layers == "5", "cl_mean"].item() == pytest.approx(85.0)
    f5 = pd.read_csv(tmp_path / "out" / "fig5_lambda.csv")
    assert list(f5["lam"]) == [0.5, 2.0, 8.0]
    for png in ("fig5_lambda.png", "deltas.png"):
        assert (tmp_path / "out" / png).stat().st_size > 5000
    # logged to the parent runs
    c = tracking.client(uri)
    assert "report/report.md" in {a.path for a in c.list_artifacts(gp, "report")}
    assert "report/fig5_lambda.png" in {a.path for a in c.list_artifacts(lp, "report")}


def test_report_unknown_experiment_is_one_sentence(tmp_path, mlflow_uri):
    from fer_models.errors import FerOrchError

    with pytest.raises(FerOrchError, match="no MLflow experiment 'nope'.*fer-orch grid"):
        build_report("nope", mlflow_uri, tmp_path / "out")


def test_report_cli(store, tmp_path):
    from click.testing import CliRunner

    from orchestrator.cli import main

    uri, _gp, _lp = store
    res = CliRunner().invoke(main, ["report", "--experiment", "rep", "--tracking-uri", uri, "--out", str(tmp_path / "o2")])
    assert res.exit_code == 0, res.output
    assert "Table 1" in res.output and (tmp_path / "o2" / "report.md").is_file()


def test_paired_cells_mark_a_planted_difference_and_not_a_null_one():
    """The report's Δ cell: a planted +5 points over 5 seeds (seed noise sd 1) is marked with
    an arrow and bolds the w/ AU side; the same seeds with no planted effect print n.s."""
    import numpy as np

    from orchestrator.tables import delta_cell, mark, paired

    rng = np.random.default_rng(0)
    seed_effect = rng.normal(0, 3, 5)  # shared by both runs of a seed: pairing removes it

    def frame(shift):
        return (pd.DataFrame({"seed": range(5), "cl": 70 + seed_effect + rng.normal(0, 1, 5)}),
                pd.DataFrame({"seed": range(5), "cl": 70 + seed_effect + shift + rng.normal(0, 1, 5)}))

    wo, w = frame(5.0)
    d = paired(wo, w, "cl")
    assert d.significant and delta_cell(d).startswith("↑ +") and "n.s." not in delta_cell(d)
    assert mark("75.00 ± 3.00", d, higher=True) == "**75.00 ± 3.00**" and mark("70.00", d, higher=False) == "70.00"
    wo, w = frame(0.0)
    d = paired(wo, w, "cl")
    assert not d.significant and delta_cell(d).endswith("n.s.") and mark("70.00", d, higher=True) == "70.00"
    # units present on one side only are not paired
    assert paired(wo, w[w.seed < 3], "cl").n == 3
    # cross-validated runs pair per fold, each fold's seeds averaged first
    cv = pd.DataFrame({"fold": [0, 0, 1, 1], "seed": [0, 1, 0, 1], "cl": [60.0, 62.0, 70.0, 72.0]})
    assert paired(cv, cv.assign(cl=cv.cl + 1), "cl").n == 2
