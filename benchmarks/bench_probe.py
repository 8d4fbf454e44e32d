"""How the probe job grows with the probe-set size: 2,000 vs 10,000 samples, 5 layers, CPU.

One run measures both sizes side by side with the same model and code path as a real job
(``orchestrator.probe.probe_one``, in-process, nothing logged): the paper-004 CNN
(untrained, 48 px), layers batchnorm_1, dropout_2, flatten, dropout_4 and the logits;
probes silhouette (10 PCs), valence-arousal and maps (PCA + UMAP). The images are
identity templates plus noise (generating 10,000 synthetic faces would time the renderer,
not the probe). Stage times and the 10k/2k ratio are printed.

UMAP dominates; the maps probe embeds at most ``umap_max_samples`` rows (2,000 by
default) with a fixed ``n_epochs`` (200), so its cost stays flat beyond 2,000 samples.
``--umap-max-samples 0`` embeds every row instead, to see the cost that cap avoids.
Silhouette is O(N^2) and is estimated on a 5,000-row subset above that size.

    .venv/bin/python benchmarks/bench_probe.py [--sizes 2000 10000] [--umap-max-samples 0]

Measured 2026-11-21, --image-size 32, 1 thread, on a 2-core machine shared with six other
jobs (wall times are noisy; CPU time is the steadier figure), 2,000 -> 10,000 samples:
UMAP capped at 2,000 rows: total 63 s -> 255 s wall (4.0x), 45 s -> 132 s CPU (2.9x);
maps 34 s -> 64 s (1.9x); embeddings 28 s -> 172 s; silhouette 1.3 s -> 18.6 s.
UMAP on every row: maps 28 s -> 173 s (6.2x), total 47 s -> 318 s wall (6.8x).
"""

from __future__ import annotations

import argparse
import time

import torch


def probe_set(n: int, batch_size: int = 256, n_ids: int = 40, size: int = 48, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    templates = torch.randn(n_ids, 3, size, size, generator=g)
    for i in range(0, n, batch_size):
        b = min(batch_size, n - i)
        idx = torch.arange(i, i + b)
        ids = idx % n_ids
        val = torch.rand(b, generator=g) * 2 - 1
        x = templates[ids] + 0.5 * torch.randn(b, 3, size, size, generator=g) + val[:, None, None, None]
        yield {"image": x, "label": idx % 7, "identity": ids, "valence": val, "arousal": torch.rand(b, generator=g)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[2000, 10000])
    ap.add_argument("--umap-max-samples", type=int, default=2000, help="0 = no cap (UMAP on every row)")
    ap.add_argument("--umap-n-epochs", type=int, default=200)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--image-size", type=int, default=48, help="network input (paper 004: 48 px)")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: checks the script runs (the test suite runs it), measures nothing" " (UMAP off)")
    args = ap.parse_args()
    if args.smoke:
        args.sizes = [40]
    torch.set_num_threads(args.threads)

    from fer_models.config import DataConfig, TrainConfig
    from fer_models.methods import build_model
    from orchestrator.probe import ProbeSpec, probe_one

    cfg = TrainConfig(method="light-cnn", data=DataConfig(image_size=args.image_size))
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    layers = ("batchnorm_1", "dropout_2", "flatten", "dropout_4")  # + logits = 5 layers
    rows = {}
    for n in ([] if args.smoke else [100]) + list(args.sizes):  # the first (100) warms up imports and numba's JIT; not reported
        spec = ProbeSpec(layers=layers, n_samples=n, batch_size=256, umap=not args.smoke, device="cpu",
                         umap_max_samples=args.umap_max_samples or n, umap_n_epochs=args.umap_n_epochs)
        t0, c0 = time.perf_counter(), time.process_time()
        res = probe_one(
            "bench", spec, log=False,
            load_model=lambda *a, **k: (model, cfg),
            load_probe_set=lambda c, s, n=n: probe_set(n, size=args.image_size),
        )
        total = time.perf_counter() - t0
        if n == 100 and n not in args.sizes:
            continue
        # process CPU time too: wall time on a shared machine includes other people's load
        rows[n] = {**res["timings_s"], "total_s": total, "total_cpu_s": time.process_time() - c0}
        print(f"n={n}: " + ", ".join(f"{k} {v:.1f}s" for k, v in rows[n].items()), flush=True)

    keys = list(next(iter(rows.values())))
    sizes = list(rows)
    print(f"\nprobe job, 5 layers, {args.image_size} px, CPU ({args.threads} thread(s)), UMAP cap "
          f"{args.umap_max_samples or 'none'}, {args.umap_n_epochs} epochs")
    print(f"{'stage':<22}" + "".join(f"{f'n={n}':>12}" for n in sizes) + (f"{'ratio':>10}" if len(sizes) > 1 else ""))
    for k in keys:
        line = f"{k:<22}" + "".join(f"{rows[n][k]:>11.1f}s" for n in sizes)
        if len(sizes) > 1 and rows[sizes[0]][k] > 0:
            line += f"{rows[sizes[-1]][k] / rows[sizes[0]][k]:>9.2f}x"
        print(line)
    if len(sizes) > 1:
        print(f"(samples ratio {sizes[-1] / sizes[0]:.1f}x)")


if __name__ == "__main__":
    main()
