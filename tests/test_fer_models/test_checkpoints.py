"""Checkpoints off the critical path (fer_models.checkpoints): one write per checkpointed
epoch, best.pt a hard link to it, every N epochs, resume after a kill, links into Tune's folder."""

from __future__ import annotations

import dataclasses
import os

import pytest
import torch

import fer_models.checkpoints as ck
from fer_models.checkpoints import CheckpointWriter, checkpoint_files, load_checkpoint
from fer_models.train import train
from orchestrator.config import config_hash
from orchestrator.trial import link_checkpoint

from test_train import _cfg, _loaders  # noqa: E402  (tests/test_fer_models on sys.path: rootdir conftest)


class Killed(Exception):
    pass


def _saves(monkeypatch) -> list[str]:
    names: list[str] = []
    real = ck.atomic_save

    def spy(obj, path):
        names.append(path.name)
        real(obj, path)

    monkeypatch.setattr(ck, "atomic_save", spy)
    return names


def test_one_write_per_epoch_and_best_is_a_hard_link_to_it(tmp_path, monkeypatch):
    saves = _saves(monkeypatch)
    seen = []

    def on_epoch(epoch, metrics):
        rec = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
        assert rec["epoch"] == epoch and "model" not in rec  # the record is small: it names the files
        weights = tmp_path / rec["model_file"]
        seen.append((rec["best"]["epoch"] == epoch, os.path.samefile(weights, tmp_path / "best.pt")))
        assert sorted(f.name for f in checkpoint_files(tmp_path)) == sorted(
            ["checkpoint.pt", "best.pt", rec["model_file"], rec["optim_file"]])  # the old epoch's files are gone

    res = train(_cfg(epochs=3), tmp_path, loaders=_loaders(), progress=False, on_epoch=on_epoch)
    # one write of the weights per epoch, none for best.pt (a link); nothing else written
    assert sorted(saves) == sorted(n for e in (1, 2, 3) for n in (f"weights-{e:04d}.pt", f"optim-{e:04d}.pt",
                                                                  "checkpoint.pt"))
    assert all(is_best == linked for is_best, linked in seen) and seen[0] == (True, True)
    state = torch.load(res.best_path, weights_only=True)  # still a plain state_dict
    assert set(state) == set(load_checkpoint(tmp_path)["model"])


def test_every_n_epochs_and_resume_after_a_kill_loses_at_most_that(tmp_path):
    def kill_at(n):
        def on_epoch(epoch, metrics):
            if epoch == n:
                raise Killed

        return on_epoch

    with pytest.raises(Killed):  # killed after epoch 3; the checkpoint of epoch 2 is the last
        train(_cfg(epochs=5, checkpoint_every=2), tmp_path / "a", loaders=_loaders(), progress=False,
              on_epoch=kill_at(3))
    assert load_checkpoint(tmp_path / "a")["epoch"] == 2
    later = []
    res = train(_cfg(epochs=5, checkpoint_every=2), tmp_path / "a", loaders=_loaders(), progress=False,
                on_epoch=lambda e, m: later.append(e))
    assert later == [3, 4, 5] and load_checkpoint(tmp_path / "a")["epoch"] == 5 and len(res.history) == 5
    with pytest.raises(Killed):  # every epoch (the default): a kill loses none of the finished epochs
        train(_cfg(epochs=3), tmp_path / "b", loaders=_loaders(), progress=False, on_epoch=kill_at(2))
    assert load_checkpoint(tmp_path / "b")["epoch"] == 2
    assert config_hash(_cfg(checkpoint_every=2, checkpoint_minutes=5.0)) == config_hash(_cfg())


def test_a_best_epoch_that_is_not_written_is_kept_in_memory_until_the_next_write(tmp_path):
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    w = CheckpointWriter(tmp_path, every=2)
    rec = {"epoch": 0, "best": {}, "history": []}
    with torch.no_grad():
        model.weight.fill_(1.0)
    assert not w.due(1, 3) and not w.finish(1, rec, True, model)  # best, not written: in memory
    with torch.no_grad():
        model.weight.fill_(2.0)
    assert w.due(2, 3)
    w.start(2, model, opt, sched, scaler)
    assert w.finish(2, rec, False, model)
    assert torch.load(tmp_path / "best.pt", weights_only=True)["weight"].eq(1.0).all()  # epoch 1's weights
    assert torch.load(tmp_path / "weights-0002.pt", weights_only=True)["weight"].eq(2.0).all()
    w.close()


def test_the_trial_hard_links_the_checkpoint_into_tunes_folder(tmp_path):
    train(dataclasses.replace(_cfg(), epochs=1), tmp_path / "work", loaders=_loaders(), progress=False)
    (tmp_path / "tune").mkdir()
    link_checkpoint(tmp_path / "work", tmp_path / "tune")
    files = checkpoint_files(tmp_path / "work")
    assert len(files) == 4
    for f in files:
        assert os.path.samefile(f, tmp_path / "tune" / f.name)
