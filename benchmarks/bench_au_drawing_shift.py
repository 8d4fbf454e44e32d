"""CAM-COS shift between the two AU drawings, per method of paper 002's Table 1.

Each trained network's test CAMs (the true class's map, the released metric's processing:
min-max at the CAM's resolution, bilinear up-sampling, clamp to [0, 1]) are scored twice,
against the same AUs (codebook ``paper002-released``) drawn two ways from the same
landmarks: fer-orch's elliptic Gaussians (:func:`fer_models.data.au.render_au_maps`) and the
released code's filled ellipses (:func:`fer_models.data.au_released.released_au_maps`).
Same model, same faces, two references: the shift (ellipses minus Gaussians) is paired by
seed, and its 95% interval is the paired t interval over seeds
(:func:`fer_analysis.stats.paired_difference`); "n.s." where it contains 0.

Both references are drawn at 224 px, paper 002's input size, from the landmarks scaled to it:
the released drawing sizes several ellipses in pixels (20 px around the lip corners), so at
the CPU preset's 32 px input it would cover most of the face. The faces scored are the test
faces where both drawings are defined and the label is not neutral.

Runs: ``python benchmarks/bench_au_drawing_shift.py`` scores every FINISHED trial of a grid
on ``--dataset`` (default synthetic-rafdb) in ``--experiment`` of ``--tracking-uri`` (default:
FER_ORCH_HOME's); train them with ``fer-orch grid --datasets synthetic-rafdb --seeds 3
--no-ablations``. ``--smoke`` scores untrained CPU-preset networks of two methods at two
seeds on a few synthetic faces, in seconds (the pipeline, not a result).
"""

from __future__ import annotations

import argparse
import math
from collections import defaultdict
from typing import Any, Iterable

import numpy as np
import torch

REF_SIZE = 224
CODEBOOK = "paper002-released"


def references(landmarks: np.ndarray, labels: np.ndarray, in_size: int, size: int = REF_SIZE):
    """``(gaussians, ellipses, ok)``: the codebook's AUs of each label drawn both ways at
    ``size`` px from landmarks given in ``in_size`` px; ``ok`` where both are defined."""
    from fer_models.data.au import get_codebook, render_au_maps
    from fer_models.data.au_released import released_au_maps
    from fer_models.labels import NEUTRAL

    lm = np.asarray(landmarks, np.float64) * (size / in_size)
    cb = get_codebook(CODEBOOK)
    w = cb.weights(labels)
    ell, ok = released_au_maps(lm, [cb.aus(int(y)) for y in labels], (size, size), size)
    gau = render_au_maps(lm, w, (size, size), size)
    ok = ok & np.isfinite(lm).all(axis=(1, 2)) & (w > 0).any(1) & (np.asarray(labels) != NEUTRAL)
    return gau, ell, ok


def _maps(model, x, y):
    """The true class's map, min-max normalised (Grad-CAM and its kin need gradients)."""
    return model.class_maps(x, y).detach()


def score_model(model, batches: Iterable[dict], size: int = REF_SIZE) -> dict[str, float]:
    """Mean CAM-COS of one network against each drawing over the same faces."""
    from fer_models.losses import cosine
    from fer_models.metrics import released_cam

    if not getattr(model, "has_cam", True):
        return {"gaussians": math.nan, "ellipses": math.nan, "n": 0}
    model.eval()
    got: dict[str, list] = {"gaussians": [], "ellipses": []}
    for batch in batches:
        x, y = batch["image"], batch["label"].long()
        gau, ell, ok = references(batch["landmarks"].cpu().numpy(), y.cpu().numpy(), int(x.shape[-1]), size)
        if not ok.any():
            continue
        cam = released_cam(_maps(model, x, y), (size, size))
        keep = torch.from_numpy(ok)
        for name, ref in (("gaussians", gau), ("ellipses", ell)):
            got[name].append(cosine(cam[keep], torch.from_numpy(ref[ok])).cpu().numpy())
    n = int(sum(len(v) for v in got["gaussians"]))
    out: dict[str, float] = {k: float(np.concatenate(v).mean()) if v else math.nan for k, v in got.items()}
    out["n"] = n
    return out


