"""A user's mistake is one sentence (exit 2) before any long work, never a silently
wrong result. One test per case of docs/bad-input.md."""

from __future__ import annotations

import math

import pytest
from click.testing import CliRunner

from orchestrator.cli import main


def _cli(*args: str, **kw):
    return CliRunner().invoke(main, list(args), **kw)


def _one_sentence(r, *fragments: str) -> None:
    """Exit status 2, every fragment in the output, no traceback."""
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output, r.output
    for f in fragments:
        assert f in r.output, r.output


@pytest.fixture
def fake_data_train(monkeypatch):
    """`fer-orch train` with the real train() on tiny learnable in-memory batches (no dataset,
    no cache): each call's run folder and whether it trained (epochs run) are recorded."""
    import fer_models.train as ft
    from tests.test_fer_models.test_train import _loaders

    real, calls = ft.train, []

    def train(cfg, run_dir, **kw):
        epochs = []
        user = kw.pop("on_epoch", None)

        def on_epoch(e, m):
            epochs.append(e)
            if user:
                user(e, m)

        res = real(cfg, run_dir, **{**kw, "loaders": _loaders(), "on_epoch": on_epoch, "progress": False})
        calls.append({"run_dir": run_dir, "epochs": epochs, "lam": cfg.lam, "layers": cfg.layers})
        return res

    monkeypatch.setattr(ft, "train", train)
    return calls


_TRAIN = ("train", "--dataset", "synthetic-rafdb", "--method", "cam", "--backbone", "resnet-tiny", "--epochs", "1",
          "--image-size", "32", "--device", "cpu")


def test_rerun_with_another_lambda_and_layers_trains_again(fake_data_train, tmp_path):
    """Item 1: the run folder is keyed by the config hash, so `--lambda 5 --layers 4` is a new run."""
    r1 = _cli(*_TRAIN)
    assert r1.exit_code == 0, r1.output
    r2 = _cli(*_TRAIN, "--lambda", "5", "--layers", "4")
    assert r2.exit_code == 0, r2.output
    first, second = fake_data_train
    assert first["run_dir"] != second["run_dir"]
    assert second["epochs"] == [1] and (second["lam"], second["layers"]) == (5.0, (4,))
    r3 = _cli(*_TRAIN)  # the same config again: resumed from its finished checkpoint, no epoch
    assert r3.exit_code == 0 and fake_data_train[2]["run_dir"] == first["run_dir"]
    assert fake_data_train[2]["epochs"] == []
    r4 = _cli(*_TRAIN, "--root", str(tmp_path / "another-copy"))  # another dataset root: another run
    assert r4.exit_code == 0 and fake_data_train[3]["run_dir"] not in (first["run_dir"], second["run_dir"])
    assert fake_data_train[3]["epochs"] == [1]


def test_out_folder_of_another_config_is_refused_in_one_sentence(fake_data_train, tmp_path):
    out = str(tmp_path / "run")
    assert _cli(*_TRAIN, "--out", out).exit_code == 0
    _one_sentence(_cli(*_TRAIN, "--out", out, "--lambda", "5"), "holds a checkpoint of another configuration",
                  "--no-resume")
    assert len(fake_data_train) == 1  # refused before training
    r = _cli(*_TRAIN, "--out", out, "--lambda", "5", "--no-resume")
    assert r.exit_code == 0 and fake_data_train[1]["epochs"] == [1]


