"""Job ``backtrack``: why test faces were misclassified, by backtracking the decision through
the dense head and deconvolving the kept activations (paper 003 Alg. 1-2, Table 3, Figs. 9-11);
with ``--compare-run``, the same images backtracked through a second run (paper 003's
expression vs identity networks, Fig. 7). The science is in ``fer_analysis.backtrack`` and the modules it names."""

from __future__ import annotations

from fer_analysis.jobs._base import register_job


@register_job("backtrack", split="test", needs=("dense-head",), paper="003")
def backtrack(model, loader, out_dir, spec, *, num_classes=None, device="cpu", progress=False, context=None):
    """Backtracking of misclassified test faces, the suppression test on similar pairs, a second run compared (paper 003)."""
    from fer_analysis.backtrack_suppression import run_backtrack
    from fer_analysis.backtrack_compare import compare_backtracking
    from fer_analysis.run_labels import RunContext

    ctx = context or RunContext()
    names = ctx.names(num_classes) if num_classes else ctx.class_names
    metrics = run_backtrack(model, loader, out_dir, cases=spec.cases, class_names=names, target=ctx.target,
                            max_images=spec.max_images, device=device, progress=progress)
    if ctx.compare is not None:
        c = ctx.compare
        metrics.update(compare_backtracking(model, c.model, loader, out_dir, target_a=ctx.target,
                                            target_b=c.target, images=spec.compare_images, device=device,
                                            progress=progress, loader_b=c.loader, exclude=c.exclude,
                                            overlap=c.overlap))
    return metrics
