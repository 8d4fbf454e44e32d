"""Probes on synthetic embeddings with planted structure (paper 004, Studies 3-4)."""

from __future__ import annotations

import numpy as np
import pytest

from fer_analysis.embeddings import Embeddings
from fer_analysis.probes import compare_silhouettes, pca_project, read_csv
from fer_analysis.probes.silhouette import crossover, silhouette, silhouette_curve
from fer_analysis.probes.valence_arousal import regress, va_fits
from fer_analysis.registry import PROBES
from fer_models.errors import ConfigError


def _clustered(n_ids=8, per_id=20, dim=40, spread=6.0, noise=1.0, seed=0):
    """Rows clustered by identity (one random centre per id), expression labels random."""
    rng = np.random.default_rng(seed)
    ids = np.repeat(np.arange(n_ids), per_id)
    centres = rng.normal(0, spread, (n_ids, dim))
    x = centres[ids] + rng.normal(0, noise, (len(ids), dim))
    expr = rng.integers(0, 7, len(ids))
    return x.astype(np.float32), ids, expr


def _emb(layers, ids, expr, valence=None, arousal=None):
    n = len(ids)
    nan = np.full(n, np.nan, dtype=np.float32)
    return Embeddings(
        layers=layers,
        label=np.asarray(expr, dtype=np.int64),
        identity=np.asarray(ids, dtype=np.int64),
        valence=nan if valence is None else np.asarray(valence, dtype=np.float32),
        arousal=nan if arousal is None else np.asarray(arousal, dtype=np.float32),
    )


def test_registry_lists_the_probes():
    assert {"silhouette", "valence-arousal", "maps"} <= set(PROBES.names())


def test_silhouette_high_for_identity_clusters_low_when_shuffled():
    x, ids, expr = _clustered()
    z, _ = pca_project(x, 10)
    s_id = silhouette(z, ids)
    shuffled = np.random.default_rng(1).permutation(ids)
    s_shuf = silhouette(z, shuffled)
    s_expr = silhouette(z, expr)
    assert s_id > 0.6
    assert s_shuf < 0.05
    assert s_expr < 0.05


def test_silhouette_ignores_unknown_labels_and_is_nan_when_undefined():
    x, ids, _ = _clustered(n_ids=3, per_id=10)
    z, _ = pca_project(x, 5)
    ids_unknown = ids.copy()
    ids_unknown[:10] = -1  # one whole identity unknown: still two clusters left
    assert silhouette(z, ids_unknown) > 0.5
    assert np.isnan(silhouette(z, np.zeros_like(ids)))  # one label: undefined
    assert np.isnan(silhouette(z, -np.ones_like(ids)))


def test_silhouette_subsampling_estimates_the_full_score():
    x, ids, _ = _clustered(n_ids=5, per_id=80, noise=3.0)
    z, _ = pca_project(x, 10)
    full = silhouette(z, ids, max_samples=10_000)
    sub = silhouette(z, ids, max_samples=150, seed=3)
    assert abs(full - sub) < 0.1


