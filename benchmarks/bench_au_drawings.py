"""Mean cosine between fer-orch's Gaussian AU maps (codebook ``paper002``'s drawing) and the
released code's filled ellipses (``paper002-released``'s drawing) on the synthetic faces, for
the same AUs (the released codebook's) and landmarks, at the 28 px training map and at the
224 px evaluation reference. Run: ``python benchmarks/bench_au_drawings.py [N | --smoke]``."""

from __future__ import annotations

import sys

import numpy as np


def drawings_cosine(n: int = 300, size: int = 224, out: int = 28, seed: int = 0) -> dict[str, float]:
    from fer_models.data import synth
    from fer_models.data.au import get_codebook, render_au_maps
    from fer_models.data.au_released import released_au_maps
    from fer_models.labels import NEUTRAL

    b = synth.generate(n, size, seed, 40)
    keep = b.labels != NEUTRAL
    lm, labels = b.landmarks[keep], b.labels[keep]
    cb = get_codebook("paper002-released")
    res = {}
    for s in (out, size):
        ell, ok = released_au_maps(lm, [cb.aus(int(y)) for y in labels], (size, size), s)
        gau = render_au_maps(lm, cb.weights(labels), (size, size), s)
        a, g = ell[ok].reshape(ok.sum(), -1), gau[ok].reshape(ok.sum(), -1)
        cos = (a * g).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(g, axis=1) + 1e-12)
        res[f"{s}px_mean"], res[f"{s}px_min"], res[f"{s}px_max"] = float(cos.mean()), float(cos.min()), float(cos.max())
        res[f"{s}px_n"] = int(ok.sum())
    return res


if __name__ == "__main__":
    if sys.argv[1:] == ["--smoke"]:  # tiny sizes: checks the script runs (the test suite runs it)
        print(drawings_cosine(8, size=64, out=16))
    else:
        print(drawings_cosine(int(sys.argv[1]) if len(sys.argv) > 1 else 300))
