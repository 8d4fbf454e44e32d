"""`fer-orch grid --plan`: each trial's GPU-hours and the grid's makespan, without running it.

Cost of a trial = epochs x training images x FLOPs of one training step per image. The FLOPs
are counted by ``torch.utils.flop_counter.FlopCounterMode`` on the meta device (no weights,
no memory): one forward of the trial's network (method, backbone, image size; pretrained
weights not loaded) on one image, then the backward of its summed logits. Losses, the AU map
and evaluation passes are not counted (a few percent of a step for these networks).

Speed: a measured FLOP rate, from ``benchmarks/bench_gpu_step.py --json`` rows
(``img_per_s`` x ``gflop_per_img``; a row naming the trial's method and backbone gives its own
``img_per_s``, else the median rate of the rows), or an assumed ``--img-per-s N``: the images/s
of the plain CAM network on the trial's backbone at 224 px, i.e. a FLOP rate every trial of that
backbone gets (ResNet-50-s8: 114 GFLOP per image, so 3,000 img/s = 343 TFLOP/s).

Schedule: Ray runs a trial as soon as its resources are free, in submission order; the plan
models that as list scheduling, longest trial first (LPT, Graham 1969: within 4/3 of the
optimum) on ``floor(G / f)`` slots for a GPU fraction ``f`` per trial (a slot of fraction f
runs at f of a GPU's rate). A trial of k data-parallel workers (``--workers-per-trial``)
holds k GPUs and runs at k x :data:`EFFICIENCY` of one GPU's rate (gradient all-reduce and
the per-epoch validation on rank 0 are the loss); its k GPUs start when the k earliest-free
GPUs are free. Twins (Grad-CAM++, LayerCAM) borrow Grad-CAM's training and cost
no GPU time; the λ and layer ablations are separate studies, planned when asked.
"""

from __future__ import annotations

import dataclasses
import heapq
import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from fer_models.errors import ConfigError

#: Training rows per dataset (the official splits; the grid trains on the train split less
#: its validation share, so these are upper bounds): RAF-DB basic 12,271; AffectNet 7 basic
#: expressions 283,901 (its manual train set less contempt and the non-faces).
TRAIN_ROWS = {"rafdb": 12271, "affectnet": 283901}


@dataclass
class TrialPlan:
    name: str
    gflop_per_img: float
    images: int  # epochs x training rows
    gpu_hours: float  # on one whole GPU
    borrowed: bool = False  # a twin: evaluates its publisher's network


def train_rows(cfg) -> int:
    ds = cfg.data.dataset.lower()
    if ds in TRAIN_ROWS:
        return TRAIN_ROWS[ds]
    if ds.startswith("synthetic"):
        return 1400  # the synthetic readers' default n_train
    raise ConfigError(f"the plan knows no training-set size for {cfg.data.dataset}: one of {', '.join(TRAIN_ROWS)}")


_FLOPS: dict[tuple, float] = {}


def gflop_per_img(cfg, image_size: int | None = None) -> float:
    """Forward + backward GFLOPs of one training image for ``cfg``'s network (module docstring);
    ``image_size`` feeds another input size to the same network (a CNN takes any)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from fer_models.methods import build_model

    size = int(image_size or cfg.data.image_size)
    key = (cfg.method.lower(), str(cfg.backbone), size, json.dumps(cfg.method_kwargs, sort_keys=True, default=str))
    if key not in _FLOPS:
        with torch.device("meta"):
            model = build_model(dataclasses.replace(cfg, pretrained=False))
        x = torch.zeros(1, 3, size, size, device="meta")
        with FlopCounterMode(display=False) as fc:
            model(x).logits.sum().backward()
        _FLOPS[key] = fc.get_total_flops() / 1e9
    return _FLOPS[key]


def gflop_rate(cfg, throughput: list[dict[str, Any]] | None, img_per_s: float | None) -> float:
    """GFLOP/s one GPU gives ``cfg``'s training (module docstring)."""
    if throughput:
        for row in throughput:
            if str(row.get("method", "")).lower() == cfg.method.lower() and str(row.get("backbone", "")) == str(cfg.backbone):
                return float(row["img_per_s"]) * gflop_per_img(cfg)
        return statistics.median(float(r["img_per_s"]) * float(r["gflop_per_img"]) for r in throughput)
    if not img_per_s:
        raise ConfigError("--plan needs a speed: --throughput FILE (bench_gpu_step.py --json) or --img-per-s N")
    return img_per_s * gflop_per_img(dataclasses.replace(cfg, method="cam", method_kwargs={}), image_size=224)