@pytest.mark.parametrize("args, sentence", [
    (("--lambda", "nan"), "lam (--lambda/--lam) must be a finite number"),
    (("--lambda", "inf"), "lam (--lambda/--lam) must be a finite number"),
    (("--lambda", "-1"), "lam (--lambda/--lam) must be >= 0"),
    (("--lr", "nan"), "lr (--lr) must be a finite number"),
    (("--lr", "0"), "lr (--lr) must be > 0"),
    (("--image-size", "7"), "data.image_size (--image-size) must be >= 8"),
    (("--batch-size", "0"), "batch_size (--batch-size) must be >= 1"),
    (("--epochs", "0"), "epochs (--epochs) must be >= 1"),
    (("--layers", "6"), "layers are numbered 1..5"),
    (("--backbone", "nope"), "unknown backbone 'nope'"),
    (("--optimizer", "rmsprop"), "unknown optimizer 'rmsprop'"),
    (("--method-kw", "nope=1"), "method 'cam' has no option(s) ['nope']"),
])
def test_train_refuses_a_bad_option_before_any_data_work(args, sentence, monkeypatch):
    """Item 2: one validation, one sentence, and neither the cache nor train() is reached."""
    import fer_models.data.dataset as ds

    monkeypatch.setattr(ds, "build_loaders", lambda *a, **k: pytest.fail("reached the data"))
    base = [a for a in _TRAIN if a not in ("--epochs", "1")] if "--epochs" in args else list(_TRAIN)
    _one_sentence(_cli(*base, *args), sentence)


def test_validate_refuses_non_finite_numbers_of_every_field():
    from fer_models.config import DataConfig, TrainConfig, validate
    from fer_models.errors import ConfigError

    for field in ("lam", "lr", "momentum", "weight_decay", "lr_gamma", "min_lr", "head_lr"):
        for bad in (math.nan, math.inf, -1.0):
            with pytest.raises(ConfigError, match=field):
                validate(TrainConfig(**{field: bad}))
    with pytest.raises(ConfigError, match="val_fraction"):
        validate(TrainConfig(data=DataConfig(val_fraction=math.nan)))
    with pytest.raises(ConfigError, match="unknown codebook"):
        validate(TrainConfig(data=DataConfig(codebook="nope")))
    with pytest.raises(ConfigError, match="unknown dataset"):
        validate(TrainConfig(data=DataConfig(dataset="nope")))
    assert validate(TrainConfig()) == TrainConfig()


@pytest.mark.parametrize("command, args, sentence", [
    (("grid",), ("--epochs", "0"), "epochs (--epochs) must be >= 1"),
    (("grid",), ("--lam", "nan"), "λ must be > 0 and finite"),
    (("grid",), ("--methods", "cam", "--config", "{cfg}"), "batch_size (--batch-size) must be >= 1"),
    (("ablate", "lambda"), ("--epochs", "0"), "epochs (--epochs) must be >= 1"),
    # the λ ablation trains its `lambdas` list: --lam (and --methods) would be ignored there
    (("ablate", "lambda"), ("--lam", "nan"), "`fer-orch ablate lambda` does not use --lam"),
    (("ablate", "lambda"), ("--config", "{cfg}"), "batch_size (--batch-size) must be >= 1"),
    (("ablate", "layers"), ("--lam", "nan"), "λ must be > 0 and finite"),
])
def test_grid_and_ablate_refuse_a_bad_config_before_ray_starts(command, args, sentence, tmp_path, monkeypatch):
    import orchestrator.ray_utils as ru

    monkeypatch.setattr(ru, "init_ray", lambda *a, **k: pytest.fail("Ray started"))
    cfg = tmp_path / "g.yaml"
    cfg.write_text("base:\n  batch_size: 0\n")
    _one_sentence(_cli(*command, *[a.format(cfg=cfg) for a in args]), sentence)


def test_preprocess_refuses_a_bad_size_and_name_before_the_cache():
    _one_sentence(_cli("preprocess", "--dataset", "synthetic-rafdb", "--image-size", "7"), "must be >= 8")
    _one_sentence(_cli("preprocess", "--dataset", "synthetic-rafdb", "--codebook", "nope"), "unknown codebook 'nope'")
    _one_sentence(_cli("preprocess", "--dataset", "synthetic-rafdb", "--val-fraction", "nan"), "val_fraction")


@pytest.fixture
def a_file(tmp_path):
    """A regular file: a folder 'under' it can never be made (root ignores chmod, so this is
    the unwritable path a test can make)."""
    f = tmp_path / "a-file"
    f.write_text("not a folder")
    return f


