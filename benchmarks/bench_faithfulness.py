"""CPU cost of the faithfulness scores (fer_models.faithfulness) per trial on the cpu preset,
beside the test evaluation the trial already runs: same model, same test split, one run.

Target: at most ~0.3 s of CPU per cpu-preset trial. Both are timed with
``time.process_time`` (CPU seconds of this process, so other load on a shared machine
inflates them less than wall time), one torch thread as in a 1-CPU Ray trial, the best of
``--repeat`` runs each, interleaved. The one-off import of Quantus (scikit-learn comes with
it) is printed apart: it is paid once per worker process, not per trial.

    .venv/bin/python benchmarks/bench_faithfulness.py [--n 16] [--steps 6] [--repeat 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--n-test", type=int, default=350)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: checks the script runs (the test suite runs it), measures nothing")
    args = ap.parse_args()
    if args.smoke:
        args.n, args.steps, args.repeat, args.n_test = 2, 2, 1, 16
    torch.set_num_threads(1)

    from fer_models.data.cache import prepare
    from fer_models.data.dataset import FaceDataset, build_loaders
    from fer_models.data.readers import read_dataset
    from fer_models.methods import build_model
    from fer_models.metrics import evaluate
    from orchestrator import presets

    cfg = presets.get("cpu").train_config("cam", "synthetic-rafdb", au=True, seed=0)
    with tempfile.TemporaryDirectory() as d:
        m = read_dataset("synthetic-rafdb", Path(d) / "data", n_train=64 if not args.smoke else 16, n_test=args.n_test, progress=False)
        info = prepare(m, "auto", cfg.data.codebook, cfg.data.map_size, cfg.data.image_size, Path(d) / "cache",
                       progress=False)
        loaders = build_loaders(cfg.data, cfg.batch_size, cfg.seed, cache_dir=info.dir, progress=False)
        test = FaceDataset(info.dir, "test", cfg.data.image_size)
        model = build_model(cfg, num_classes=7).eval()

        c0 = time.process_time()
        import quantus  # noqa: F401

        from fer_models.faithfulness import faithfulness_scores
        imp = time.process_time() - c0
        ev, fa = [], []
        for _ in range(args.repeat):
            c0 = time.process_time()
            evaluate(model, loaders.test, num_classes=7, device="cpu", progress=False)
            ev.append(time.process_time() - c0)
            c0 = time.process_time()
            faithfulness_scores(model, test, n=args.n, steps=args.steps)
            fa.append(time.process_time() - c0)
    print(f"test evaluation ({len(test)} images): {min(ev):.3f} s CPU")
    print(f"faithfulness (n={args.n}, steps={args.steps}): {min(fa):.3f} s CPU "
          f"({min(fa) / min(ev):.2f}x the test evaluation; target <= ~0.3 s)")
    print(f"one-off import of quantus per worker process: {imp:.2f} s CPU")


if __name__ == "__main__":
    main()