def read_throughput(path: str | Path) -> list[dict[str, Any]]:
    try:
        rows = json.loads(Path(path).read_text())["rows"]
        for r in rows:
            float(r["img_per_s"]), float(r["gflop_per_img"])
    except (OSError, ValueError, KeyError, TypeError):
        raise ConfigError(f"--throughput {path} is not a bench_gpu_step.py --json file "
                          '({"rows": [{"img_per_s": ..., "gflop_per_img": ...}, ...]})') from None
    return rows


def plan_trials(trials: Iterable, throughput=None, img_per_s: float | None = None) -> list[TrialPlan]:
    from orchestrator.tuning import split_twins

    trials = list(trials)
    _, twins = split_twins(trials)
    twin_hashes = {t.hash for t in twins}
    out = []
    for t in trials:
        c = t.cfg
        g = gflop_per_img(c)
        images = int(c.epochs) * train_rows(c)
        hours = 0.0 if t.hash in twin_hashes else images * g / gflop_rate(c, throughput, img_per_s) / 3600
        out.append(TrialPlan(t.name, g, images, hours, borrowed=t.hash in twin_hashes))
    return out


def makespan(durations: list[float], gpus: int, gpus_per_job: list[int] | None = None) -> float:
    """List scheduling, longest first: each job starts when its ``gpus_per_job`` GPUs (1 by
    default) are the earliest free ones; the finish time of the last job."""
    need = gpus_per_job or [1] * len(durations)
    if any(k > gpus for k in need):
        raise ConfigError(f"a job needs more than the {gpus} GPUs planned")
    free = [0.0] * gpus
    heapq.heapify(free)
    end = 0.0
    for d, k in sorted(zip(durations, need), key=lambda x: -x[0]):
        taken = [heapq.heappop(free) for _ in range(k)]
        finish = max(taken) + d
        for _ in range(k):
            heapq.heappush(free, finish)
        end = max(end, finish)
    return end


def slots(gpus: int, fraction: float) -> int:
    """Trials at once on ``gpus`` GPUs when each asks for ``fraction`` of one."""
    return gpus * max(1, math.floor(1 / fraction + 1e-9)) if fraction < 1 else gpus // math.ceil(fraction)


#: Data-parallel scaling: a trial on k GPUs takes its one-GPU time / (k x EFFICIENCY) (k > 1).
EFFICIENCY = 0.9


def parallel_durations(hours: list[float], workers: list[int],
                       efficiency: float = EFFICIENCY) -> tuple[list[float], list[int]]:
    """Each trial's time on its ``workers`` GPUs (:data:`EFFICIENCY`), and the GPUs it holds."""
    return [h / (k * efficiency) if k > 1 else h for h, k in zip(hours, workers)], list(workers)


def multi_gpu(durations: list[float], gpus: int, efficiency: float = EFFICIENCY) -> tuple[list[float], list[int]]:
    """A what-if for data-parallel trials: each trial longer than the ideal makespan (total /
    ``gpus``) gets ``k = ceil(d / ideal)`` GPUs (at most ``gpus``) and takes ``d / (k x
    efficiency)``; the others keep one GPU."""
    ideal = sum(durations) / gpus if durations else 0.0
    ks = [min(gpus, max(1, math.ceil(d / ideal))) if ideal and d > ideal else 1 for d in durations]
    return [d / (k * efficiency) if k > 1 else d for d, k in zip(durations, ks)], ks
