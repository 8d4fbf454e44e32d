"""Job ``topn``: the training images that excite each filter most and the input patterns
behind them (paper 001 Sec. 4.3, Figs. 3-4); the science is in ``fer_analysis.topn``."""

from __future__ import annotations

from fer_analysis.jobs._base import register_job


@register_job("topn", split="train", needs=("relu-modules",), paper="001")
def topn(model, loader, out_dir, spec, *, num_classes=None, device="cpu", progress=False):
    """Top-N training images per filter with their deconvnet / guided-backprop patterns (paper 001)."""
    from fer_analysis.topn import run_topn

    return run_topn(model, loader, out_dir, layer=spec.layer, n=spec.top_n, max_filters=spec.filters,
                    device=device, max_batches=spec.max_batches, progress=progress)
