"""Why two methods can print the same test CL on synthetic-rafdb: train them as the CPU
preset's grid trials do and compare their test predictions face by face.

    PYTHONPATH=. python scripts/method_ties.py --methods adl,cutmix --seeds 0,1,2 --lam 5
    PYTHONPATH=. python scripts/method_ties.py --methods adl,cutmix --seeds 0 --lam 5 --perturb 1,-1,2,-2

Each training is ``fer_models.train`` on ``cpu().train_config(method, "synthetic-rafdb",
au=..., lam=..., layers=[5], seed=s)`` under ``torch.set_num_threads(1)`` (how a grid trial
runs, so the numbers are the grid's; ``--lam 0``: without the AU loss). Per seed and pair it
prints the correct counts out of the 350 test faces, how often the two predictions agree, the
split of the discordant faces (right for one only), the probability that a fair coin on each
of those faces gives a tie (:func:`fair_coin_tie`), and with ``--perturb k,...`` the counts
after the learning rate x (1 + k 1e-4) and the share of ties over all (method A, method B)
pairs of trainings (:func:`cross_tie_rate`). A CNN method takes ~6 s a training on one idle
core. The structural side (faces distinct, labels carried by the AUs) is
``tests/test_fer_models/data/test_synth_labels.py``.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import tempfile
from math import comb

import numpy as np


def fair_coin_tie(discordant: int) -> float:
    """P(#right-for-A-only == #right-for-B-only) if each discordant face is a fair coin."""
    return comb(discordant, discordant // 2) / 2**discordant if discordant % 2 == 0 else 0.0


def pair_stats(pred_a: np.ndarray, pred_b: np.ndarray, labels: np.ndarray) -> dict:
    """Counts, agreement and the discordant split of two networks' test predictions."""
    ra, rb = pred_a == labels, pred_b == labels
    only_a, only_b = int((ra & ~rb).sum()), int((rb & ~ra).sum())
    return {"correct_a": int(ra.sum()), "correct_b": int(rb.sum()), "agree": float((pred_a == pred_b).mean()),
            "only_a": only_a, "only_b": only_b, "p_tie_fair_coin": fair_coin_tie(only_a + only_b)}


def cross_tie_rate(counts_a: list[int], counts_b: list[int]) -> float:
    """Share of (a, b) pairs, one training of each method, whose counts are equal."""
    return float(np.mean([a == b for a, b in itertools.product(counts_a, counts_b)]))


def predictions(method: str, seed: int, lam: float, lr_factor: float = 1.0, epochs: int | None = None):
    """Train ``method`` as the CPU preset's grid trial; (test predictions, labels)."""
    import torch

    from fer_models.methods import build_model
    from fer_models.train import train
    from orchestrator.presets.cpu import cpu

    torch.set_num_threads(1)
    cfg = cpu().train_config(method, "synthetic-rafdb", au=lam > 0, lam=lam, layers=[5], seed=seed)
    cfg = dataclasses.replace(cfg, lr=cfg.lr * lr_factor, epochs=epochs or cfg.epochs)
    with tempfile.TemporaryDirectory() as run_dir:
        r = train(cfg, run_dir, resume=False, progress=False)
        model = build_model(cfg, r.num_classes)
        model.load_state_dict(torch.load(r.best_path, map_location="cpu"))
    from fer_models.data.dataset import build_loaders

    model.eval()
    test = build_loaders(cfg.data, cfg.batch_size, seed, progress=False).test
    with torch.no_grad():
        out = [(model(b["image"]).logits.argmax(1), b["label"]) for b in test]
    return torch.cat([p for p, _ in out]).numpy(), torch.cat([y for _, y in out]).numpy()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", default="adl,cutmix", help="two methods, comma-separated")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--lam", type=float, default=5.0, help="AU loss weight; 0: without the AU loss")
    ap.add_argument("--perturb", default="", help="k values: also train with lr x (1 + k 1e-4)")
    ap.add_argument("--epochs", type=int, default=None, help="override the preset's epochs (a smoke run)")
    args = ap.parse_args(argv)
    m_a, m_b = args.methods.split(",")
    for seed in (int(s) for s in args.seeds.split(",")):
        (pa, y), (pb, _) = (predictions(m, seed, args.lam, epochs=args.epochs) for m in (m_a, m_b))
        print(json.dumps({"seed": seed, "methods": [m_a, m_b], **pair_stats(pa, pb, y)}), flush=True)
        ks = [int(k) for k in args.perturb.split(",") if k]
        if ks:
            counts = {m: [int((predictions(m, seed, args.lam, 1 + k * 1e-4, args.epochs)[0] == y).sum()) for k in ks]
                      for m in (m_a, m_b)}
            print(json.dumps({"seed": seed, "k": ks, **counts,
                              "cross_tie_rate": cross_tie_rate(counts[m_a], counts[m_b])}), flush=True)


if __name__ == "__main__":
    main()
