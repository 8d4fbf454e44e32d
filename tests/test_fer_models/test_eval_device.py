"""Evaluation on the device: the same metric values as a per-sample reference, and no host
sync per batch (training and evaluation), counted under a ``TorchDispatchMode``."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from fer_models.config import DataConfig, TrainConfig
from fer_models.labels import NEUTRAL
from fer_models.losses import attention
from fer_models.methods import build_model
from fer_models.methods._base import minmax
from fer_models.metrics import (COSINE_COLUMNS, ReferenceMaps, evaluate, full_resolution_maps, released_attention,
                                released_cam, to_size)
from fer_models.train import make_optimizer, make_scheduler, train_epoch

torch.set_num_threads(1)
S, M, K = 32, 16, 7


def _batches(n: int, b: int = 8, seed: int = 0, landmarks: bool = True) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        y = torch.randint(0, K, (b,), generator=g)
        y[0] = NEUTRAL
        batch = {"image": torch.randn(b, 3, S, S, generator=g), "label": y,
                 "au_map": torch.rand(b, 1, M, M, generator=g), "au_valid": torch.rand(b, generator=g) > 0.2,
                 "gt_au_map": torch.rand(b, 1, M, M, generator=g), "gt_valid": torch.rand(b, generator=g) > 0.3}
        if landmarks:
            batch["landmarks"] = S * (0.2 + 0.6 * torch.rand(b, 68, 2, generator=g))
        out.append(batch)
    return out


def _model(method: str = "cam") -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = TrainConfig(method=method, backbone="resnet-tiny", device="cpu", data=DataConfig(image_size=S, map_size=M))
    return build_model(cfg, K).eval()


def _cos(t: torch.Tensor, a: torch.Tensor) -> np.ndarray:
    t, a = t.flatten(1).double().numpy(), a.flatten(1).double().numpy()
    return (t * a).sum(1) / np.maximum(np.linalg.norm(t, axis=1) * np.linalg.norm(a, axis=1), 1e-8)


def reference(model, batches, metric_def: str, codebook: str = "paper002", att_layer: int = 5) -> dict:
    """Paper 002's metrics one sample at a time, in float64 (the module docstring of
    fer_models.metrics): an independent restatement of the aggregation."""
    conf = np.zeros((K, K), np.int64)
    rows: list[tuple[int, np.ndarray]] = []  # (class, cosines of layers 1-5 + CAM) of the localised samples
    gt: list[tuple[float, float]] = []
    for batch in batches:
        x, y = batch["image"], batch["label"]
        with torch.no_grad():
            out = model(x, labels=y)
        pred = out.logits.argmax(1)
        for t, p in zip(y.tolist(), pred.tolist()):
            conf[t, p] += 1
        cam = model.class_maps(x, y)
        feats = {l: attention(out.features[l]).float() for l in range(1, 6)}
        if metric_def == "released":
            size = (S, S)
            a, valid = full_resolution_maps(batch, codebook, size)
            cam = released_cam(cam, size)
            atts = {l: released_attention(t, size) for l, t in feats.items()}
            g = torch.nn.functional.interpolate(batch["gt_au_map"].float(), size=size, mode="bilinear",
                                                align_corners=False)[:, 0]
        else:
            a, valid = batch["au_map"][:, 0].float(), batch["au_valid"].bool()
            cam = to_size(cam, M)
            atts = {l: to_size(minmax(t), M) for l, t in feats.items()}
            g = batch["gt_au_map"][:, 0].float()
        cols = np.stack([_cos(atts[l], a) for l in range(1, 6)] + [_cos(cam, a)], 1)
        gcam, gatt = _cos(cam, g), _cos(atts[att_layer], g)
        for i, t in enumerate(y.tolist()):
            if t == NEUTRAL:
                continue
            if bool(valid[i]):
                rows.append((t, cols[i]))
            if bool(batch["gt_valid"][i]):
                gt.append((gcam[i], gatt[i]))
    per_class = {k: np.mean([c for t, c in rows if t == k], 0) for k in {t for t, _ in rows}}
    if metric_def == "released":  # the released Average: every class but neutral, -1 where a class has no sample
        avg = np.mean([per_class.get(k, np.full(6, -1.0)) for k in range(K) if k != NEUTRAL], 0)
    else:
        avg = np.mean(list(per_class.values()), 0)
    allc = np.array([c for _, c in rows])
    return {"cl": 100.0 * np.trace(conf) / conf.sum(), "cam_cos": allc[:, 5].mean(),
            "att_cos": allc[:, att_layer - 1].mean(), "cam_cos_avg": avg[5], "att_cos_avg": avg[att_layer - 1],
            "gt_cam_cos": np.mean([c for c, _ in gt]), "gt_att_cos": np.mean([c for _, c in gt]),
            **{f"att_cos_{l}": allc[:, l - 1].mean() for l in range(1, 6)},
            "confusion": conf, "per_class": per_class}


@pytest.mark.parametrize("metric_def", ["project", "released"])
@pytest.mark.parametrize("method", ["cam", "gradcam"])
def test_metrics_equal_a_per_sample_reference(metric_def, method):
    model, batches = _model(method), _batches(3)
    ref = reference(model, batches, metric_def)
    res = evaluate(model, batches, num_classes=K, metric_def=metric_def, codebook="paper002", mean_maps=True)
    for key, value in ref.items():
        if key in ("confusion", "per_class"):
            continue
        assert res.metrics[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
    assert (res.confusion == ref["confusion"]).all()
    for k, row in ref["per_class"].items():
        np.testing.assert_allclose(res.cosine_matrix[k], row, rtol=1e-5, atol=1e-6)
    assert np.isnan(res.cosine_matrix[NEUTRAL]).all()
    assert res.mean_maps["cam"].shape == (K, *(2 * (M if metric_def == "project" else S,)))


def test_cached_reference_maps_give_the_same_metrics_on_every_pass():
    """Validation renders the released maps once per split (``ReferenceMaps``), then reuses them."""
    model, batches = _model(), _batches(3)
    refs = ReferenceMaps()
    plain = evaluate(model, batches, num_classes=K, metric_def="released", codebook="paper002")
    for _ in range(2):
        cached = evaluate(model, batches, num_classes=K, metric_def="released", codebook="paper002", ref_maps=refs)
        assert cached.metrics == pytest.approx(plain.metrics, nan_ok=True)
    assert len(refs) == 3


class SyncCounter(TorchDispatchMode):
    """Counts the operations that make the host wait for the device: scalar reads
    (``.item()``, ``float()``, ``bool()``: ``aten._local_scalar_dense``), ``nonzero`` (and
    boolean-mask indexing, a ``nonzero`` on a GPU) and copies from a device to the CPU."""

    def __init__(self):
        super().__init__()
        self.calls: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = func.overloadpacket.__name__
        if name in ("_local_scalar_dense", "nonzero", "nonzero_static", "masked_select"):
            self.calls.append(name)
        elif name in ("index", "index_put_", "index_put") and any(
                torch.is_tensor(i) and i.dtype == torch.bool for i in (args[1] or ())):
            self.calls.append(f"{name} with a mask")  # a nonzero on a GPU; the CPU kernel hides it
        elif name in ("_to_copy", "copy_"):
            src = args[1] if name == "copy_" else args[0]
            dst = args[0].device if name == "copy_" else kwargs.get("device")
            if torch.is_tensor(src) and src.device.type != "cpu" and dst is not None and torch.device(dst).type == "cpu":
                self.calls.append(f"{name} to cpu")
        return func(*args, **(kwargs or {}))


def _epoch_and_eval(n_batches: int, metric_def: str, au: bool) -> list[str]:
    torch.manual_seed(0)
    cfg = TrainConfig(method="cam", backbone="resnet-tiny", device="cpu", au=au, lam=1.0, batch_size=8,
                      data=DataConfig(image_size=S, map_size=M))
    model = build_model(cfg, K)
    opt = make_optimizer(cfg, model)
    sched = make_scheduler(cfg, opt, n_batches)
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    train_b, val_b = _batches(n_batches, seed=1), _batches(n_batches, seed=2)
    refs = ReferenceMaps()
    evaluate(model, val_b, num_classes=K, metric_def=metric_def, codebook="paper002", ref_maps=refs)  # renders once
    counter = SyncCounter()
    with counter:
        sums, n = train_epoch(model, train_b, opt, sched, scaler, cfg, torch.device("cpu"))
        evaluate(model, val_b, num_classes=K, metric_def=metric_def, codebook="paper002", ref_maps=refs)
    assert n == n_batches
    return counter.calls


@pytest.mark.parametrize("metric_def", ["project", "released"])
def test_no_host_sync_per_batch_in_training_and_evaluation(metric_def):
    few, many = _epoch_and_eval(2, metric_def, au=True), _epoch_and_eval(6, metric_def, au=True)
    assert len(few) == len(many), (few, many)
    assert len(few) <= 2, few  # the pass's one read of its sums (and nothing else)


def test_the_sync_counter_sees_a_scalar_read_and_boolean_indexing():
    counter = SyncCounter()
    t = torch.arange(4.0)
    with counter:
        float(t.sum())
        t[t > 1].sum()
    assert counter.calls == ["_local_scalar_dense", "index with a mask"]
    assert math.isfinite(float(t.sum()))



def test_adls_drop_draw_reads_nothing_back():
    from fer_models.methods.adl import adl

    f = torch.rand(2, 4, 6, 6)
    counter = SyncCounter()
    with counter:
        for _ in range(3):
            adl(f, 0.75, 0.9)
    assert counter.calls == []
    att = f.mean(1, keepdim=True)
    assert torch.equal(adl(f, 1.0, 0.9), f * (att <= 0.9 * att.amax((2, 3), keepdim=True)).float())
    assert torch.equal(adl(f, 0.0, 0.9), f * torch.sigmoid(att))