@pytest.fixture
def no_ray(monkeypatch):
    import orchestrator.ray_utils as ru

    monkeypatch.setattr(ru, "init_ray", lambda *a, **k: pytest.fail("Ray started"))


def test_unwritable_fer_orch_home_is_one_sentence_before_any_work(a_file, monkeypatch, no_ray):
    """Item 6: FER_ORCH_HOME, --storage, --out, an SQLite path that cannot be written."""
    monkeypatch.setenv("FER_ORCH_HOME", str(a_file / "home"))
    _one_sentence(_cli("grid", "--epochs", "1"), "cannot write to FER_ORCH_HOME", "export FER_ORCH_HOME")
    _one_sentence(_cli(*_TRAIN), "cannot write to FER_ORCH_HOME")
    _one_sentence(_cli("preprocess", "--dataset", "synthetic-rafdb"), "cannot write to FER_ORCH_HOME")


def test_unwritable_storage_out_and_sqlite_paths_are_one_sentence(a_file, no_ray):
    _one_sentence(_cli("grid", "--storage", str(a_file / "ray")), "cannot write to the Tune storage (--storage)",
                  str(a_file / "ray"))
    _one_sentence(_cli(*_TRAIN, "--out", str(a_file / "run")), "cannot write to the run folder", "--out")
    _one_sentence(_cli("grid", "--tracking-uri", f"sqlite:///{a_file}/mlflow.db"),
                  "cannot write to the folder of the MLflow store", "--tracking-uri")


def test_corrupt_mlflow_db_is_one_sentence_naming_it(tmp_path, no_ray):
    db = tmp_path / "mlflow.db"
    db.write_bytes(b"this is no sqlite file" * 100)
    _one_sentence(_cli("grid", "--tracking-uri", f"sqlite:///{db}"), f"the MLflow store '{db}' is not a readable "
                  "SQLite database", "move it aside")
    from orchestrator.tracking.store import resolve_uri

    good = tmp_path / "ok" / "mlflow.db"
    assert resolve_uri(f"sqlite:///{good}") == f"sqlite:///{good}"  # a new store: its folder is made


@pytest.fixture
def grid_with_a_failed_trial(mlflow_store, log_trial):
    """A grid parent with one trained trial (weights logged) and one FAILED trial (none)."""
    from fer_models.config import TrainConfig
    from fer_models.methods import build_model
    from orchestrator import tracking

    c, exp = mlflow_store.client, mlflow_store.exp
    parent = c.create_run(exp, tags={tracking.KIND_TAG: "grid"}).info.run_id
    cfg = TrainConfig(method="cam", backbone="resnet-tiny", au=False)
    good = log_trial(c, exp, parent, cfg, build_model(cfg).state_dict(), "good")
    bad = c.create_run(exp, tags={tracking.KIND_TAG: "trial", "mlflow.parentRunId": parent}).info.run_id
    c.set_terminated(bad, "FAILED")
    return mlflow_store.uri, parent, good, bad


@pytest.mark.parametrize("command", ["explain", "probe"])
def test_explain_and_probe_of_a_run_without_weights_is_one_sentence_before_ray(command, grid_with_a_failed_trial,
                                                                               no_ray):
    """Item 8: a trial without weights is refused before Ray starts."""
    uri, _parent, _good, bad = grid_with_a_failed_trial
    _one_sentence(_cli(command, "--run", bad, "--tracking-uri", uri), f"run '{bad}' has no weights",
                  "its status is FAILED")


@pytest.mark.parametrize("module, entry", [("orchestrator.explain", "explain_runs"), ("orchestrator.probe", "probe_runs")])
def test_explain_and_probe_of_a_grid_skip_its_failed_trials_and_say_so(module, entry, grid_with_a_failed_trial,
                                                                       monkeypatch):
    import importlib

    from orchestrator.actors import Outcome

    uri, parent, good, _bad = grid_with_a_failed_trial
    mod = importlib.import_module(module)
    seen = []
    monkeypatch.setattr(mod, "run_tasks", lambda fn, tasks, **kw: [Outcome(tuple(t), error="stop") for t in tasks
                                                                    if not seen.append(t[0])])
    warnings = []
    try:
        getattr(mod, entry)(parent, uri=uri, warn=warnings.append, progress=False)
    except Exception:  # probe of one run whose task failed raises; only the tasks matter here
        pass
    assert seen and set(seen) == {good}
    assert warnings == [f"skipped 1 of the 2 trials of grid run '{parent}' (1 FAILED, 0 without weights)"]