def summarise(scores: dict[tuple[str, bool], dict[int, dict[str, float]]]) -> list[dict[str, Any]]:
    """Per (method, au): the mean CAM-COS under each drawing over seeds and the paired shift
    (ellipses - Gaussians) with its 95% t interval over seeds."""
    from fer_analysis.stats import paired_difference

    rows = []
    for (method, au), by_seed in sorted(scores.items()):
        seeds = sorted(by_seed)
        g = [by_seed[s]["gaussians"] for s in seeds]
        e = [by_seed[s]["ellipses"] for s in seeds]
        d = paired_difference(g, e)
        sig = d.n >= 2 and np.isfinite(d.low) and not (d.low <= 0.0 <= d.high)
        rows.append({"method": method, "au": au, "seeds": seeds, "faces": by_seed[seeds[0]]["n"],
                     "gaussians": float(np.nanmean(g)) if np.isfinite(g).any() else math.nan,
                     "ellipses": float(np.nanmean(e)) if np.isfinite(e).any() else math.nan,
                     "shift": d.mean, "low": d.low, "high": d.high, "significant": bool(sig)})
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    """The rows as a Markdown table."""
    out = ["| method | AU loss | seeds | faces | CAM-COS Gaussians | CAM-COS ellipses | shift [95% CI] |",
           "|---|---|---|---|---|---|---|"]
    for r in rows:
        if not np.isfinite(r["shift"]):
            shift = "no CAM"
        elif not np.isfinite(r["low"]):
            shift = f"{r['shift']:+.3f} (one seed: no interval)"
        else:
            shift = f"{r['shift']:+.3f} [{r['low']:+.3f}, {r['high']:+.3f}]" + ("" if r["significant"] else " n.s.")
        out.append(f"| {r['method']} | {'w/' if r['au'] else 'w/o'} | {','.join(map(str, r['seeds']))} | {r['faces']} "
                   f"| {r['gaussians']:.3f} | {r['ellipses']:.3f} | {shift} |")
    return "\n".join(out)


def grid_scores(dataset: str, experiment: str, uri: str | None, batch_size: int = 64):
    """Scores of every FINISHED trial on ``dataset`` in ``experiment`` (the latest per config)."""
    from fer_models.data.dataset import build_loaders
    from orchestrator.tracking.read import load_trained_model
    from orchestrator.tracking.store import client
    from orchestrator.tracking.trials import finished_trials

    exp = client(uri).get_experiment_by_name(experiment)
    if exp is None:
        raise SystemExit(f"no experiment '{experiment}'; run the grid first")
    scores: dict[tuple[str, bool], dict[int, dict[str, float]]] = defaultdict(dict)
    loaders: dict[str, Any] = {}
    for run in finished_trials(exp.experiment_id, uri).values():
        model, cfg = load_trained_model(run.info.run_id, uri, "cpu")
        if cfg.data.dataset != dataset:
            continue
        key = repr(cfg.data)
        if key not in loaders:
            loaders[key] = build_loaders(cfg.data, batch_size, 0, progress=False).test
        scores[(cfg.method, bool(cfg.au))][int(cfg.seed)] = score_model(model, loaders[key])
    return scores


def smoke_scores(methods=("cam", "gradcam"), seeds=(0, 1), n: int = 24):
    """Untrained CPU-preset networks on ``n`` synthetic faces: the pipeline in seconds."""
    from fer_models.data import synth
    from fer_models.methods import build_model
    from orchestrator.presets.cpu import cpu

    preset = cpu()
    size = preset.base.data.image_size
    b = synth.generate(n, size, 0, 8)
    batch = {"image": torch.from_numpy(b.images).permute(0, 3, 1, 2).float() / 255.0,
             "label": torch.from_numpy(b.labels), "landmarks": torch.from_numpy(b.landmarks)}
    scores: dict[tuple[str, bool], dict[int, dict[str, float]]] = defaultdict(dict)
    for method in methods:
        for seed in seeds:
            torch.manual_seed(seed)
            model = build_model(preset.train_config(method, "synthetic-rafdb", au=False, seed=seed))
            scores[(method, False)][seed] = score_model(model, [batch])
    return scores


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="synthetic-rafdb")
    ap.add_argument("--experiment", default="fer-orch")
    ap.add_argument("--tracking-uri", default=None)
    ap.add_argument("--smoke", action="store_true", help="untrained networks, a few faces, seconds")
    args = ap.parse_args(argv)
    scores = smoke_scores() if args.smoke else grid_scores(args.dataset, args.experiment, args.tracking_uri)
    rows = summarise(scores)
    print(table(rows))
    return rows


if __name__ == "__main__":
    main()
