"""Faithfulness of a trial's maps: deletion and insertion AUC (Petsiuk et al., BMVC 2018, "RISE").

Cosine with an AU map (CAM-COS, ATT-COS; paper 002) says whether a map looks right, i.e. its
*plausibility*; it does not say whether the pixels the map ranks first are the ones the
network's decision rests on. Deletion and insertion ask that:

- **deletion**: remove the input's pixels in the map's order, most relevant first, in
  ``steps`` equal parts, and record the true class's softmax probability after each part; the
  area under that curve (x from 0 to 1, the unperturbed image at 0) is low when the map found
  what the decision needs. A removed pixel takes the value 0 of the network's input (after
  normalisation: the dataset's mean colour under ImageNet normalisation).
- **insertion**: start from a blurred copy of the image (Gaussian, sigma = side / 16) and put
  the original pixels back in the same order; the area is high when the first pixels revealed
  already restore the decision.

Both are measured for the CAM of the true class (``FERModel.class_maps``; NaN for a method
without a class map, APViT) and for the layer-5 attention (Eq. 1 of paper 002, the channel
mean), each up-sampled bilinearly to the input size, on a fixed subset of ``n`` test images
drawn with the seed :data:`SUBSET_SEED` (the same images for every trial of a dataset, so
trials pair up). ``fer_models.train.train`` adds ``deletion_cam``, ``insertion_cam``,
``deletion_att``, ``insertion_att`` (means over the subset) to its test metrics.

Library: Quantus (Hedström et al., JMLR 2023), ``quantus.PixelFlipping``, the pixel-flipping
experiment behind deletion curves (Bach et al., 2015), with its perturbation function as the
extension point. Why Quantus: pytorch-grad-cam's metrics (ROAD, confidence change) score one
perturbation, not a curve, and captum offers infidelity/sensitivity only. One call scores all
four curves: the batch holds the subset four times (deletion and insertion x CAM and
attention), and the perturbation function copies each row's pixels from a per-row source (the
baseline for deletion rows, the original image for insertion rows, whose input starts
blurred). Quantus returns the curve after each step; the start point (one more forward pass)
and the trapezoid AUC over [0, 1] are ours, so the score does not depend on ``steps``.

Quantus' constraints shape ``steps``: its step (``features_in_step``) must divide the pixel
count H*W while the perturbation runs over the C*H*W values (the map is broadcast over the
channels), so the count of steps is a multiple of C (3 for colour); ``steps`` is the least
count, raised to the next one that fits (:func:`step_size`), and at most one pixel per image
per step is removed in some channels only. Cost on the CPU preset (resnet-tiny at 32 px, one
thread, a loaded 2-core machine): n=16 and 6 steps run 6 forward passes of 64 images plus the
maps, about 0.3 s of CPU per trial; importing Quantus (which imports scikit-learn) costs about
2.5 s of CPU once per worker process.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from fer_models.errors import ConfigError

#: the seed of the test subset: fixed, so that every trial of a dataset is scored on the same faces
SUBSET_SEED = 0
KEYS = ("deletion_cam", "insertion_cam", "deletion_att", "insertion_att")


def subset_indices(n_rows: int, n: int, seed: int = SUBSET_SEED) -> np.ndarray:
    """``min(n, n_rows)`` sorted row indices of a split, drawn without replacement by ``seed``."""
    k = min(int(n), int(n_rows))
    return np.sort(np.random.default_rng(seed).choice(n_rows, size=k, replace=False)) if k > 0 else np.zeros(0, int)


def blurred(x: torch.Tensor) -> torch.Tensor:
    """The insertion curve's start: ``x`` (B, C, H, W) blurred with a Gaussian of sigma side / 16."""
    from kornia.filters import gaussian_blur2d

    sigma = max(1.0, x.shape[-1] / 16.0)
    k = 2 * int(math.ceil(2 * sigma)) + 1
    return gaussian_blur2d(x, (k, k), (sigma, sigma), border_type="reflect")


def _copy_from_source(arr: np.ndarray, indices: np.ndarray, source: np.ndarray, **_: Any) -> np.ndarray:
    """Quantus perturbation function: ``arr[i, indices[i]] = source[i, indices[i]]`` per row."""
    out = arr.copy()
    rows = np.arange(arr.shape[0])[:, None]
    out[rows, indices] = source[rows, indices]
    return out


