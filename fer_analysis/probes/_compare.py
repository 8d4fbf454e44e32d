"""Compare two runs' silhouette curves (e.g. one method with and without AU alignment).

No paper asks this; fer-orch does: does AU guidance change where identity fades and
expression emerges? Input: the ``silhouette`` probe's rows of each run (the ``trained``
network). Layers are matched by name, in the first run's order; layers only one run has
are left out and listed. Output: a CSV of both runs' scores and their differences
(b - a), each run's crossover layer (first layer where expression silhouette exceeds
identity silhouette), and one plot with both runs' curves.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from fer_analysis.plots_probe import plot_compare
from fer_analysis.probes._base import ProbeResult, write_csv
from fer_analysis.probes.silhouette import crossover
from fer_models.errors import ConfigError


def _trained(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if r.get("network", "trained") == "trained"]


def compare_silhouettes(
    rows_a: Sequence[dict[str, Any]],
    rows_b: Sequence[dict[str, Any]],
    name_a: str,
    name_b: str,
    out_dir: Path,
) -> ProbeResult:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    a = {r["layer"]: r for r in _trained(rows_a)}
    b = {r["layer"]: r for r in _trained(rows_b)}
    common = [l for l in a if l in b]
    if not common:
        raise ConfigError(
            f"runs {name_a} and {name_b} share no probed layer; compare runs of the same architecture "
            "or pass the same --layers"
        )
    table = []
    for l in common:
        ra, rb = a[l], b[l]
        table.append({
            "layer": l,
            f"identity_{name_a}": ra["identity"], f"expression_{name_a}": ra["expression"],
            f"identity_{name_b}": rb["identity"], f"expression_{name_b}": rb["expression"],
            "identity_diff": rb["identity"] - ra["identity"],
            "expression_diff": rb["expression"] - ra["expression"],
        })
    curves = {name_a: [a[l] for l in common], name_b: [b[l] for l in common]}
    res = ProbeResult()
    summary = []
    for name, rows in curves.items():
        idx, layer = crossover(rows)
        summary.append({"run": name, "crossover_index": idx, "crossover_layer": layer or "none"})
        res.notes[f"crossover_{name}"] = layer
    res.notes["only_one_run"] = sorted(set(a) ^ set(b))
    res.tables["compare"] = table
    res.tables["crossover"] = summary
    res.files.append(write_csv(out_dir / "compare_silhouette.csv", table))
    res.files.append(write_csv(out_dir / "compare_crossover.csv", summary))
    res.files.append(plot_compare(curves, out_dir / "compare_silhouette.png", f"{name_a} vs {name_b}"))
    return res
