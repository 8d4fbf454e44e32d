"""Paper protocols on the orchestrator side: --data-opt, --folds, the seed-paper presets, the report
over folds, and trial hashes that stay put for configs that do not use the new fields."""

from __future__ import annotations

import hashlib
import json
import math

import pandas as pd
import pytest
from click.testing import CliRunner

from fer_models.config import DataConfig, TrainConfig, to_dict
from fer_models.errors import ConfigError
from orchestrator import presets
from orchestrator.cli import main
from orchestrator.config import GridConfig, config_hash
from orchestrator.options import parse_data_opts, parse_folds
from orchestrator.studies import expand

SEED_PRESETS = ("khorrami2015", "fang2017", "fang2017-identity", "devanand-t")


def test_parse_data_opts_and_folds():
    assert parse_data_opts(("classes=6", "fold=3", "angles=045,090", "neutral_first=false", "csv=")) == {
        "classes": 6, "fold": 3, "angles": "045,090", "neutral_first": False, "csv": ""}
    with pytest.raises(ConfigError, match="NAME=VALUE"):
        parse_data_opts(("classes",))
    assert parse_folds("10") == 10 and parse_folds("ALL") == "all" and parse_folds(None) is None
    with pytest.raises(ConfigError, match="at least 2"):
        parse_folds(1)
    with pytest.raises(ConfigError, match="count .* or 'all'"):
        parse_folds("some")


@pytest.mark.parametrize("name", SEED_PRESETS)
def test_each_seed_preset_prints_its_config_offline(name, tmp_path):
    res = CliRunner().invoke(main, ["grid", "--preset", name, "--print-config"])
    assert res.exit_code == 0, res.output
    g = presets.get(name)
    assert g.au == (False,) and not g.base.au and not g.ablations  # AU loss off, no λ/layer ablations
    assert "# grid:" in res.output and "# lambda" not in res.output and "# layers" not in res.output
    assert not (tmp_path / "fer-orch-out" / "ray").exists()


def test_seed_presets_follow_their_papers():
    k = presets.get("khorrami2015")
    assert (k.base.data.image_size, k.base.data.color, k.base.data.normalize) == (96, "gray", "per_image")
    assert (k.base.optimizer, k.base.lr, k.base.batch_size, k.base.scheduler) == ("sgd", 0.01, 64, "none")
    assert k.base.method_kwargs == {"dropout": 0.5, "init": "khorrami"} and k.folds == "all"
    trials = expand(k, "grid")
    assert len(trials) == (10 + 5) * 3  # (CK+ 10 subject folds + TFD's 5 official folds) x 3 seeds
    assert all(presets.get(n).seeds == (0, 1, 2) for n in SEED_PRESETS)  # CIs over seeds
    tfd = [t for t in trials if t.cfg.data.dataset == "tfd"]
    assert all(t.cfg.data.options["resolution"] == 96 and t.cfg.epochs == 700 for t in tfd)
    f = presets.get("fang2017-identity")
    assert f.base.target == "identity" and f.base.data.options["split"] == "per-identity"
    assert (f.base.batch_size, f.base.lr, f.base.momentum, f.base.data.image_size) == (12, 0.01, 0.0, 224)
    d = presets.get("devanand-t")
    assert (d.base.data.image_size, d.base.data.color, d.base.method_kwargs["init"]) == (48, "gray", "he_normal")


def test_folds_expand_to_one_tagged_trial_per_fold():
    g = presets.get("cpu", datasets=("synthetic-ckplus",), methods=("cam",), seeds=(0, 1), folds=3, au=(False,))
    trials = expand(g, "grid")
    assert len(trials) == 3 * 2
    assert sorted({t.tags()["fold"] for t in trials}) == ["0", "1", "2"]
    assert {t.cfg.data.options["n_folds"] for t in trials} == {3}
    assert all(t.name.endswith(f"-f{t.cfg.data.options['fold']}-s{t.cfg.seed}") for t in trials)
    plain = expand(presets.get("cpu", datasets=("synthetic-ckplus",), methods=("cam",), seeds=(0,), au=(False,)), "grid")
    assert len(plain) == 1 and "fold" not in plain[0].tags()


