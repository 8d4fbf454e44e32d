"""Job ``filter-au``: which action unit each filter responds to, by the KL divergence of its
maximal activation with and without the AU, against a permutation null (paper 001 Sec. 4.4,
Table 4, Fig. 5); the science is in ``fer_analysis.filter_au``.

On a run trained with the AU alignment loss the answer is circular (its layers were told
where the AUs are); the job says so at the top of its table."""

from __future__ import annotations

from fer_analysis.jobs._base import register_job

AU_LOSS_NOTE = ("**Warning**: this run was trained with the AU alignment loss, which pulls its layers towards the "
                "AU maps; paper 001 asks whether a network learns AUs *without* being told, so these "
                "correspondences are partly put there by the loss.")


@register_job("filter-au", split="train", needs=("au-labels",), paper="001")
def filter_au(model, loader, out_dir, spec, *, num_classes=None, device="cpu", progress=False, context=None):
    """Filter <-> AU KL divergences with a permutation null (Table 4, Fig. 5) and the top-N patches of the same filters (paper 001)."""
    from fer_analysis.filter_au import run_filter_au

    metrics = run_filter_au(model, loader, out_dir, layer=spec.layer, k=spec.filters, n=spec.top_n,
                            threshold=spec.au_threshold, bins=spec.bins, min_count=spec.min_count,
                            permutations=spec.permutations, frames=spec.au_frames, within=spec.permute_within,
                            device=device, max_batches=spec.max_batches,
                            progress=progress)
    if context is not None and context.au_loss:
        for md in out_dir.glob("filter_au_*.md"):
            md.write_text(AU_LOSS_NOTE + "\n\n" + md.read_text())
    return metrics
