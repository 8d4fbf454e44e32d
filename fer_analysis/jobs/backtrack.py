"""Job ``backtrack``: why test faces were (mis)classified, by backtracking the decision through
the dense head and deconvolving the kept activations (paper 003 Alg. 1-2, Table 3); the science
is in ``fer_analysis.backtrack``."""

from __future__ import annotations

from fer_analysis.jobs._base import register_job


@register_job("backtrack", split="test", needs=("dense-head",), paper="003")
def backtrack(model, loader, out_dir, spec, *, num_classes=None, device="cpu", progress=False):
    """Backtracking and feature tracking of misclassified test faces, suppression test (paper 003)."""
    from fer_analysis.backtrack import run_backtrack

    return run_backtrack(model, loader, out_dir, cases=spec.cases, device=device, progress=progress)
