"""Correct and wrong predictions on the penultimate layer's PC1/PC2 (paper 004, Fig. 7).

Paper 004 projects KDEF's 980 frontal faces on PC1 and PC2 of the penultimate layer and,
one expression at a time, colours the faces of that expression green where the network's
label is right and red where it is wrong (the other faces grey). fer-orch draws the same
panels, one per class present, after a first panel with every labelled face.

The prediction is the argmax of the output layer (``Embeddings.output_layer``: the logits or
a softmax tap, same argmax); the truth is the expression label, or the identity for a run
trained on identities (``target``). Faces without a label (-1: DISFA has no expression
labels) are grey and counted apart. Files: ``correct.png``, ``correct_per_class.csv``
(class, faces, correct, wrong) and ``correct_rows.csv`` (row, truth, prediction, correct,
PC1, PC2); metrics ``correct_n``, ``wrong_n``, ``correct_unlabelled_n``, ``correct_accuracy``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from fer_analysis.embeddings import Embeddings
from fer_analysis.plots_probe import plot_correct
from fer_analysis.probes._base import ProbeResult, pca_project, write_csv
from fer_analysis.registry import PROBES
from fer_models.errors import ConfigError
from fer_models.labels import EXPRESSIONS


def predictions(emb: Embeddings) -> np.ndarray:
    """The network's class per row: the argmax of the stored output layer."""
    name = emb.output_layer
    if name not in emb.layers or emb.reduced.get(name, "raw") != "raw":
        raise ConfigError("the correct probe needs the network's outputs; keep the logits among the probed layers")
    return np.asarray(emb.layers[name]).argmax(axis=1)


@PROBES.register("correct", paper="004 Fig. 7")
def correct_probe(
    emb: Embeddings,
    out_dir: Path,
    *,
    control: Embeddings | None = None,
    layer: str | None = None,
    target: str = "expression",
    seed: int = 0,
    title: str = "",
    classes: Sequence[int] | None = None,
    **_: Any,
) -> ProbeResult:
    """PC1 vs PC2 of the penultimate layer, correct predictions green and errors red, per class (paper 004, Fig. 7).

    ``classes``: the project label of each output of a class-subset network (paper 004's NN1:
    happiness, sadness, neutral; ``fer_models.labels.output_classes``); its predictions are
    compared in the project's order, and faces of an expression it has no output for are left
    out of the counts (metric ``correct_outside_n``)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    truth = emb.identity if target == "identity" else emb.label
    pred = predictions(emb)
    known = truth >= 0
    outside = np.zeros_like(known)
    subset = classes is not None and target != "identity"
    if subset:
        pred = np.asarray(classes, dtype=np.int64)[pred]
        outside = known & ~np.isin(truth, np.asarray(classes))
        known = known & ~outside
    correct = known & (pred == truth)
    layer = layer or emb.penultimate()
    pcs, _ = pca_project(emb.layers[layer], 2, seed)
    if pcs.shape[1] == 1:
        pcs = np.c_[pcs, np.zeros(len(pcs))]
    present = [] if target == "identity" else [int(k) for k in np.unique(truth[known])]
    names = [EXPRESSIONS[k] if k < len(EXPRESSIONS) else str(k) for k in present]
    per_class = [{"class": name, "faces": int((truth == k).sum()), "correct": int(((truth == k) & correct).sum()),
                  "wrong": int(((truth == k) & ~correct).sum())} for k, name in zip(present, names)]
    res = ProbeResult()
    res.metrics.update({"correct_n": float(correct.sum()), "wrong_n": float((known & ~correct).sum()),
                        "correct_unlabelled_n": float((~known & ~outside).sum()),
                        "correct_accuracy": float(correct.sum() / known.sum()) if known.any() else float("nan")})
    if subset:
        res.metrics["correct_outside_n"] = float(outside.sum())
    res.tables["correct"] = per_class
    res.notes["layer"] = layer
    res.files.append(write_csv(out_dir / "correct_per_class.csv", per_class))
    res.files.append(write_csv(out_dir / "correct_rows.csv", [
        {"row": i, "truth": int(truth[i]), "prediction": int(pred[i]), "correct": int(correct[i]),
         "PC1": float(pcs[i, 0]), "PC2": float(pcs[i, 1])} for i in range(emb.n)]))
    res.files.append(plot_correct(pcs, truth, correct, present, names, out_dir / "correct.png",
                                  title or f"'{layer}': {int(correct.sum())} correct, "
                                           f"{int((known & ~correct).sum())} wrong ({target})"))
    return res
