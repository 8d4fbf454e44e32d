"""Job ``filter-au``: which action unit each filter responds to, by the KL divergence of its
maximal activation with and without the AU (paper 001 Sec. 4.4, Table 4, Fig. 5); the science is
in ``fer_analysis.filter_au``."""

from __future__ import annotations

from fer_analysis.jobs._base import register_job


@register_job("filter-au", split="train", needs=("au-labels",), paper="001")
def filter_au(model, loader, out_dir, spec, *, num_classes=None, device="cpu", progress=False):
    """Filter <-> AU KL divergences (Table 4, Fig. 5) and the top-N patches of the most selective filters (paper 001)."""
    from fer_analysis.filter_au import run_filter_au

    return run_filter_au(model, loader, out_dir, layer=spec.layer, k=spec.filters, n=spec.top_n,
                         threshold=spec.au_threshold, bins=spec.bins, device=device,
                         max_batches=spec.max_batches, progress=progress)
