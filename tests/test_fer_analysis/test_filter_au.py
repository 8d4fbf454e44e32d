"""Filter <-> AU divergences (paper 001 Sec. 4.4) and the top-N job (Sec. 4.3) on toy data."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from fer_analysis.filter_au import (bin_index, filter_au_kl, histograms, kl_divergence, run_filter_au, table_rows,
                                    top_au)
from fer_analysis.hooks import assert_no_hooks
from fer_analysis.topn import layer_max_responses, patch_box, receptive_field, run_topn, top_n

torch.set_num_threads(1)


def test_kl_of_identical_histograms_is_zero_and_matches_hand_value_otherwise():
    p = torch.tensor([0.2, 0.3, 0.5])
    assert kl_divergence(p, p).item() == pytest.approx(0.0, abs=1e-7)
    q = torch.tensor([0.5, 0.5])
    r = torch.tensor([0.25, 0.75])
    want = 0.5 * math.log(2.0) + 0.5 * math.log(0.5 / 0.75)
    assert kl_divergence(q, r).item() == pytest.approx(want, rel=1e-6)
    assert kl_divergence(r, q).item() != pytest.approx(want, rel=1e-3)  # asymmetric


def test_filter_au_kl_is_d_of_q_with_the_au_against_r_without_it():
    """Paper 001 step (iv): D_KL(Q || R), Q = samples WITH the AU. Values 1..9 fall in three
    equal-frequency bins {1,2,3} {4,5,6} {7,8,9}; the AU is present on 1, 2, 4, 7."""
    values = torch.arange(1.0, 10.0)[:, None]
    aus = torch.zeros(9, 1)
    aus[[0, 1, 3, 6], 0] = 1.0
    res = filter_au_kl(values, aus, [12], bins=3, alpha=0.0, min_count=1, permutations=0)
    q = [2 / 4, 1 / 4, 1 / 4]  # with the AU
    r = [1 / 5, 2 / 5, 2 / 5]  # without
    d_qr = sum(a * math.log(a / b) for a, b in zip(q, r))  # 0.2231
    d_rq = sum(b * math.log(b / a) for a, b in zip(q, r))  # 0.1927
    assert res.kl[0, 0].item() == pytest.approx(d_qr, rel=1e-5)
    assert abs(res.kl[0, 0].item() - d_rq) > 0.02  # swapping the arguments would fail here
    assert (res.n_present.tolist(), res.n_absent.tolist()) == ([4], [5])


def test_histograms_share_equal_frequency_bins_per_filter():
    v = torch.tensor([[0.0, 5.0], [1.0, 5.0], [2.0, 5.0], [4.0, 5.0]])  # filter 0: median 1.5; filter 1: constant
    assert bin_index(v, 2)[:, 0].tolist() == [0, 0, 1, 1]
    assert bin_index(v, 2)[:, 1].tolist() == [1, 1, 1, 1]  # ties: one occupied bin
    g = torch.tensor([[1, 0], [1, 0], [0, 1], [1, 1]], dtype=torch.bool)
    h = histograms(v, g, bins=2)
    assert h.shape == (2, 2, 2)
    assert h[0, 0].tolist() == [2.0, 1.0] and h[0, 1].tolist() == [0.0, 2.0]
    # a constant filter carries no information: zero divergence whatever the AU
    res = filter_au_kl(v, g[:, :1].float(), [1], bins=2, min_count=1, permutations=20)
    assert res.kl[1, 0].item() == pytest.approx(0.0, abs=1e-9)


def test_independent_filters_have_a_null_corrected_kl_near_zero_and_uniform_p_values():
    """40 filters that ignore three AUs (present in 20, 80 and 200 of 400 samples)."""
    from scipy import stats

    g = torch.Generator().manual_seed(0)
    values = torch.randn(400, 40, generator=g)
    aus = torch.zeros(400, 3)
    for j, n in enumerate((20, 80, 200)):
        aus[torch.randperm(400, generator=g)[:n], j] = 1.0
    res = filter_au_kl(values, aus, [1, 2, 4], permutations=400)
    assert res.null_mean[:, 0].mean() > 3 * res.null_mean[:, 2].mean()  # the rare AU's bias is larger...
    assert res.kl[:, 0].mean() > 0.05
    corrected = res.corrected
    assert corrected.mean().abs() < 0.01  # ...and the correction removes it
    assert corrected[:, 0].mean().abs() < 0.02
    p = res.p.flatten().numpy()
    assert stats.kstest(p, "uniform").pvalue > 0.01
    assert 0.0 <= (p < 0.05).mean() <= 0.12 and 0.35 <= (p < 0.5).mean() <= 0.65
    assert (res.q >= res.p).all()


def test_a_planted_dependence_is_found_and_ranks_first():
    g = torch.Generator().manual_seed(1)
    m = 400
    aus = (torch.rand(m, 4, generator=g) < 0.3).float() * 2.0  # intensities 0 or 2
    aus[:40, 3] = float("nan")  # AU column 3 unknown on 40 samples
    noise = torch.randn(m, 3, generator=g)
    values = torch.stack([
        noise[:, 0],  # filter 0: ignores every AU
        noise[:, 1] + 1.0 * (aus[:, 2] > 0),  # filter 1: a 1-sd shift with AU column 2
        noise[:, 2] + 3.0 * (aus[:, 0] > 0),  # filter 2: fires with AU column 0
    ], dim=1)
    res = filter_au_kl(values, aus, [1, 4, 12, 25], permutations=300)
    j, best = top_au(res)
    assert j[1].item() == 2 and j[2].item() == 0
    assert res.p[1, 2] < 0.01 and res.q[1, 2] < 0.05 and res.q[2, 0] < 0.05
    assert not (res.q[0] < 0.05).any()
    assert res.corrected[1, 2] > 5 * res.corrected[0].abs().max()
    assert res.n_present[3] + res.n_absent[3] == m - 40
    rows = table_rows(res, [1, 2])
    assert rows[0]["au"] == 12 and rows[0]["au_name"] == "AU12: Lip Corner Puller" and rows[0]["significant"]
    assert rows[0]["mean_act_with"] > rows[0]["mean_act_without"]
    assert rows[1]["kl_corrected"] == pytest.approx(rows[1]["kl"] - rows[1]["null_mean"], abs=1e-6)


def test_a_rare_unrelated_au_does_not_beat_a_real_effect_once_corrected():
    """The issue's case: an AU in 10 of 1,000 samples, unrelated, against a 0.5-sd shift on a
    common AU. Raw divergences rank the rare AU first (on average); corrected ones do not."""
    g = torch.Generator().manual_seed(2)
    m, c = 1000, 30
    aus = torch.zeros(m, 2)
    aus[torch.randperm(m, generator=g)[:10], 0] = 1.0  # rare, unrelated
    aus[torch.randperm(m, generator=g)[:500], 1] = 1.0  # common, real
    values = torch.randn(m, c, generator=g) + 0.5 * aus[:, 1:2]
    res = filter_au_kl(values, aus, [9, 12], min_count=10, permutations=300)
    assert res.kl[:, 0].mean() > 0.1  # the rare AU's raw divergence is all bias
    assert (res.kl[:, 0] > res.kl[:, 1]).float().mean() > 0.5  # raw: the rare AU often "wins"
    assert res.corrected[:, 1].mean() > res.corrected[:, 0].mean() + 0.08
    assert (top_au(res)[0] == 1).float().mean() > 0.9  # ranked by p, then corrected KL


def test_sequences_are_counted_and_permuted_as_units():
    """60 CK+-like sequences of 4 near-identical frames; an unrelated AU in 20 sequences. Rows
    counted as independent samples make the null too narrow (most filters 'significant');
    counted by sequence, the false-positive rate is nominal."""
    rng = np.random.default_rng(1)
    s, f, c = 60, 4, 60
    values = np.repeat(rng.standard_normal((s, c)), f, axis=0) + 0.05 * rng.standard_normal((s * f, c))
    au = np.zeros((s, 1))
    au[rng.choice(s, 20, replace=False)] = 1.0
    aus = torch.from_numpy(np.repeat(au, f, axis=0))
    seq = np.repeat([f"S{i:03d}_001" for i in range(s)], f)
    by_row = filter_au_kl(torch.from_numpy(values), aus, [1], min_count=5, permutations=300)
    by_seq = filter_au_kl(torch.from_numpy(values), aus, [1], units=seq, min_count=5, permutations=300)
    assert (by_row.n_present.item(), by_seq.n_present.item(), by_seq.n_units) == (80, 20, 60)
    assert by_seq.unit == "sequence" and by_row.unit == "row"
    assert (by_row.p < 0.05).float().mean() > 0.3
    assert (by_seq.p < 0.05).float().mean() < 0.12
    # a sequence whose neutral first frame has no AU is two units (neutral, peak)
    first = int(np.flatnonzero(au[:, 0])[0]) * f  # first frame of a sequence with the AU
    aus2 = aus.clone()
    aus2[first] = 0.0
    assert filter_au_kl(torch.from_numpy(values), aus2, [1], units=seq, min_count=1, permutations=0).n_units == 61


def test_too_few_samples_and_unknown_intensities_give_nan():
    values = torch.rand(20, 2)
    aus = torch.zeros(20, 2)
    aus[:2, 0] = 1.0  # AU column 0 present twice only
    aus[:, 1] = float("nan")  # AU column 1 unknown everywhere
    res = filter_au_kl(values, aus, [1, 2], min_count=5, permutations=50)
    assert torch.isnan(res.kl).all() and torch.isnan(res.p).all() and torch.isnan(res.q).all()
    assert res.n_absent[1] == 0


# --------------------------------------------------------------------------- toy conv model + data
class _Faces(Dataset):
    """16x16 images on a dim grey background: AU column 0 -> a red square, AU column 1 -> a
    green square, at a random place; label = which AU shows (2 = neither)."""

    def __init__(self, m=48, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.aus = (torch.rand(m, 2, generator=g) < 0.5).float()
        self.images = 0.1 * torch.rand(m, 3, 16, 16, generator=g)
        for i in range(m):
            for c in range(2):
                if self.aus[i, c]:
                    r, k = torch.randint(0, 12, (2,), generator=g).tolist()
                    self.images[i, c, r:r + 4, k:k + 4] = 1.0
        self.labels = torch.where(self.aus[:, 0] > 0, 0, torch.where(self.aus[:, 1] > 0, 1, 2))

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return {"image": self.images[i], "label": self.labels[i], "aus": self.aus[i], "index": torch.tensor(i)}


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 2, 3, padding=1, bias=False)
        self.relu1 = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(2, 2, 3, padding=1, bias=False)
        self.relu2 = nn.ReLU()
        self.fc = nn.Linear(2 * 8 * 8, 3)
        with torch.no_grad():
            w = torch.full((2, 3, 3, 3), -0.5)
            w[0, 0] = 1.0  # filter 0: red
            w[1, 1] = 1.0  # filter 1: green
            self.conv1.weight.copy_(w / 9)
            self.conv2.weight.zero_()
            self.conv2.weight[0, 0] = 1.0 / 9
            self.conv2.weight[1, 1] = 1.0 / 9

    def tap_layers(self):
        return {"conv1": self.conv1, "conv2": self.conv2}

    def forward(self, x):
        h = self.relu2(self.conv2(self.pool(self.relu1(self.conv1(x)))))
        return self.fc(h.flatten(1))


def test_one_pass_responses_and_top_n_rank_images_by_filter_maximum():
    ds = _Faces()
    net = _Net().eval()
    resp = layer_max_responses(net, "conv2", DataLoader(ds, batch_size=16), progress=False)
    assert resp.values.shape == (48, 2) and resp.feature_hw == (8, 8)
    with torch.no_grad():
        a = net.pool(net.relu1(net.conv1(ds.images)))
        full = net.conv2(a).flatten(2).max(2).values
    assert torch.allclose(resp.values, full, atol=1e-6)
    top = top_n(resp, 5)
    assert (top.values[:, :-1] >= top.values[:, 1:]).all()
    # the strongest red-filter images all show the red square (AU column 0)
    assert ds.aus[top.index[0], 0].all() and ds.aus[top.index[1], 1].all()
    assert_no_hooks(net)


def test_receptive_field_and_patch_box():
    net = _Net().eval()
    # conv1 3x3 -> pool 2 -> conv2 3x3: 3 + 1 + 2 * 2 = 8 pixels
    assert receptive_field(net, "conv2", (3, 16, 16)) == (8, 8)
    assert receptive_field(net, "conv1", (3, 16, 16)) == (3, 3)
    assert patch_box((0, 7), (8, 8), (16, 16), (8, 8)) == (0, 8, 8, 8)  # shifted inside
    assert patch_box((4, 4), (8, 8), (16, 16), (8, 8)) == (5, 5, 8, 8)


def test_filter_au_job_finds_the_colour_aus_and_writes_its_files(tmp_path):
    ds = _Faces()
    net = _Net().eval()
    loader = DataLoader(ds, batch_size=16)
    metrics = run_filter_au(net, loader, tmp_path, layer="conv2", au_ids=[4, 12], k=2, n=3, bins=8,
                            min_count=3, progress=False)
    rows = list(csv.DictReader(open(tmp_path / "filter_au_conv2.csv")))
    top = {int(r["filter"]): int(r["au"]) for r in rows}
    assert top == {0: 4, 1: 12}  # red filter <-> AU column 0, green filter <-> AU column 1
    assert all(0 < float(r["peak_row_frac"]) < 1 and 0 < float(r["peak_col_frac"]) < 1 for r in rows)
    assert metrics["filter_au_max_kl"] > 0.5
    assert "AU4: Brow Lowerer" in (tmp_path / "filter_au_conv2.md").read_text()
    for f in ("kl_bars_conv2.png", "kl_matrix_conv2.csv", "topn_conv2.png", "topn_conv2.csv"):
        assert (tmp_path / f).stat().st_size > 0
    assert_no_hooks(net)


def test_topn_job_default_layer_grid_and_csv(tmp_path):
    ds = _Faces()
    net = _Net().eval()
    metrics = run_topn(net, DataLoader(ds, batch_size=16), tmp_path, n=4, progress=False)
    assert (tmp_path / "topn_conv2.png").stat().st_size > 1000  # the deepest spatial tap layer
    rows = list(csv.DictReader(open(tmp_path / "topn_conv2.csv")))
    assert len(rows) == 2 * 4
    acts = [float(r["activation"]) for r in rows if r["filter"] == "0"]
    assert acts == sorted(acts, reverse=True)
    assert metrics["topn_filters"] == 2
    assert_no_hooks(net)


def test_filter_au_job_tables_the_visualised_filters_counts_sequences_and_flags_au_trained_runs(tmp_path):
    """Paper 001's order: the filters of the top-N figure first (the strongest responses), then
    their divergences; a ``sequence`` column makes the samples count by sequence; on a run
    trained with the AU loss the table starts with a warning."""
    from fer_analysis.jobs import ExplainSpec, run_job
    from fer_analysis.run_labels import RunContext
    from fer_analysis.topn import layer_max_responses, strongest_filters

    ds = _Faces(m=60)

    class _Seq(Dataset):
        au_ids = (4, 12)  # names of the AU columns, as FaceDataset.au_ids

        def __len__(self):
            return len(ds)

        def __getitem__(self, i):
            return {**ds[i], "sequence": torch.tensor(i // 2)}  # two frames per "sequence"

    for i in range(0, 60, 2):  # both frames of a sequence show the same AUs (and expression)
        ds.aus[i + 1], ds.labels[i + 1] = ds.aus[i], ds.labels[i]
    net = _Net().eval()
    loader = DataLoader(_Seq(), batch_size=16)
    spec = ExplainSpec(jobs=("filter-au",), layer="conv2", filters=1, top_n=3, min_count=3, permutations=200)
    metrics = run_job("filter-au", net, loader, tmp_path, spec, context=RunContext(au_loss=True))
    resp = layer_max_responses(net, "conv2", loader, progress=False)
    rows = list(csv.DictReader(open(tmp_path / "filter_au_conv2.csv")))
    assert [int(r["filter"]) for r in rows] == strongest_filters(resp, 1, 3)
    assert rows[0]["unit"] == "sequence" and metrics["filter_au_units"] == 30
    assert int(rows[0]["n_with"]) + int(rows[0]["n_without"]) == 30  # sequences, not frames
    md = (tmp_path / "filter_au_conv2.md").read_text()
    assert md.startswith("**Warning**") and "AU alignment loss" in md
    assert "permutations of the AU labels over 30 sequences" in md


def _ckplus_like(seed: int, kind: str, n_seq: int = 120, n_aus: int = 8, c: int = 80):
    """CK+'s structure: per sequence a neutral first frame (no AU, label neutral) and 3 peak
    frames with the sequence's AUs (drawn from its expression's codebook-like AU profile).
    Filters: a unit-level effect plus frame noise (``null``); plus a jump on peak frames
    (``confound``: expressive vs neutral); plus a jump on one expression (``class``)."""
    rng = np.random.default_rng(seed)
    emo = rng.integers(0, 6, n_seq)
    book = np.full((6, n_aus), 0.1)
    for e in range(6):
        book[e, rng.choice(n_aus, 3, replace=False)] = 0.8
    aus, labels, units, peak = [], [], [], []
    for s in range(n_seq):
        seq_aus = (rng.random(n_aus) < book[emo[s]]).astype(float)
        for f in range(4):
            aus.append(seq_aus if f else np.zeros(n_aus))
            labels.append(emo[s] if f else 6)
            units.append(s)
            peak.append(int(f > 0))
    labels, units, peak = np.array(labels), np.array(units), np.array(peak)
    vals = rng.standard_normal((2 * n_seq, c))[units * 2 + peak] + 0.3 * rng.standard_normal((len(labels), c))
    vals += 2.0 * {"null": 0 * peak, "confound": peak, "class": (labels == 3).astype(int)}[kind][:, None]
    return torch.tensor(vals), torch.tensor(np.array(aus)), units, labels


def _false_positive_rate(kind: str, **kw) -> float:
    ps = []
    for seed in range(6):  # the filters of one draw share their permutations: pool several draws
        v, a, u, lab = _ckplus_like(seed, kind)
        r = filter_au_kl(v, a, list(range(1, 9)), units=u, labels=lab, permutations=200, min_count=10, seed=seed,
                         **kw)
        ps.append(r.p[torch.isfinite(r.p)])
    return float((torch.cat(ps) < 0.05).float().mean())


def test_the_permutation_test_is_calibrated_on_ckplus_structure():
    """False positives (p < 0.05) over 6 x 80 filters x 8 AUs when no filter responds to any AU:
    at most 6 % under a pure null and under the peak-vs-neutral confound, on expressive frames
    (the default) and on all frames (the permutation keeps frame counts: a neutral unit of one
    frame never trades labels with a peak unit of three); a filter that responds to one
    expression flags that expression's AUs unless the permutation stays within expressions."""
    for kind in ("null", "confound"):
        for frames in ("expressive", "all"):
            rate = _false_positive_rate(kind, frames=frames)
            assert 0.02 <= rate <= 0.06, (kind, frames, rate)
    assert _false_positive_rate("class") > 0.15  # AU j or the expression it comes with?
    assert _false_positive_rate("class", within="class") <= 0.06