def test_silhouette_curve_and_crossover_follow_planted_layers(tmp_path):
    """Layer 'early' clusters by identity, 'late' by expression: the curve and crossover say so."""
    rng = np.random.default_rng(0)
    x_id, ids, _ = _clustered(seed=0)
    expr = np.tile(np.arange(4), len(ids) // 4)
    expr_centres = rng.normal(0, 6.0, (4, 30))
    x_expr = (expr_centres[expr] + rng.normal(0, 1.0, (len(ids), 30))).astype(np.float32)
    emb = _emb({"early": x_id, "late": x_expr}, ids, expr)
    rows = silhouette_curve(emb, n_pcs=10)
    assert [r["layer"] for r in rows] == ["early", "late"]
    assert rows[0]["identity"] > rows[0]["expression"]
    assert rows[1]["expression"] > rows[1]["identity"]
    assert crossover(rows) == (1, "late")

    control = _emb({"early": x_id, "late": x_id}, ids, expr)
    res = PROBES.get("silhouette")(emb, tmp_path, control=control)
    assert (tmp_path / "silhouette.png").stat().st_size > 1000
    table = read_csv(tmp_path / "silhouette.csv")
    assert {r["network"] for r in table} == {"trained", "untrained"}
    assert res.metrics["silhouette_identity_early"] == pytest.approx(rows[0]["identity"])
    assert res.metrics["silhouette_crossover_index"] == 1
    assert res.metrics["silhouette_crossover_index_untrained"] == -1


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_pc1_regression_recovers_planted_valence(sign):
    """Penultimate features = valence * w + small noise: PC1 ~ valence with |r| ~ 1 and the planted sign.

    scikit-learn orients each PC so its largest loading is positive; with w >= 0 and the
    relation planted with ``sign``, PC1 = sign * valence * |w| (+ noise).
    """
    rng = np.random.default_rng(0)
    n = 300
    valence = rng.uniform(-1, 1, n)
    arousal = rng.uniform(-1, 1, n)
    w = np.abs(rng.normal(1, 0.2, 32))
    w2 = rng.normal(0, 1, 32)
    w2 -= w2 @ w / (w @ w) * w  # arousal direction orthogonal to valence's
    x = sign * valence[:, None] * w * 3 + arousal[:, None] * w2 + rng.normal(0, 0.05, (n, 32))
    valence[:10] = np.nan  # unknown labels are skipped and counted
    emb = _emb({"conv": rng.normal(size=(n, 8)).astype(np.float32), "fc": x.astype(np.float32),
                "logits": rng.normal(size=(n, 7)).astype(np.float32)}, np.arange(n) % 5, np.arange(n) % 7,
               valence, arousal)
    layer, pcs, evr, fits = va_fits(emb)
    assert layer == "fc"  # penultimate: last layer before the output
    f = fits[("PC1", "valence")]
    assert f["r"] * sign > 0.98
    assert np.sign(f["slope"]) == sign
    assert f["p"] < 1e-6
    assert f["n"] == n - 10 and f["skipped"] == 10
    assert abs(fits[("PC2", "arousal")]["r"]) > 0.9
    assert abs(fits[("PC1", "arousal")]["r"]) < 0.3


def test_regression_without_labels_is_nan_not_an_error():
    f = regress(np.arange(5.0), np.full(5, np.nan))
    assert np.isnan(f["r"]) and f["skipped"] == 5


def test_valence_arousal_probe_writes_plots_and_metrics(tmp_path):
    rng = np.random.default_rng(0)
    n = 60
    v = rng.uniform(-1, 1, n)
    x = (v[:, None] * np.ones(16) + rng.normal(0, 0.1, (n, 16))).astype(np.float32)
    emb = _emb({"fc": x}, np.arange(n) % 3, np.arange(n) % 7, v, rng.uniform(-1, 1, n))
    control = _emb({"fc": rng.normal(size=(n, 16)).astype(np.float32)}, np.arange(n) % 3, np.arange(n) % 7,
                   v, rng.uniform(-1, 1, n))
    res = PROBES.get("valence-arousal")(emb, tmp_path, control=control)
    assert (tmp_path / "valence_arousal_trained.png").exists()
    assert (tmp_path / "valence_arousal_untrained.png").exists()
    assert abs(res.metrics["va_PC1_valence_r"]) > 0.95
    assert abs(res.metrics["va_PC1_valence_r_untrained"]) < 0.5
    assert len(read_csv(tmp_path / "valence_arousal.csv")) == 8


def test_maps_probe_pca_only_draws_grid(tmp_path):
    x, ids, expr = _clustered(n_ids=4, per_id=10)
    emb = _emb({"a": x, "b": x[:, :5]}, ids, expr)
    res = PROBES.get("maps")(emb, tmp_path, umap=False)
    assert (tmp_path / "maps.png").stat().st_size > 1000
    assert res.tables["maps"][0]["pca2_identity"] > 0.3
    assert "umap_identity" not in res.tables["maps"][0]


@pytest.mark.slow
def test_maps_probe_with_umap(tmp_path):
    x, ids, expr = _clustered(n_ids=4, per_id=15)
    emb = _emb({"a": x}, ids, expr)
    res = PROBES.get("maps")(emb, tmp_path, umap=True, umap_max_samples=40, umap_n_epochs=30)
    row = res.tables["maps"][0]
    assert row["umap_identity"] > 0.3
    assert "umap_silhouette_identity_a" in res.metrics


def test_compare_two_runs_reports_differences_and_crossovers(tmp_path):
    a = [{"layer": "l1", "identity": 0.5, "expression": 0.1}, {"layer": "l2", "identity": 0.2, "expression": 0.3},
         {"layer": "l3", "identity": 0.0, "expression": 0.5}]
    b = [{"layer": "l1", "identity": 0.4, "expression": 0.45}, {"layer": "l2", "identity": 0.1, "expression": 0.4},
         {"layer": "extra", "identity": 0.0, "expression": 0.0}]
    res = compare_silhouettes(a, b, "noau", "au", tmp_path)
    table = read_csv(tmp_path / "compare_silhouette.csv")
    assert [r["layer"] for r in table] == ["l1", "l2"]
    assert table[0]["expression_diff"] == pytest.approx(0.35)
    assert res.notes["crossover_noau"] == "l2" and res.notes["crossover_au"] == "l1"
    assert res.notes["only_one_run"] == ["extra", "l3"]
    assert (tmp_path / "compare_silhouette.png").exists()
    with pytest.raises(ConfigError, match="share no probed layer"):
        compare_silhouettes(a, [{"layer": "zz", "identity": 0, "expression": 0}], "a", "b", tmp_path)


def test_faces_along_an_axis_are_equally_spaced_values_in_increasing_order():
    from fer_analysis.probes.faces import along_axis

    coord = np.array([5.0, -1.0, 0.2, 3.0, 9.0, 4.1, 2.2])
    targets, rows = along_axis(coord, 5)
    assert np.allclose(targets, [-1.0, 1.5, 4.0, 6.5, 9.0])
    assert rows.tolist() == [1, 6, 5, 0, 4]  # the nearest coordinate to each target
    assert np.all(np.diff(coord[rows]) >= 0)


def test_faces_probe_draws_21_faces_per_axis_from_the_stored_pictures(tmp_path):
    x, ids, expr = _clustered(n_ids=4, per_id=15)
    emb = _emb({"fc": x, "logits": x[:, :7]}, ids, expr)
    with pytest.raises(ConfigError, match="pictures"):
        PROBES.get("faces")(emb, tmp_path, umap=False)
    emb.images = np.arange(len(ids), dtype=np.uint8)[:, None, None, None].repeat(8, 1).repeat(8, 2)  # face i is grey i
    res = PROBES.get("faces")(emb, tmp_path, umap=False)
    rows = res.tables["faces"]
    assert [r["axis"] for r in rows] == ["PC1"] * 21 + ["PC2"] * 21
    pcs, _ = pca_project(x, 2)
    for axis, j in (("PC1", 0), ("PC2", 1)):
        picked = [r for r in rows if r["axis"] == axis]
        assert [r["position"] for r in picked] == list(range(21))
        assert picked[0]["row"] == int(pcs[:, j].argmin()) and picked[-1]["row"] == int(pcs[:, j].argmax())
        assert all(a["coordinate"] <= b["coordinate"] for a, b in zip(picked, picked[1:]))
        assert np.allclose([r["coordinate"] for r in picked], pcs[[r["row"] for r in picked], j], atol=1e-6)
    assert (tmp_path / "face_strips.png").stat().st_size > 2000 and (tmp_path / "face_coords.csv").exists()


def test_correct_probe_counts_right_and_wrong_predictions_per_class(tmp_path):
    x, ids, _ = _clustered(n_ids=3, per_id=10)
    truth = np.array([0, 1, 2, 3, -1] * 6)
    logits = np.zeros((30, 7), dtype=np.float32)
    pred = np.array([0, 2, 2, 3, 1] * 6)  # class 1 always wrong, the unlabelled row apart
    logits[np.arange(30), pred] = 1.0
    emb = _emb({"fc": x, "logits": logits}, ids, truth)
    res = PROBES.get("correct")(emb, tmp_path)
    assert res.metrics["correct_n"] == 18 and res.metrics["wrong_n"] == 6 and res.metrics["correct_unlabelled_n"] == 6
    assert res.metrics["correct_accuracy"] == pytest.approx(0.75)
    assert res.tables["correct"][1] == {"class": "disgust", "faces": 6, "correct": 0, "wrong": 6}
    assert (tmp_path / "correct.png").exists()
    by_identity = PROBES.get("correct")(emb, tmp_path / "id", target="identity")  # truth = the identities
    assert by_identity.metrics["correct_n"] == float(((pred == ids)).sum())


def test_maps_probe_draws_the_untrained_control_too(tmp_path):
    x, ids, expr = _clustered()
    noise = np.random.default_rng(5).normal(size=x.shape).astype(np.float32)
    res = PROBES.get("maps")(_emb({"a": x}, ids, expr), tmp_path, control=_emb({"a": noise}, ids, expr), umap=False)
    assert (tmp_path / "maps.png").exists() and (tmp_path / "maps_untrained.png").exists()
    by_net = {r["network"]: r for r in res.tables["maps"]}
    assert by_net["trained"]["pca2_identity"] > 0.3 > by_net["untrained"]["pca2_identity"]