def test_data_opt_reaches_every_trial_and_a_bad_one_is_one_sentence():
    res = CliRunner().invoke(main, ["grid", "--datasets", "synthetic-ckplus", "--methods", "cam", "--print-config",
                                    "--data-opt", "classes=6", "--folds", "all", "--no-ablations"])
    assert res.exit_code == 0, res.output
    assert "# grid: 60 trials" in res.output  # 10 folds x {w/o, w/ AU} x 3 seeds
    bad = CliRunner().invoke(main, ["grid", "--datasets", "synthetic-ckplus", "--print-config",
                                    "--data-opt", "classes=9"])
    assert bad.exit_code == 2 and "Traceback" not in bad.output
    lines = [x for x in bad.output.strip().splitlines() if x.strip()]
    assert len(lines) == 1 and "valid options: classes (6, 7 or 8; default 8)" in lines[0]
    for cmd in (["train", "--dataset", "ckplus", "--method", "cam"], ["preprocess", "--dataset", "ckplus"]):
        r = CliRunner().invoke(main, [*cmd, "--data-opt", "colour=gray"])
        assert r.exit_code == 2 and "unknown reader option(s) colour; valid options" in r.output


def test_train_cli_refuses_au_with_an_identity_target():
    r = CliRunner().invoke(main, ["train", "--dataset", "synthetic-rafdb", "--method", "cam", "--target", "identity"])
    assert r.exit_code == 2 and "AU loss does not apply to identity targets" in r.output


def test_report_gives_mean_and_sd_over_folds():
    from orchestrator.tables import agg

    rows = []
    for fold, (a, b) in enumerate([(80, 82), (90, 92), (70, 72)]):  # two seeds per fold
        rows += [{"dataset": "ckplus", "method": "zerobias-cnn", "au": False, "fold": fold, "seed": s, "cl": v}
                 for s, v in enumerate((a, b))]
    mean, std, n = agg(pd.DataFrame(rows), ["dataset", "method", "au"], ["cl"])
    key = ("ckplus", "zerobias-cnn", False)
    assert mean.loc[key, "cl"] == pytest.approx(81.0) and int(n.loc[key, "cl"]) == 3  # n counts folds
    assert std.loc[key, "cl"] == pytest.approx(10.0)  # sd of the fold means 81, 91, 71
    seeds_only = pd.DataFrame([{**r, "fold": math.nan} for r in rows])
    _, std_s, n_s = agg(seeds_only, ["dataset", "method", "au"], ["cl"])
    assert int(n_s.loc[key, "cl"]) == 6 and std_s.loc[key, "cl"] < 10.0


def test_new_fields_at_their_defaults_leave_the_trial_hash_unchanged():
    cfg = TrainConfig(method="cam", data=DataConfig(image_size=32))
    old = to_dict(cfg)  # the config as hashed before the fields of the released profile and the data protocols existed
    for k in ("device", "amp", "channels_last", "target", "compile", "weights_tag", "head_lr", "head_layers",
              "nesterov", "lr_step", "lr_gamma", "min_lr", "metric_def", "faithfulness_n", "faithfulness_steps",
              "warmup_epochs", "checkpoint_every", "checkpoint_minutes"):
        old.pop(k)
    for k in ("num_workers", "root", "options", "normalize", "color", "eval_steps", "stored_size", "prefetch",
              "au_source"):
        old["data"].pop(k)
    old["data"]["augment"] = True  # a flag then; the CPU recipe now
    expected = hashlib.sha1(json.dumps(old, sort_keys=True, default=str).encode()).hexdigest()[:12]
    assert config_hash(cfg) == expected
    assert config_hash(TrainConfig(method="cam", au=False, target="identity")) != config_hash(
        TrainConfig(method="cam", au=False))
    opts = DataConfig(options={"fold": 1})
    assert config_hash(TrainConfig(data=opts)) != config_hash(TrainConfig())
    labels = TrainConfig(data=DataConfig(au_source="labels"))
    assert config_hash(labels) != config_hash(TrainConfig())
    assert config_hash(TrainConfig(faithfulness_n=0)) != config_hash(TrainConfig())
    assert config_hash(TrainConfig(warmup_epochs=1)) != config_hash(TrainConfig())


