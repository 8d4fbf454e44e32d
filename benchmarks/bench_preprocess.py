"""Preprocessing throughput: Ray Data with 1 vs 2 landmark workers (and the serial path).

One run, same synthetic manifest, fresh cache folders, printed side by side as ratios:

    .venv/bin/python benchmarks/bench_preprocess.py [--n-train 2400] [--landmarks synthetic]

Per pipeline: total time (manifest in -> cache on disk, including Ray starting the actor
pool), rows/s, time until the driver got its first batch (start-up), and the seconds spent
inside the two stages summed over workers (the work itself, without Ray's overhead).
The default backend is ``synthetic`` (ground-truth landmarks: the landmark stage is then
image decoding + resizing): dlib's HOG detector finds under 10 % of the synthetic faces, so
it would mostly measure failures; ``--landmarks dlib`` runs it anyway.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-train", type=int, default=2400)
    ap.add_argument("--n-test", type=int, default=600)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--map-size", type=int, default=32)
    ap.add_argument("--landmarks", default="synthetic")
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: checks the script runs (the test suite runs it), measures nothing (serial pipeline only, no Ray)")
    args = ap.parse_args()
    if args.smoke:
        args.n_train, args.n_test, args.image_size, args.map_size, args.cpus, args.batch_size = 16, 8, 32, 16, 1, 8

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    from fer_models.config import DataConfig
    from fer_models.data import cache
    from fer_models.data.readers import read_dataset
    from orchestrator.preprocess import preprocess
    from orchestrator.ray_utils import init_ray

    work = Path(tempfile.mkdtemp(prefix="bench_preprocess_"))
    os.environ["FER_ORCH_HOME"] = str(work / "home")
    try:
        t = time.perf_counter()
        m = read_dataset("synthetic-rafdb", work / "data", n_train=args.n_train, n_test=args.n_test,
                         image_size=args.image_size, n_identities=40, progress=True)
        print(f"synthetic manifest: {len(m.samples)} faces ({time.perf_counter() - t:.1f} s to generate)")
        cfg = DataConfig(dataset="synthetic-rafdb", landmarks=args.landmarks,
                         image_size=args.image_size, map_size=args.map_size)
        if not args.smoke:  # a Ray start is ~20 s here: the smoke run checks the serial pipeline
            init_ray(None, num_cpus=args.cpus)

        results = {}
        t = time.perf_counter()
        serial = cache.prepare(m, args.landmarks, cfg.codebook, cfg.map_size, cfg.image_size,
                               work / "serial", batch_size=args.batch_size, progress=False)
        results["serial"] = (serial, time.perf_counter() - t)
        for w in () if args.smoke else (1, 2):
            t = time.perf_counter()
            info = preprocess(cfg, num_workers=w, cache_root=work / f"ray{w}", manifest=m,
                              batch_size=args.batch_size, progress=False, echo=None)
            results[f"ray x{w}"] = (info, time.perf_counter() - t)

        n = len(m.samples)
        print(f"\n{n} rows, backend {args.landmarks}, {args.image_size} px images, "
              f"{args.map_size}² maps, {args.cpus} Ray CPUs, batch {args.batch_size}")
        print(f"{'pipeline':<9} {'total s':>8} {'rows/s':>8} {'1st batch s':>12} "
              f"{'landmark-stage s':>17} {'AU-stage s':>11}")
        rate = {}
        for name, (info, wall) in results.items():
            tm = info.meta["timings"]
            rate[name] = n / wall
            print(f"{name:<9} {wall:8.2f} {n / wall:8.1f} {tm['first_batch_s']:12.2f} "
                  f"{tm.get('landmarks_s', 0):17.2f} {tm.get('au_maps_s', 0):11.2f}")
        if args.smoke:
            return
        print(f"\nratio rows/s, 2 workers / 1 worker: {rate['ray x2'] / rate['ray x1']:.2f}x")
        print(f"ratio rows/s, ray x2 / serial:      {rate['ray x2'] / rate['serial']:.2f}x")
        print(f"failures (ray x2): {results['ray x2'][0].failures or 'none'}")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