def step_size(steps: int, x: torch.Tensor) -> int:
    """Quantus' ``features_in_step`` for at least ``steps`` equal steps over ``x`` (B, C, H, W):
    the smallest count >= ``steps`` whose step divides both C*H*W and the pixel count H*W
    (6 on a colour 32-px input; a grey one, 1024 values, takes 8). ``steps`` is a floor, not
    an exact count, so that one config serves colour and grey inputs (paper 001's grey CK+)."""
    c, h, w = x.shape[1:]
    total = c * h * w
    if steps < 1:
        raise ConfigError(f"faithfulness_steps must be at least 1, got {steps}")
    n = next(k for k in range(int(steps), total + 1) if total % k == 0 and (h * w) % (total // k) == 0)
    return total // n


def curve_auc(start: np.ndarray, curve: np.ndarray) -> np.ndarray:
    """Trapezoid area under ``[start, curve...]`` over x in [0, 1], per row: (B,), (B, T) -> (B,)."""
    full = np.concatenate([np.asarray(start, float)[:, None], np.asarray(curve, float)], 1)
    return np.trapezoid(full, dx=1.0 / (full.shape[1] - 1), axis=1) if hasattr(np, "trapezoid") else \
        np.trapz(full, dx=1.0 / (full.shape[1] - 1), axis=1)


def _probability(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    from fer_models.torch_utils import LogitsOnly

    with torch.no_grad():
        p = torch.softmax(LogitsOnly(model)(x).float(), 1)
    return p[torch.arange(len(y), device=p.device), y].cpu().numpy()


def deletion_insertion(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
                       maps: dict[str, torch.Tensor], steps: int = 6) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per map name: (deletion AUC (B,), insertion AUC (B,)) of ``model`` on ``x`` (B, C, H, W)
    for the true classes ``y``, ranking pixels by ``maps[name]`` ((B, h, w), any scale, resized
    bilinearly to H x W). One Quantus call for every map and both curves."""
    import quantus

    from fer_models.torch_utils import LogitsOnly

    if not maps:
        return {}
    b, c, h, w = x.shape
    step = step_size(steps, x)
    names = list(maps)
    attrs = [F.interpolate(maps[k].float().reshape(b, 1, *maps[k].shape[-2:]), size=(h, w), mode="bilinear",
                           align_corners=False) for k in names]
    start_ins = blurred(x)
    base = torch.zeros_like(x)
    xs = torch.cat([x] * len(names) + [start_ins] * len(names))  # deletion rows, then insertion rows
    src = torch.cat([base] * len(names) + [x] * len(names))
    a = torch.cat(attrs * 2).expand(-1, c, -1, -1)
    ys = y.repeat(2 * len(names))
    net = LogitsOnly(model).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        metric = quantus.PixelFlipping(
            features_in_step=step, perturb_func=_copy_from_source,
            perturb_func_kwargs={"source": src.detach().cpu().numpy().reshape(len(xs), -1)},
            normalise=False, abs=False, disable_warnings=True, display_progressbar=False)
        curves = np.asarray(metric(model=net, x_batch=xs.detach().cpu().numpy(), y_batch=ys.cpu().numpy(),
                                   a_batch=np.ascontiguousarray(a.detach().cpu().numpy()), device=str(x.device),
                                   softmax=True, batch_size=len(xs)), float)
    p_orig = _probability(model, x, y)
    p_blur = _probability(model, start_ins, y)
    out = {}
    k = len(names)
    for i, name in enumerate(names):
        dele = curve_auc(p_orig, curves[i * b:(i + 1) * b])
        ins = curve_auc(p_blur, curves[(k + i) * b:(k + i + 1) * b])
        out[name] = (dele, ins)
    return out


def trial_maps(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, layer: int = 5) -> dict[str, torch.Tensor]:
    """The maps a trial is scored on: ``cam`` (the true class's, when the method has one) and
    ``att`` (the attention of ``layer``)."""
    from fer_models.losses import attention

    model.eval()
    maps = {}
    if getattr(model, "has_cam", True):
        maps["cam"] = model.class_maps(x, y).detach()
    with torch.no_grad():
        out = model(x)
    maps["att"] = attention(out.features[layer]).detach()
    return maps


def faithfulness_scores(model: torch.nn.Module, dataset: Any, *, n: int = 16, steps: int = 6,
                        layer: int = 5, device: torch.device | str = "cpu",
                        seed: int = SUBSET_SEED, target: str = "expression") -> dict[str, float]:
    """Mean deletion / insertion AUC of the CAM and the attention over ``n`` test rows of
    ``dataset`` (a ``FaceDataset``, evaluation transform); the true class is the expression,
    or the subject for ``target="identity"``.

    ``n = 0`` turns it off (an empty dict). Keys: :data:`KEYS` (NaN for a map the method does
    not have). Its cost is measured by ``benchmarks/bench_faithfulness.py``, not logged (the
    test metrics of two equal runs stay equal).
    """
    if n <= 0 or len(dataset) == 0:
        return {}
    device = torch.device(device)
    idx = subset_indices(len(dataset), n, seed)
    batch = dataset[idx.tolist()]  # the evaluation transform, on the CPU (n is small)
    if target != "expression":  # the class the network predicts is the subject (TrainConfig.target)
        from fer_models.data.targets import relabel

        batch = relabel(batch)
    x, y = batch["image"].to(device), batch["label"].long().to(device)
    was_training = model.training
    try:
        scores = deletion_insertion(model, x, y, trial_maps(model, x, y, layer), steps)
    finally:
        model.train(was_training)
    out = {k: float("nan") for k in KEYS}
    for name, (dele, ins) in scores.items():
        out[f"deletion_{name}"], out[f"insertion_{name}"] = float(dele.mean()), float(ins.mean())
    return out