def test_filter_au_tests_every_au_the_ckplus_stand_in_labels(tmp_path):
    """CK+ codes AUs that no codebook uses; the CK+ stand-in labels AU11, 14, 22 and 43 too.
    The cache keeps them (its ``au_ids``), so filter-au tests every labelled AU: the matrix,
    the Table-4 candidates and Fig. 5's bars all have their columns."""
    from fer_models.config import DataConfig
    from fer_models.data import au
    from fer_models.data.dataset import build_loaders

    loaders = build_loaders(DataConfig(dataset="synthetic-ckplus", image_size=16, map_size=8, augment=(),
                                       num_workers=0), 32, 0, tmp_path / "cache", progress=False)
    ids = loaders.train.dataset.au_ids
    assert {11, 14, 22, 43} <= set(ids) and set(au.AU_IDS) <= set(ids)
    metrics = run_filter_au(_Net().eval(), loaders.train, tmp_path, layer="conv2", k=2, n=3, min_count=2,
                            permutations=20, visualise=False, progress=False)
    header, first = list(csv.reader(open(tmp_path / "kl_matrix_conv2.csv")))[:2]
    assert header == ["filter"] + [f"AU{a}" for a in ids]
    kl = dict(zip(header[1:], map(float, first[1:])))
    assert all(math.isfinite(kl[f"AU{a}"]) for a in (11, 14, 22, 43))  # tested, not left out
    assert metrics["filter_au_aus_tested"] > len(au.AU_IDS) - 2
