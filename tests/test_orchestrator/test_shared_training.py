"""Trials of methods that train one network share it (orchestrator.trial): where the
training is published, who may borrow it, and that the first publisher wins. That the twins
train identical weights, and that a twin evaluates borrowed weights with its own map, is
tested with the trainer (tests/test_fer_models/test_train.py)."""

from __future__ import annotations

import dataclasses

from fer_models.config import TrainConfig
from orchestrator.trial import borrow_training, publish_training, shared_training_dir


def _finished(work, tag: str):
    work.mkdir(parents=True)
    for name in ("checkpoint.pt", "best.pt"):
        (work / name).write_text(f"{tag} {name}")
    return work


def test_the_twins_of_one_config_share_one_folder_and_other_methods_none(tmp_path):
    cfg = TrainConfig(method="gradcam", epochs=1)
    shared = shared_training_dir(cfg, tmp_path, "grid-a")
    assert shared.parent == tmp_path / "trained" / "grid-a"
    assert shared == shared_training_dir(dataclasses.replace(cfg, method="layercam"), tmp_path, "grid-a")
    assert shared == shared_training_dir(dataclasses.replace(cfg, method="gradcampp"), tmp_path, "grid-a")
    assert shared != shared_training_dir(dataclasses.replace(cfg, seed=1), tmp_path, "grid-a")
    assert shared != shared_training_dir(dataclasses.replace(cfg, au=False), tmp_path, "grid-a")
    assert shared_training_dir(dataclasses.replace(cfg, method="cam"), tmp_path, "grid-a") is None
    # never across grid invocations: --no-resume retrains the twins too
    assert shared != shared_training_dir(cfg, tmp_path, "grid-b")


def test_publish_then_borrow_copies_the_finished_training(tmp_path):
    cfg = TrainConfig(method="gradcam", epochs=2)
    shared = shared_training_dir(cfg, tmp_path / "home", "grid-a")
    other = tmp_path / "other"
    other.mkdir()
    assert borrow_training(shared, other, 2) is None  # nothing published yet
    assert borrow_training(None, other, 2) is None  # a method that shares with nobody

    publish_training(shared, _finished(tmp_path / "a", "first"), cfg)
    assert borrow_training(shared, other, 3) is None  # another epoch count is another training
    assert borrow_training(shared, other, 2) == "gradcam"
    assert (other / "best.pt").read_text() == "first best.pt"

    # the first publisher wins; a folder without a finished training publishes nothing
    publish_training(shared, _finished(tmp_path / "b", "second"), cfg)
    assert (shared / "best.pt").read_text() == "first best.pt"
    empty = tmp_path / "empty"
    empty.mkdir()
    late = shared_training_dir(dataclasses.replace(cfg, seed=5), tmp_path / "home", "grid-a")
    publish_training(late, empty, cfg)
    assert not late.exists()
