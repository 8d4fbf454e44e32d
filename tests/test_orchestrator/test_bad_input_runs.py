"""Bad input met while training (docs/bad-input.md): a diverged loss, a full disk, an empty
test split, a damaged run folder, two identical runs at once. Each case runs the real
``fer-orch train`` on a tiny synthetic RAF-DB (70 training, 14 test images)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.test_orchestrator.test_bad_input_data import _cli, _one_sentence

TINY = ("train", "--dataset", "synthetic-rafdb", "--method", "cam", "--backbone", "resnet-tiny", "--image-size", "32",
        "--device", "cpu", "--data-opt", "n_train=70", "--data-opt", "n_test=14")


def test_diverged_training_stops_in_one_sentence_and_keeps_no_result(tmp_path):
    out = tmp_path / "run"
    r = _cli(*TINY, "--epochs", "2", "--lambda", "1e30", "--out", str(out))
    _one_sentence(r, "training diverged: the mean loss of epoch 2 is nan", "--lambda 1e+30", "too large")
    assert "test metrics" not in r.output and "weights:" not in r.output
    assert not (out / "test_metrics.json").exists()


def test_diverged_grid_trial_is_failed_in_mlflow_and_logs_no_weights(mlflow_store, tmp_path):
    """The same stop in a grid trial (the Tune trainable, run here outside Tune): the MLflow
    run ends FAILED, with no weights artifact and no test metrics."""
    from functools import partial

    from fer_models.config import to_dict
    from fer_models.errors import DivergedError
    from fer_models.train import train
    from orchestrator import tracking
    from orchestrator.config import config_hash
    from orchestrator.trial import run_trial
    from tests.test_fer_models.test_train import _cfg, _loaders

    c = mlflow_store.client
    parent = c.create_run(mlflow_store.exp, tags={tracking.KIND_TAG: "grid"}).info.run_id
    cfg = _cfg(lam=1e30, lr=1.0)
    spec = {"cfg": to_dict(cfg), "hash": config_hash(cfg), "name": "t", "study": "grid", "tags": {}, "cache_dir": None,
            "parent_id": parent, "experiment_id": mlflow_store.exp, "uri": mlflow_store.uri,
            "home": os.environ["FER_ORCH_HOME"], "cpus": 1, "resume": True, "origin": None}
    with pytest.raises(DivergedError, match="training diverged"):
        run_trial({"trial": spec}, train_fn=partial(train, loaders=_loaders()))
    (run,) = c.search_runs([mlflow_store.exp], filter_string=f"tags.`{tracking.KIND_TAG}` = 'trial'")
    assert run.info.status == "FAILED"
    assert not [a for a in c.list_artifacts(run.info.run_id)]
    assert not any(k.startswith("test_") for k in run.data.metrics)


@pytest.fixture
def full_disk(tmp_path):
    """A 256 KiB tmpfs: room for the run folder's first files, not for a checkpoint."""
    mnt = tmp_path / "small-disk"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)],
                      capture_output=True).returncode != 0:
        pytest.skip("mounting a tmpfs needs root (CAP_SYS_ADMIN)")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_full_disk_during_training_is_the_no_space_sentence(full_disk):
    r = _cli(*TINY, "--epochs", "1", "--out", str(full_disk / "run"))
    _one_sentence(r, "No space left on device", str(full_disk / "run"), "free space")
    assert "internal error" not in r.output
    assert not list(full_disk.rglob("*.tmp"))  # the half-written file is removed


def test_torch_save_runtime_error_on_a_disk_with_room_stays_a_bug(tmp_path, monkeypatch):
    import torch

    from fer_models import train as ft

    monkeypatch.setattr(torch, "save", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("unexpected pos 1")))
    with pytest.raises(RuntimeError, match="unexpected pos"):
        ft._atomic_save({"w": 1}, tmp_path / "best.pt")


def test_empty_test_split_is_one_sentence_before_training(tmp_path):
    r = _cli(*TINY[:-1], "n_test=0", "--epochs", "1", "--out", str(tmp_path / "run"))
    _one_sentence(r, "the test split is empty (62 train, 8 val)", "nothing could be evaluated")
    assert "epoch 1" not in r.output and not (tmp_path / "run" / "checkpoint.pt").exists()


def _cache_of(home: Path) -> Path:
    (meta,) = (home / "cache").glob("synthetic-rafdb/*/meta.json")
    return meta.parent


def test_second_identical_train_is_refused_while_the_first_runs_then_damage_is_one_sentence(tmp_path):
    """Two identical `fer-orch train` at once on one FER_ORCH_HOME: the second is refused in
    one sentence (it spliced the first one's run folder). Then, on the finished run: a
    missing best.pt, a damaged cache shard and a damaged meta.json are one sentence each."""
    import sys

    home = Path(os.environ["FER_ORCH_HOME"])
    args = [*TINY, "--epochs", "1"]
    first = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", *args], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONPATH": os.getcwd()})
    lines = []
    for line in first.stdout:  # the first holds the run folder from this line on
        lines.append(line)
        if line.startswith("run folder: "):
            break
    run_dir = Path(lines[-1].split(": ", 1)[1].strip())
    try:
        _one_sentence(_cli(*args), f"run folder '{run_dir}' is in use by another `fer-orch train`")
    finally:
        rest = first.communicate(timeout=300)[0]
    assert first.returncode == 0, "".join(lines) + rest
    assert not (run_dir / ".fer-orch-train.lock").exists()  # released and removed

    (run_dir / "best.pt").unlink()
    _one_sentence(_cli(*args), f"best weights '{run_dir / 'best.pt'}' does not exist", "train again")

    cache = _cache_of(home)
    (cache / "train-00000" / "image.npy").write_bytes(b"\x93NUMPY garbage")
    _one_sentence(_cli(*args, "--no-resume"), f"cache {cache} is damaged (image.npy of train-00000",
                  "delete the folder")
    (cache / "meta.json").write_text('{"format": ')
    _one_sentence(_cli(*args, "--no-resume"), f"cache {cache} is damaged (meta.json", "delete the folder")


def test_a_killed_preprocessing_leaves_no_orphan_after_the_next_run():
    """A build killed with SIGKILL leaves its `.<key>.tmp-*` folder (no `finally` runs); the
    next build of that cache removes it."""
    home = Path(os.environ["FER_ORCH_HOME"])
    pre = ("preprocess", "--dataset", "synthetic-rafdb", "--image-size", "32", "--data-opt", "n_train=70",
           "--data-opt", "n_test=14")
    assert _cli(*pre).exit_code == 0
    cache = _cache_of(home)
    import shutil

    orphan = cache.parent / f".{cache.name}.tmp-0badf00d"
    shutil.copytree(cache, orphan)  # what a killed build leaves: a half-written folder
    (orphan / "meta.json").unlink()
    shutil.rmtree(cache)
    r = _cli(*pre)
    assert r.exit_code == 0, r.output
    assert not orphan.exists() and (cache / "meta.json").is_file()
    assert sorted(p.name for p in cache.parent.iterdir()) == [cache.name]