@pytest.mark.parametrize("content", [b"", b"garbage" * 50, "half"])
def test_corrupt_checkpoint_is_not_a_valid_state_dict_never_weights_only(content, tmp_path):
    """Item 7: a truncated/corrupt checkpoint.pt: one sentence naming it; torch's advice to set
    weights_only=False (which would run the file's code) is never passed on."""
    import torch

    from fer_models.errors import StateDictError
    from fer_models.train import train
    from tests.test_fer_models.test_train import _cfg, _loaders

    run = tmp_path / "run"
    run.mkdir()
    if content == "half":
        torch.save({"model": {"w": torch.zeros(1000)}}, run / "checkpoint.pt")
        content = (run / "checkpoint.pt").read_bytes()[:500]
    (run / "checkpoint.pt").write_bytes(content)
    with pytest.raises(StateDictError) as e:
        train(_cfg(), run, loaders=_loaders(), progress=False)
    msg = str(e.value)
    assert f"checkpoint '{run / 'checkpoint.pt'}' is not a valid state dict" in msg and "--no-resume" in msg
    assert "weights_only" not in msg


def test_pretrained_file_that_is_not_a_state_dict_is_one_sentence(fake_data_train, tmp_path):
    import pickle

    bad = tmp_path / "weights.pt"
    bad.write_bytes(pickle.dumps(print))  # a pickle of a function: torch says "use weights_only=False"
    r = _cli(*_TRAIN, "--pretrained", str(bad))
    _one_sentence(r, f"'{bad}' is not a valid state dict", "Python objects other than tensors")
    assert "weights_only" not in r.output


def test_missing_pretrained_file_is_refused_before_any_data_work(tmp_path, monkeypatch):
    import fer_models.data.dataset as ds

    monkeypatch.setattr(ds, "build_loaders", lambda *a, **k: pytest.fail("reached the data"))
    _one_sentence(_cli(*_TRAIN, "--pretrained", str(tmp_path / "nope.pt")), "(--pretrained) does not exist")


def _raising(exc):
    def fn(*a, **k):
        raise exc

    return fn


def test_exit_status_2_for_mistakes_1_with_traceback_and_hint_for_bugs(monkeypatch):
    """Item 9: a user's mistake (FerOrchError, click usage, a permission error) exits 2 with one
    sentence; an internal error keeps its traceback plus the hint to report it; --debug shows
    the traceback of a mistake on purpose."""
    import orchestrator.cli as cli
    from fer_models.errors import ConfigError

    _one_sentence(_cli("train", "--datset", "x"), "No such option '--datset'")
    monkeypatch.setattr(cli, "_families", _raising(RuntimeError("boom inside")))
    r = _cli("list")
    assert r.exit_code == 1 and cli.REPORT_HINT in r.output
    assert "Traceback" in r.output and "RuntimeError: boom inside" in r.output
    monkeypatch.setattr(cli, "_families", _raising(ConfigError("a wrong option")))
    _one_sentence(_cli("list"), "error: a wrong option")
    r = _cli("--debug", "list")
    assert r.exit_code == 2 and "Traceback" in r.output and "error: a wrong option" in r.output
    monkeypatch.setattr(cli, "_families", _raising(PermissionError(13, "Permission denied", "/data/x")))
    _one_sentence(_cli("list"), "cannot access '/data/x' (Permission denied)")


def test_unwritable_report_folder_is_one_sentence(a_file):
    _one_sentence(_cli("report", "--out", str(a_file / "rep")), "cannot write to the report folder (--out)",
                  "a file stands in the way of a folder")
