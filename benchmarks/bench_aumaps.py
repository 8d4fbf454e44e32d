"""AU-map throughput: the vectorised renderer vs a naive per-image, per-AU loop.

Same inputs (synthetic faces, codebook weights of their expressions and ground-truth AU
intensities), one run, printed as maps/s and their ratio. Usage:

    python benchmarks/bench_aumaps.py [--n 256] [--map-size 32] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--map-size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: checks the script runs (the test suite runs it), measures nothing")
    args = ap.parse_args()
    if args.smoke:
        args.n, args.image_size, args.map_size, args.repeats = 8, 32, 16, 1

    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    from fer_models.data import au, synth

    faces = synth.generate(args.n, args.image_size, seed=0, n_identities=20)
    hw = (args.image_size, args.image_size)
    cases = {
        "codebook maps": au.get_codebook("paper002").weights(faces.labels),
        "true-AU maps": faces.aus,
    }
    print(f"{args.n} faces, {args.image_size} px images, {args.map_size}x{args.map_size} maps, "
          f"{len(au.AU_IDS)} AUs, best of {args.repeats}")
    print(f"{'case':<16}{'vectorised maps/s':>20}{'naive maps/s':>16}{'ratio':>10}")
    for name, w in cases.items():
        fast = au.render_au_maps(faces.landmarks, w, hw, args.map_size)
        slow = au.render_au_maps_naive(faces.landmarks, w, hw, args.map_size)
        assert np.allclose(fast, slow, atol=1e-5), "renderers disagree"
        tf = best_of(lambda: au.render_au_maps(faces.landmarks, w, hw, args.map_size), args.repeats)
        ts = best_of(lambda: au.render_au_maps_naive(faces.landmarks, w, hw, args.map_size), args.repeats)
        print(f"{name:<16}{args.n / tf:>20.0f}{args.n / ts:>16.0f}{ts / tf:>9.1f}x")


if __name__ == "__main__":
    main()
