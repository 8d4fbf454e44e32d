"""benchmarks/bench_au_drawing_shift.py: the CAM-COS shift between the two AU drawings, per
method (the table docs/reproducing-paper-002.md quotes), scored the same way in its smoke mode."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch


@pytest.fixture(scope="module")
def bench():
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_au_drawing_shift.py"
    spec = importlib.util.spec_from_file_location("bench_au_drawing_shift", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class _Echo(torch.nn.Module):
    """A 'network' whose CAM is one of the two reference drawings, at the reference's size."""

    def __init__(self, bench, which):
        super().__init__()
        self.bench, self.which = bench, which

    def class_maps(self, x, y):
        gau, ell, _ = self.bench.references(self.lm, y.numpy(), self.in_size)
        return torch.from_numpy(ell if self.which == "ellipses" else gau).float()


def _batch(n=16, size=32):
    from fer_models.data import synth

    b = synth.generate(n, size, 1, 6)
    return {"image": torch.zeros(n, 3, size, size), "label": torch.from_numpy(b.labels),
            "landmarks": torch.from_numpy(b.landmarks)}


@pytest.mark.parametrize("which,other", [("ellipses", "gaussians"), ("gaussians", "ellipses")])
def test_a_cam_equal_to_one_drawing_scores_one_against_it_and_less_against_the_other(bench, which, other):
    batch = _batch()
    model = _Echo(bench, which)
    model.lm, model.in_size = batch["landmarks"].numpy(), 32
    got = bench.score_model(model, [batch])
    assert got[which] == pytest.approx(1.0, abs=1e-5)
    assert 0.6 < got[other] < 0.95  # the drawings' cosine on synthetic faces (about 0.8)
    _, _, ok = bench.references(batch["landmarks"].numpy(), batch["label"].numpy(), 32)
    assert got["n"] == int(ok.sum()) > 0 and int(ok.sum()) < len(ok)  # neutral faces left out


def test_the_shift_is_paired_over_seeds_with_a_t_interval(bench):
    scores = {("cam", True): {0: {"gaussians": 0.5, "ellipses": 0.6, "n": 9},
                              1: {"gaussians": 0.4, "ellipses": 0.45, "n": 9},
                              2: {"gaussians": 0.6, "ellipses": 0.68, "n": 9}},
              ("wildcat", False): {0: {"gaussians": 0.5, "ellipses": 0.6, "n": 9},
                                   1: {"gaussians": 0.5, "ellipses": 0.3, "n": 9},
                                   2: {"gaussians": 0.5, "ellipses": 0.5, "n": 9}}}
    rows = {r["method"]: r for r in bench.summarise(scores)}
    d = np.array([0.1, 0.05, 0.08])
    half = 4.302652729911275 * d.std(ddof=1) / np.sqrt(3)  # t(0.975, 2)
    assert rows["cam"]["shift"] == pytest.approx(d.mean())
    assert (rows["cam"]["low"], rows["cam"]["high"]) == pytest.approx((d.mean() - half, d.mean() + half))
    assert rows["cam"]["significant"] and not rows["wildcat"]["significant"]
    text = bench.table(list(rows.values()))
    assert "| cam | w/ | 0,1,2 | 9 |" in text and "n.s." in text.split("wildcat")[1]
    one = bench.summarise({("prm", True): {0: {"gaussians": 0.5, "ellipses": 0.6, "n": 9}}})
    assert not one[0]["significant"] and "+0.100 (one seed: no interval)" in bench.table(one)


def test_smoke_mode_runs_the_pipeline_in_seconds(bench, capsys):
    rows = bench.main(["--smoke"])
    assert [(r["method"], r["seeds"]) for r in rows] == [("cam", [0, 1]), ("gradcam", [0, 1])]
    for r in rows:
        assert r["faces"] > 0 and 0.0 < r["gaussians"] < 1.0 and 0.0 < r["ellipses"] < 1.0
        assert r["shift"] == pytest.approx(r["ellipses"] - r["gaussians"])
    assert "| cam | w/o | 0,1 |" in capsys.readouterr().out
