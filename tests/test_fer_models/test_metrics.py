"""Paper 002 metrics: CL, CAM-COS, ATT-COS, neutral excluded, ground-truth cosines, matrices, mean maps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fer_models.labels import NEUTRAL
from fer_models.methods._base import FERModel, ModelOutput
from fer_models.metrics import COSINE_COLUMNS, evaluate, save_figures

torch.set_num_threads(1)
K, S, M = 7, 32, 16


class MapEcho(FERModel):
    """Fake model: channel 0 of the image is (up-sampled) 'the' map; channel 1 encodes the predicted class.

    Its CAM of every class and its attention at every layer are that map, so the cosine
    metrics are known without training anything.
    """

    name = "echo"

    def __init__(self):
        super().__init__(K)
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x, labels=None):
        m = x[:, :1]
        pred = x[:, 1, 0, 0].round().long()
        logits = F.one_hot(pred, K).float() + self.dummy
        feats = {l: F.adaptive_avg_pool2d(m, S // 2 ** (l - 1) if l < 5 else 4) for l in range(1, 6)}
        cams = F.adaptive_avg_pool2d(m, 8).expand(-1, K, -1, -1)
        return ModelOutput(logits=logits, features=feats, cams=cams)


def _blobs(b, size, seed):
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")
    c = torch.randint(size // 4, 3 * size // 4, (b, 2), generator=g).float()
    return torch.exp(-((yy - c[:, 0, None, None]) ** 2 + (xx - c[:, 1, None, None]) ** 2) / (size / 3))


def _loader(labels, preds, seed=0, mismatch=()):
    """One batch: image ch0 = map A (so CAM == A), except samples in ``mismatch`` whose image map differs."""
    b = len(labels)
    a = _blobs(b, M, seed)
    img_map = F.interpolate(a[:, None], size=(S, S), mode="bilinear", align_corners=False)[:, 0]
    other = F.interpolate(_blobs(b, M, seed + 99)[:, None], size=(S, S), mode="bilinear", align_corners=False)[:, 0]
    for i in mismatch:
        img_map[i] = other[i]
    x = torch.zeros(b, 3, S, S)
    x[:, 0] = img_map
    x[:, 1] = torch.tensor(preds, dtype=torch.float32)[:, None, None]
    y = torch.tensor(labels)
    valid = y != NEUTRAL
    return [{
        "image": x, "label": y, "au_map": (a * valid[:, None, None])[:, None], "au_valid": valid,
        "gt_au_map": a[:, None], "gt_valid": torch.ones(b, dtype=torch.bool),
    }]


def test_classification_accuracy_and_confusion():
    labels = [0, 1, 2, 3, 4, 5, 6, 0]
    preds = [0, 1, 2, 0, 4, 5, 6, 3]
    r = evaluate(MapEcho(), _loader(labels, preds), num_classes=K, maps=False)
    assert r.metrics["cl"] == pytest.approx(100 * 6 / 8)
    assert r.confusion.sum() == 8 and r.confusion[3, 0] == 1 and r.confusion[0, 3] == 1
    assert np.trace(r.confusion) == 6


def test_cam_and_att_cos_are_high_when_maps_match_and_neutral_is_excluded():
    labels = [0, 1, 2, 3, 4, 5, 6, 6]
    r = evaluate(MapEcho(), _loader(labels, labels), num_classes=K, mean_maps=True)
    assert r.metrics["cam_cos"] > 0.9 and r.metrics["att_cos"] > 0.8  # att: 4x4, coarser
    assert r.metrics["gt_cam_cos"] > 0.9
    # mismatching maps on the neutral samples changes nothing; on an expressive one it lowers the score
    r_neutral = evaluate(MapEcho(), _loader(labels, labels, mismatch=(6, 7)), num_classes=K)
    assert r_neutral.metrics["cam_cos"] == pytest.approx(r.metrics["cam_cos"])
    r_bad = evaluate(MapEcho(), _loader(labels, labels, mismatch=(0, 1, 2)), num_classes=K)
    assert r_bad.metrics["cam_cos"] < r.metrics["cam_cos"] - 0.05
    assert r_bad.metrics["att_cos"] < r.metrics["att_cos"] - 0.05


def test_cosine_matrix_rows_classes_columns_layers_and_cam_and_mean_maps():
    labels = [0, 1, 2, 3, 4, 5, 6, 0]
    r = evaluate(MapEcho(), _loader(labels, labels), num_classes=K, mean_maps=True)
    assert r.cosine_matrix.shape == (K, len(COSINE_COLUMNS))
    assert np.isnan(r.cosine_matrix[NEUTRAL]).all()
    assert np.isfinite(r.cosine_matrix[:NEUTRAL]).all()
    assert r.mean_maps["cam"].shape == (K, M, M) and r.mean_maps["att"].shape == (K, M, M)
    assert r.mean_maps["cam"].min() >= 0 and r.mean_maps["cam"].max() <= 1


def test_figures_are_written(tmp_path):
    labels = [0, 1, 2, 3, 4, 5, 6, 0]
    r = evaluate(MapEcho(), _loader(labels, labels), num_classes=K, mean_maps=True)
    paths = save_figures(r, tmp_path, title="echo")
    assert [p.relative_to(tmp_path).as_posix() for p in paths] == [
        "matrices/confusion.csv", "matrices/confusion.png", "matrices/cosine.csv", "matrices/cosine.png",
        "maps/mean_cam.png", "maps/mean_att.png",
    ]
    assert all(p.stat().st_size > 1000 for p in paths if p.suffix == ".png")
    rows = (tmp_path / "matrices" / "confusion.csv").read_text().splitlines()
    assert rows[1].split(",")[1] == "2"  # two anger faces predicted anger (labels echo)


class FlatMaps(MapEcho):
    """Same forward as MapEcho, but its method's map M[k] is a constant: metrics must call
    :meth:`class_maps` for any ``map_source`` other than the forward's built-in CAMs."""

    map_source = "grad"

    def class_maps(self, x, target):
        return torch.ones(x.shape[0], 4, 4)


def test_map_source_decides_where_cam_cos_reads_the_map():
    loader = _loader([0, 1, 2, 3], [0, 1, 2, 3])
    built_in = evaluate(MapEcho(), loader, num_classes=K).metrics["cam_cos"]
    own = evaluate(FlatMaps(), loader, num_classes=K).metrics["cam_cos"]
    assert built_in > 0.97  # the forward's CAM is (a pooled copy of) the AU map itself
    assert own < built_in - 0.1  # the flat map of class_maps was used, not the forward's CAM