def test_grid_config_round_trips_folds_and_options(tmp_path):
    g = presets.get("khorrami2015")
    path = tmp_path / "g.yaml"
    path.write_text(g.to_yaml())
    back = GridConfig.from_yaml(path)
    assert back.folds == "all" and back.ablations is False
    assert back.dataset_overrides["tfd"]["data"]["options"] == {"resolution": 96}
    assert [t.hash for t in expand(back, "grid")] == [t.hash for t in expand(g, "grid")]


@pytest.mark.slow
@pytest.mark.ray
def test_cross_validated_seed_preset_runs_and_reports_over_folds(ray_local, tmp_path):
    """Paper 001's protocol end to end on the CK+ stand-in: whole frames cropped by Ray Data,
    one trial per subject fold, the landmark failure rates in MLflow, mean ± sd over folds."""
    from orchestrator import tracking
    from orchestrator.tuning import run_grid
    from orchestrator.report import build_report

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    g = presets.get("khorrami2015", datasets=("synthetic-ckplus",), folds=3, seeds=(0,), tracking_uri=uri,
                    storage_path=str(tmp_path / "ray"), experiment="cv",
                    base={"epochs": 1, "device": "cpu", "data": {"image_size": 32}},
                    resources={"cpus": 1, "gpus": 0})
    out = run_grid(g, studies=("grid",), verbose=False)
    assert out.ok, (out.failed, out.unfinished)
    c = tracking.client(uri)
    runs = [r for r in c.search_runs([out.experiment_id]) if r.info.run_id != out.parent_run_id]
    assert sorted(r.data.tags["fold"] for r in runs) == ["0", "1", "2"]
    for r in runs:
        assert r.data.params["data.options.n_folds"] == "3"
        assert r.data.metrics["data_no_face_rate_anger"] == 0.0  # ground-truth landmarks: no failure
    rep = build_report("cv", uri, tmp_path / "report", log=False)
    row = next(line for line in rep.markdown.splitlines() if line.startswith("| zerobias-cnn"))
    assert "±" in row  # mean ± sd over the 3 folds


def test_data_synth_writes_the_whole_frame_layouts_the_real_readers_read(tmp_path):
    from fer_models.data.readers import read_dataset

    idents = {"ckplus": {"S001", "S002"}, "disfa": {"SN001", "SN002"}, "rafd": {"01", "02"}, "kdef": {"F01", "M01"}}
    # onset + 3 peak frames a sequence; RaFD's frontal camera: 8 expressions x 3 gazes;
    # KDEF's straight camera: 2 sessions x 7 expressions
    for layout, n in (("ckplus", 2 * 3 * 4), ("disfa", 2 * 40), ("rafd", 2 * 8 * 3), ("kdef", 2 * 2 * 7)):
        res = CliRunner().invoke(main, ["data", "synth", "--layout", layout, "--out", str(tmp_path / layout),
                                        "--identities", "2", "--size", "32"])
        assert res.exit_code == 0, res.output
        opts = {"classes": 8} if layout == "rafd" else {}
        m = read_dataset(layout, tmp_path / layout, val_fraction=0, **opts)
        assert len(m.samples) == n and m.frames == "whole" and not m.skipped, (layout, len(m.samples), m.skipped)
        assert {s.identity for s in m.samples} == idents[layout]


def test_a_grid_without_au_trials_does_not_choose_lambda():
    """fang2017-identity once its experiment exists: choosing λ used to build the λ ablation's
    AU configs for an identity target, which validation refuses."""
    from orchestrator.tuning import choose_lambda

    g = presets.get("fang2017-identity", datasets=("synthetic-rafd",))
    lam, source = choose_lambda(g, "an-existing-experiment", "sqlite:///never-opened.db")
    assert lam == g.default_lam and source.startswith("unused")
