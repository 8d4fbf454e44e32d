"""Memory and time of the probe embeddings on a 96 px network: exact PCA (Gram) vs pooling.

Paper 001's zero-bias CNN at 96 px has ~2.3 M activation values per image over its tap
layers (conv1/relu1 alone 64 x 96 x 96); keeping them flattened for N = 1,000 images would
take ~9 GB. ``fer_analysis.embeddings`` keeps the big layers as their exact principal
components, accumulating the N x N Gram matrices with at most ``memory_mb`` of activations
held at once (one pass over the probe set per held group). This script runs, each in a fresh
process so that the peak resident memory is its own:

- ``pool``: the first version's rule (average pooling to <= 4,096 values), the cheapest;
- ``pca`` with ``--budgets`` (MB held, e.g. 256 and 1024);

on the untrained zero-bias CNN (3 x 96 x 96 inputs, N random images, all tap layers + logits)
and prints peak RSS, wall time and the ratios to ``pool``, beside the memory that keeping
every layer flattened would need.

    .venv/bin/python benchmarks/bench_probe_memory.py [--samples 400] [--budgets 256 1024] [--threads 2]

Measured (``--samples 300``, 2 threads, a 2-core machine shared with other jobs at load 8-17,
so the wall times are inflated): 2.29 M values per image over 13 layers, 2.6 GiB if every
layer were kept flattened (8.5 GiB at 1,000 images). Peak RSS: pool 1,911 MB, pca with
256 MB held 2,669 MB (x1.40), with 1,024 MB held 2,943 MB (x1.54); most of the common
1.9 GB is one 64-image forward pass at 96 px with every layer hooked. Wall time: pool
13 s, pca 161 s (256 MB: 12 passes) and 68 s (1,024 MB: 3 passes), x12.2 and x5.2.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time


def child(mode: str, budget: float, samples: int, size: int, threads: int) -> None:
    import resource

    import torch

    from fer_analysis.embeddings import collect_embeddings
    from fer_models.config import DataConfig, TrainConfig
    from fer_models.methods import build_model

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = build_model(TrainConfig(method="zerobias-cnn", data=DataConfig(image_size=size))).eval()
    g = torch.Generator().manual_seed(0)
    batches = [{"image": torch.randn(min(64, samples - i), 3, size, size, generator=g),
                "label": torch.zeros(min(64, samples - i), dtype=torch.long)} for i in range(0, samples, 64)]
    t = time.perf_counter()
    emb = collect_embeddings(model, batches, big=mode, memory_mb=budget)
    wall = time.perf_counter() - t
    values = sum(int(torch.tensor(s).prod()) for s in emb.shapes.values())
    print(json.dumps({"wall_s": wall, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "values_per_image": values, "layers": len(emb.layers),
                      "reduced": sorted(k for k, v in emb.reduced.items() if v != "raw")}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=400)
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--budgets", type=float, nargs="+", default=[256, 1024])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: checks the script runs (the test suite runs it), measures nothing")
    args = ap.parse_args()
    if args.smoke:
        args.samples, args.size, args.budgets, args.threads = 16, 32, [1.0], 1
    if args.child:
        child(args.child[0], float(args.child[1]), args.samples, args.size, args.threads)
        return
    runs = [("pool", 0.0)] + [("pca", b) for b in args.budgets]
    res = {}
    for mode, budget in runs:
        out = subprocess.run([sys.executable, __file__, "--child", mode, str(budget), "--samples", str(args.samples),
                              "--size", str(args.size), "--threads", str(args.threads)],
                             check=True, capture_output=True, text=True).stdout
        res[(mode, budget)] = json.loads(out.strip().splitlines()[-1])
    base = res[("pool", 0.0)]
    flat_gb = base["values_per_image"] * 4 * args.samples / 2**30
    print(f"zero-bias CNN, {args.size} px, {args.samples} images, {base['values_per_image'] / 1e6:.2f} M activation "
          f"values per image over {base['layers']} layers; every layer flattened would hold {flat_gb:.1f} GiB")
    print("| mode | held MB | peak RSS MB | x pool | wall s | x pool |")
    print("|---|---:|---:|---:|---:|---:|")
    for (mode, budget), r in res.items():
        print(f"| {mode} | {budget:g} | {r['peak_rss_mb']:.0f} | {r['peak_rss_mb'] / base['peak_rss_mb']:.2f} "
              f"| {r['wall_s']:.1f} | {r['wall_s'] / base['wall_s']:.2f} |")


if __name__ == "__main__":
    main()
