"""How much of a GPU each trial of the paper presets gets, from its computed peak memory.

:data:`PAPER_PEAK_GIB` is the peak GPU memory of each method's trial on RAF-DB (batch 32)
and AffectNet (batch 224) under the ``paper`` presets (bf16, resnet50-s8 / DeiT-S / IR-50 +
ViT-S), as :func:`fer_models.cost.step_cost` counts it on the meta device (activations saved
for the backward, weights, gradients, SGD momentum, 2 GiB of CUDA context and workspaces);
a test recomputes entries of it. A trial whose peak fits :data:`HALF_GPU_GIB` shares a GPU
with another (0.5); the others get a whole one. Regenerate with
``python -m orchestrator.gpu_memory``.
"""

from __future__ import annotations

#: the most a trial may need to share a GPU: half of a 40 GB A100, the smallest GPU the paper
#: presets are run on, less ~20 % for the estimate's error and the allocator's fragmentation
HALF_GPU_GIB = 16.0

#: (method, dataset) -> computed peak GiB of a paper-preset trial (module docstring)
PAPER_PEAK_GIB: dict[tuple[str, str], float] = {
    ('cam', 'rafdb'): 5.1,
    ('cam', 'affectnet'): 22.1,
    ('wildcat', 'rafdb'): 5.1,
    ('wildcat', 'affectnet'): 22.1,
    ('gradcam', 'rafdb'): 5.1,
    ('gradcam', 'affectnet'): 22.1,
    ('gradcampp', 'rafdb'): 5.1,
    ('gradcampp', 'affectnet'): 22.1,
    ('acol', 'rafdb'): 6.0,
    ('acol', 'affectnet'): 24.8,
    ('prm', 'rafdb'): 5.1,
    ('prm', 'affectnet'): 22.1,
    ('adl', 'rafdb'): 5.3,
    ('adl', 'affectnet'): 23.8,
    ('cutmix', 'rafdb'): 5.1,
    ('cutmix', 'affectnet'): 22.1,
    ('layercam', 'rafdb'): 5.1,
    ('layercam', 'affectnet'): 22.1,
    ('tscam', 'rafdb'): 3.9,
    ('tscam', 'affectnet'): 14.0,
    ('apvit', 'rafdb'): 6.0,
    ('apvit', 'affectnet'): 25.9,

}


def gpu_shares(peaks: dict[tuple[str, str], float], half: float = HALF_GPU_GIB) -> dict[str, float]:
    """``Resources.gpu_share``: ``"<method>/<dataset>"`` -> 0.5 when the peak fits ``half``, else 1."""
    return {f"{m}/{d}": (0.5 if gib <= half else 1.0) for (m, d), gib in peaks.items()}


def memory_table(grid_cfg) -> str:
    """The per-trial GPU memory and share of ``grid_cfg`` (``--print-config``), '' without GPUs."""
    r = grid_cfg.resources
    if not r.gpus:
        return ""
    lines = ["# GPU per trial (computed peak memory, bf16; fer_models.cost):",
             f"#   {'method':10s} {'dataset':10s} {'batch':>5s} {'peak GiB':>8s} {'GPUs':>5s}"]
    for m in grid_cfg.methods:
        for d in grid_cfg.datasets:
            batch = grid_cfg.train_config(m, d, au=False).batch_size
            gib = PAPER_PEAK_GIB.get((m, d))
            peak = f"{gib:8.1f}" if gib is not None else f"{'-':>8s}"
            lines.append(f"#   {m:10s} {d:10s} {batch:5d} {peak} {r.gpus_for(m, d):5g}")
    return "\n".join(lines)


def compute(preset: str = "paper") -> dict[tuple[str, str], float]:
    """:data:`PAPER_PEAK_GIB` computed again (a minute on a CPU: one meta-device step a method)."""
    from fer_models.cost import step_cost
    from orchestrator import presets

    g = presets.get(preset)
    return {(m, d): round(step_cost(g.train_config(m, d, au=True, lam=g.default_lam, layers=[5]))["peak_gib"], 1)
            for m in g.methods for d in g.datasets}


if __name__ == "__main__":
    for key, gib in compute().items():
        print(f"    {key!r}: {gib},")
