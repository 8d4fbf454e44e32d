"""train(): checkpoints every epoch, resumes, selects on validation, evaluates on test; the CLI."""

from __future__ import annotations

import math
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from fer_models.checkpoints import checkpoint_files, load_checkpoint
from fer_models.config import DataConfig, TrainConfig
from fer_models.errors import ConfigError, StateDictError
from fer_models.methods import build_model, shares_training, trains_as
from fer_models.train import evaluate_trained, train

torch.set_num_threads(1)
S, M, K = 32, 16, 7


def _batches(n_batches: int, b: int, seed: int) -> list[dict]:
    """Learnable fake data: class k has a bright square at a class-specific place; the AU map marks it."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_batches):
        y = torch.randint(0, K, (b,), generator=g)
        x = 0.3 * torch.randn(b, 3, S, S, generator=g)
        a = torch.zeros(b, 1, M, M)
        for i, k in enumerate(y.tolist()):
            r, c = divmod(k, 3)
            x[i, :, 8 * r + 2 : 8 * r + 8, 8 * c + 2 : 8 * c + 8] += 2.0
            a[i, 0, 4 * r + 1 : 4 * r + 4, 4 * c + 1 : 4 * c + 4] = 1.0
        valid = y != 6
        out.append({"image": x, "label": y, "au_map": a * valid[:, None, None, None], "au_valid": valid,
                    "gt_au_map": a.clone(), "gt_valid": torch.ones(b, dtype=torch.bool)})
    return out


def _loaders(seed: int = 0):
    return SimpleNamespace(train=_batches(4, 8, seed), val=_batches(1, 16, seed + 1),
                           test=_batches(1, 16, seed + 2), num_classes=K)


def _cfg(**kw) -> TrainConfig:
    base = dict(method="cam", backbone="resnet-tiny", epochs=2, batch_size=8, lr=0.05, device="cpu",
                data=DataConfig(image_size=S, map_size=M))
    base.update(kw)
    return TrainConfig(**base)


def test_train_writes_checkpoints_reports_epochs_and_evaluates_best(tmp_path):
    seen = []
    res = train(_cfg(), tmp_path, loaders=_loaders(), progress=False, on_epoch=lambda e, m: seen.append((e, m)))
    assert [e for e, _ in seen] == [1, 2]
    for _, m in seen:
        assert {"train_loss", "val_cl", "val_cam_cos", "val_att_cos", "lr"} <= set(m)
        assert math.isfinite(m["train_loss"]) and m["train_align"] > 0
    assert res.best_path == tmp_path / "best.pt" and res.best_path.exists()
    assert (tmp_path / "checkpoint.pt").exists() and (tmp_path / "test_metrics.json").exists()
    assert res.best_epoch in (1, 2)
    best_val = max(h["val_cl"] for h in res.history)
    assert res.history[res.best_epoch - 1]["val_cl"] == best_val  # selected on validation accuracy
    row = res.history[res.best_epoch - 1]
    assert res.best_val == {"cl": row["val_cl"], "cam_cos": row["val_cam_cos"], "att_cos": row["val_att_cos"]}
    assert {"cl", "cam_cos", "att_cos", "gt_cam_cos", "gt_att_cos"} <= set(res.test.metrics)
    assert res.test.confusion.sum() == 16 and res.test.cosine_matrix.shape == (K, 6)
    assert res.test.mean_maps["cam"].shape == (K, M, M)
    # best.pt is a plain state_dict that loads with weights_only into a fresh model
    state = torch.load(res.best_path, weights_only=True)
    build_model(_cfg(), K).load_state_dict(state)
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert ckpt["epoch"] == 2 and len(ckpt["history"]) == 2


def test_resume_continues_from_the_saved_epoch(tmp_path):
    first = []
    train(_cfg(epochs=1), tmp_path, loaders=_loaders(), progress=False, on_epoch=lambda e, m: first.append(e))
    w1 = load_checkpoint(tmp_path)["model"]
    later = []
    res = train(_cfg(epochs=3), tmp_path, loaders=_loaders(), progress=False, on_epoch=lambda e, m: later.append(e))
    assert first == [1] and later == [2, 3]
    assert len(res.history) == 3 and res.history[0]["epoch"] == 1
    # without resume, training starts again at epoch 1
    again = []
    train(_cfg(epochs=1), tmp_path / "fresh", loaders=_loaders(), progress=False, resume=False,
          on_epoch=lambda e, m: again.append(e))
    assert again == [1]
    w_again = load_checkpoint(tmp_path / "fresh")["model"]
    assert all(torch.equal(w1[k], w_again[k]) for k in w1)  # seeded: same first epoch


def test_au_loss_raises_att_cos_on_learnable_fake_data(tmp_path):
    common = dict(epochs=3, lr=0.05, seed=0)
    off = train(_cfg(au=False, **common), tmp_path / "off", loaders=_loaders(), progress=False)
    on = train(_cfg(au=True, lam=4.0, **common), tmp_path / "on", loaders=_loaders(), progress=False)
    assert on.history[-1]["train_align"] < on.history[0]["train_align"]
    assert on.test.metrics["att_cos"] > off.test.metrics["att_cos"]


def test_train_reads_the_cache_it_is_handed_without_reading_the_dataset(tmp_path, make_manifest, fake_backend):
    from fer_models.data import cache

    info = cache.prepare(make_manifest(tmp_path / "data", n=24), fake_backend, "paper002", M, S, tmp_path / "cache",
                         progress=False)
    cfg = _cfg(epochs=1, data=DataConfig(dataset="not-a-dataset", image_size=S, map_size=M))
    res = train(cfg, tmp_path / "run", cache_dir=info.dir, progress=False)
    assert res.test.confusion.sum() == info.counts["test"] > 0


def test_config_mistakes_fail_before_training(tmp_path):
    with pytest.raises(ConfigError, match="epochs"):
        train(_cfg(epochs=0), tmp_path, loaders=_loaders(), progress=False)
    with pytest.raises(ConfigError, match="optimizer"):
        train(_cfg(optimizer="rmsprop"), tmp_path, loaders=_loaders(), progress=False)
    with pytest.raises(ConfigError, match="layers"):
        train(_cfg(layers=(6,)), tmp_path, loaders=_loaders(), progress=False)


def test_cli_train_reports_a_user_mistake_in_one_red_line():
    from click.testing import CliRunner

    from orchestrator.cli import main

    r = CliRunner().invoke(main, ["train", "--dataset", "synthetic-rafdb", "--method", "nope"])
    assert r.exit_code == 2
    assert "unknown method 'nope'" in r.output and "Traceback" not in r.output


@pytest.mark.slow
def test_cli_train_end_to_end_on_synthetic_rafdb(tmp_path):
    from click.testing import CliRunner

    from orchestrator.cli import main

    r = CliRunner().invoke(main, ["train", "--dataset", "synthetic-rafdb", "--method", "cam", "--backbone",
                                  "resnet-tiny", "--epochs", "1", "--image-size", "32", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert "cam_cos" in r.output and (tmp_path / "best.pt").exists()


@pytest.mark.parametrize("spec", ["3+4+5", "5+4+3"])
def test_att_cos_of_a_multi_layer_run_is_at_its_top_layer_whatever_the_order(tmp_path, spec):
    """Paper 002, Table 2 reports ATT-COS at layer 5; `--layers 3+4+5` must not report layer 3."""
    from fer_models.config import parse_layers

    res = train(_cfg(epochs=1, layers=parse_layers(spec)), tmp_path, loaders=_loaders(), progress=False)
    m = res.test.metrics
    assert m["att_cos"] == pytest.approx(m["att_cos_5"])
    assert m["att_cos"] != pytest.approx(m["att_cos_3"])  # the layers' scores differ: the check bites
    assert m["att_cos_avg"] == pytest.approx(float(np.nanmean(res.test.cosine_matrix[:, 4])))


def test_the_training_steps_never_read_a_tensor_back(tmp_path, monkeypatch):
    """No host sync per step: while the train loader is being iterated, nothing turns a
    tensor into a Python number; the epoch's losses are read once, after the last step."""
    reads = []
    live = {"on": False}
    for name in ("__float__", "item", "tolist", "__bool__", "numpy", "cpu"):
        orig = getattr(torch.Tensor, name)

        def spy(self, *a, _orig=orig, _name=name, **k):
            if live["on"]:
                reads.append(_name)
            return _orig(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, name, spy)

    def steps(batches):
        live["on"] = True
        try:
            yield from batches
        finally:
            live["on"] = False

    class Once:  # the train loader, flagged while its batches are in use
        def __init__(self, batches):
            self.batches = batches

        def __len__(self):
            return len(self.batches)

        def __iter__(self):
            return steps(self.batches)

    loaders = _loaders()
    loaders.train = Once(loaders.train)
    res = train(_cfg(epochs=2), tmp_path, loaders=loaders, progress=False)
    assert reads == [] and len(res.history) == 2
    assert res.history[0]["train_loss"] > 0 and res.history[0]["train_align"] > 0


