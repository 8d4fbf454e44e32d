"""Valence/arousal in the penultimate layer (paper 004, Study 4, Fig. 5).

PCA (2 components) of the penultimate layer's embedding; each of PC1 and PC2 is
regressed on valence and on arousal with ``scipy.stats.linregress`` (y = PC, x = the
label; r and p do not depend on that choice, the slope does). The paper's claim is
PC1 ~ valence (strong) and PC2 ~ arousal (weak); the cross pairs are reported too.
Samples whose valence (arousal) is NaN are skipped for that regression and counted.
The PC sign follows scikit-learn's convention (see ``_base.pca_project``), so a negative
slope only says the component is oriented against valence. With ``control`` the same
regressions are reported for the untrained network.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from fer_analysis.embeddings import Embeddings
from fer_analysis.plots_probe import plot_valence_arousal
from fer_analysis.probes._base import ProbeResult, metric_key, networks, pca_project, write_csv
from fer_analysis.registry import PROBES


def regress(pc: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """``linregress(target, pc)`` on rows with a finite target: slope, intercept, r, p, n, skipped."""
    ok = np.isfinite(target)
    n, skipped = int(ok.sum()), int((~ok).sum())
    nan = float("nan")
    if n < 3 or np.ptp(target[ok]) == 0 or np.ptp(pc[ok]) == 0:
        return {"slope": nan, "intercept": nan, "r": nan, "p": nan, "n": n, "skipped": skipped}
    f = stats.linregress(target[ok], pc[ok])
    return {"slope": float(f.slope), "intercept": float(f.intercept), "r": float(f.rvalue),
            "p": float(f.pvalue), "n": n, "skipped": skipped}


def va_fits(emb: Embeddings, layer: str | None = None, seed: int = 0):
    """(layer, pcs (N, 2), explained variance, {(pc, target): fit}) for the penultimate (or given) layer."""
    layer = layer or emb.penultimate()
    pcs, evr = pca_project(emb.layers[layer], 2, seed)
    evr = evr * emb.variance_share(layer)  # of the whole flattened layer (embeddings keep PC scores of big ones)
    fits = {}
    for j in range(pcs.shape[1]):
        for target, vals in (("valence", emb.valence), ("arousal", emb.arousal)):
            fits[(f"PC{j + 1}", target)] = regress(pcs[:, j], vals.astype(np.float64))
    return layer, pcs, evr, fits


@PROBES.register("valence-arousal", paper="004 Study 4")
def valence_arousal_probe(
    emb: Embeddings,
    out_dir: Path,
    *,
    control: Embeddings | None = None,
    layer: str | None = None,
    seed: int = 0,
    title: str = "",
    **_: Any,
) -> ProbeResult:
    """PC1/PC2 of the penultimate layer against valence/arousal (linear regression, paper 004 Study 4)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    res = ProbeResult()
    table = []
    for net, e in networks(emb, control):
        name, pcs, evr, fits = va_fits(e, layer, seed)
        suffix = "" if net == "trained" else "untrained"
        for (pc, target), f in fits.items():
            j = int(pc[2:]) - 1
            table.append({"network": net, "layer": name, "pc": pc, "target": target,
                          "explained_variance": float(evr[j]) if j < len(evr) else float("nan"), **f})
            res.metrics[metric_key("va", pc, target, "r", suffix)] = f["r"]
            res.metrics[metric_key("va", pc, target, "slope", suffix)] = f["slope"]
            res.metrics[metric_key("va", pc, target, "p", suffix)] = f["p"]
        res.metrics[metric_key("va_skipped_valence", suffix)] = float(fits[("PC1", "valence")]["skipped"])
        res.metrics[metric_key("va_skipped_arousal", suffix)] = float(fits[("PC1", "arousal")]["skipped"])
        res.files.append(plot_valence_arousal(
            pcs, e.valence, e.arousal, e.label, fits, out_dir / f"valence_arousal_{net}.png",
            title or f"{net}: penultimate layer '{name}'"))
        res.notes[f"layer_{net}"] = name
    res.tables["valence_arousal"] = table
    res.files.append(write_csv(out_dir / "valence_arousal.csv", table))
    return res