@pytest.mark.slow
def test_compile_trains_the_same_model(tmp_path):
    """``TrainConfig.compile``: torch.compile of the training forward gives the same run."""
    eager = train(_cfg(epochs=1), tmp_path / "eager", loaders=_loaders(), progress=False)
    compiled = train(_cfg(epochs=1, compile=True), tmp_path / "compiled", loaders=_loaders(), progress=False)
    assert compiled.history[0]["train_loss"] == pytest.approx(eager.history[0]["train_loss"], rel=1e-3)
    assert compiled.test.metrics["cl"] == pytest.approx(eager.test.metrics["cl"], abs=13.0)


# --- methods that train one network (fer_models.methods.trains_as) ---

def _state(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def test_the_gradient_cam_methods_train_as_gradcam_and_the_others_alone():
    assert {m: trains_as(m) for m in ("gradcam", "gradcampp", "layercam")} == dict.fromkeys(
        ("gradcam", "gradcampp", "layercam"), "gradcam")
    assert trains_as("cam") == "cam" and not shares_training("cam") and not shares_training("apvit")
    assert shares_training("gradcam") and shares_training("layercam")


@pytest.mark.parametrize("au", [False, True])
def test_twins_train_identical_weights_for_one_config_and_seed(tmp_path, au):
    states = []
    for method in ("gradcam", "gradcampp", "layercam"):
        train(_cfg(method=method, au=au, seed=3), tmp_path / method, loaders=_loaders(), progress=False)
        states.append(_state(tmp_path / method / "best.pt"))
    for other in states[1:]:
        assert other.keys() == states[0].keys()
        assert all(torch.equal(other[k], states[0][k]) for k in states[0])


def test_a_twin_evaluates_the_publishers_weights_with_its_own_map(tmp_path):
    pub = train(_cfg(method="gradcam"), tmp_path / "pub", loaders=_loaders(), progress=False)
    (tmp_path / "twin").mkdir()
    for f in checkpoint_files(tmp_path / "pub"):  # what the trial copies (orchestrator.trial)
        shutil.copy2(f, tmp_path / "twin" / f.name)
    epochs = []
    with pytest.raises(StateDictError, match="trained by 'gradcam'.*evaluate_trained"):  # never inferred
        train(_cfg(method="layercam"), tmp_path / "twin", loaders=_loaders(), progress=False)
    twin = train(_cfg(method="layercam"), tmp_path / "twin", loaders=_loaders(), progress=False,
                 on_epoch=lambda e, m: epochs.append(e), trained_by="gradcam")
    assert epochs == []  # nothing trained again
    again = evaluate_trained(_cfg(method="layercam"), tmp_path / "twin", "gradcam", loaders=_loaders(), progress=False)
    assert again.test.metrics == twin.test.metrics
    assert twin.best_epoch == pub.best_epoch and twin.test.metrics["cl"] == pub.test.metrics["cl"]
    # the publisher's curves, less the validation CAM-COS its own map measured
    assert all(math.isnan(h["val_cam_cos"]) for h in twin.history)
    assert [h["val_cl"] for h in twin.history] == [h["val_cl"] for h in pub.history]
    # the best epoch's validation CAM-COS, measured again with LayerCAM
    assert math.isfinite(twin.best_val["cam_cos"]) and twin.best_val["cam_cos"] != pub.best_val["cam_cos"]
    assert twin.test.metrics["cam_cos"] != pub.test.metrics["cam_cos"]


def test_a_checkpoint_of_another_network_is_refused(tmp_path):
    train(_cfg(method="cam", epochs=1), tmp_path / "cam", loaders=_loaders(), progress=False)
    (tmp_path / "gc").mkdir()
    shutil.copy2(tmp_path / "cam" / "checkpoint.pt", tmp_path / "gc" / "checkpoint.pt")
    with pytest.raises(StateDictError, match="trained method 'cam', not 'gradcam'"):
        train(_cfg(method="gradcam", epochs=1), tmp_path / "gc", loaders=_loaders(), progress=False)


# --- linear warm-up before the cosine (ViT recipes; the CPU preset's transformers) ---

def test_warmup_rises_linearly_to_the_lr_then_follows_the_cosine_to_zero():
    from fer_models.train import make_optimizer, make_scheduler

    cfg = _cfg(method="tscam", backbone="vit-tiny-convstem", optimizer="adamw", lr=0.01, epochs=3,
               warmup_epochs=1)
    opt = make_optimizer(cfg, build_model(cfg, K))
    sched = make_scheduler(cfg, opt, steps_per_epoch=4)
    seen = []
    for _ in range(12):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen[:4] == pytest.approx([0.0025, 0.005, 0.0075, 0.01])  # warm-up: 1 epoch of 4 steps
    assert seen[4] == pytest.approx(0.01) and all(a > b for a, b in zip(seen[4:], seen[5:]))
    assert seen[8] == pytest.approx(0.005)  # half-way through the 8 cosine steps
    assert seen[-1] == pytest.approx(0.01 * 0.5 * (1 + math.cos(math.pi * 7 / 8)))


@pytest.mark.parametrize("kw, says", [
    (dict(warmup_epochs=2, epochs=2), "fewer than the epochs"),
    (dict(warmup_epochs=1, scheduler="step"), "applies to the cosine scheduler"),
    (dict(warmup_epochs=-1), "warmup_epochs"),
])
def test_a_warmup_that_cannot_apply_is_one_sentence(tmp_path, kw, says):
    with pytest.raises(ConfigError, match=says):
        train(_cfg(**kw), tmp_path, loaders=_loaders(), progress=False)
