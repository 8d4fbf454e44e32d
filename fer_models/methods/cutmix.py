"""CutMix (Yun et al., ICCV 2019) on a CAM classifier, with the AU maps cut and mixed by the same box.

Per training batch (with probability ``prob``, default 1 as in the WSOL evaluation of
CutMix): lam ~ Beta(beta, beta) with beta = 1; a box of area (1 - lam) of the image, at a
uniform centre, is pasted from a shuffled copy of the batch. The box is drawn in
normalised coordinates and snapped to the AU map's (coarser) grid, so ``image``, ``au_map``
and ``gt_au_map`` are cut at exactly the same place when the image size is a multiple of
the map size (within a pixel otherwise); lam is then recomputed from the pixel box. Labels
are mixed in the loss (lam*CE(y_a) + (1-lam)*CE(y_b)). A mixed AU map is defined only
when both source maps are (``au_valid`` of both), since a map missing for lack of
landmarks is zeros, not "no AU".
"""

from __future__ import annotations

import math

import torch

from fer_models.backbones import Backbone
from fer_models.methods.cam import CAMHead
from fer_models.registry import METHODS


def rand_box(lam: float) -> tuple[float, float, float, float]:
    """Normalised box (y0, y1, x0, x1) of area about 1 - lam, centre uniform, clipped to the image."""
    cut = math.sqrt(1.0 - lam)
    cy, cx = float(torch.rand(())), float(torch.rand(()))
    return (max(cy - cut / 2, 0.0), min(cy + cut / 2, 1.0), max(cx - cut / 2, 0.0), min(cx + cut / 2, 1.0))


def _paste(t: torch.Tensor, perm: torch.Tensor, box) -> tuple[torch.Tensor, float]:
    h, w = t.shape[-2:]
    y0, y1 = round(box[0] * h), round(box[1] * h)
    x0, x1 = round(box[2] * w), round(box[3] * w)
    out = t.clone()
    out[..., y0:y1, x0:x1] = t[perm][..., y0:y1, x0:x1]
    return out, (y1 - y0) * (x1 - x0) / float(h * w)


def cutmix_batch(batch: dict, beta: float = 1.0, prob: float = 1.0) -> dict:
    if beta <= 0 or float(torch.rand(())) >= prob:
        return batch
    lam = float(torch.distributions.Beta(beta, beta).sample())
    b = batch["image"].shape[0]
    perm = torch.randperm(b, device=batch["image"].device)
    box = rand_box(lam)
    if torch.is_tensor(batch.get("au_map")):  # snap to the coarser map grid: same box at both sizes
        m = batch["au_map"].shape[-1]
        box = tuple(round(v * m) / m for v in box)
    out = dict(batch)
    out["image"], area = _paste(batch["image"], perm, box)
    for key in ("au_map", "gt_au_map"):
        if key in batch and torch.is_tensor(batch[key]):
            out[key], _ = _paste(batch[key], perm, box)
    for key in ("au_valid", "gt_valid"):
        if key in batch and torch.is_tensor(batch[key]):
            out[key] = batch[key] & batch[key][perm]
    out["label_b"] = batch["label"][perm]
    out["mix_lam"] = 1.0 - area
    out["mix_box"] = box
    out["mix_perm"] = perm
    return out


@METHODS.register("cutmix", backbone="cnn", family="CNN-based", table1=8)
class CutMix(CAMHead):
    """CutMix (Yun et al. 2019), beta 1, on a CAM classifier; AU maps mixed with the same box."""

    name = "cutmix"

    def __init__(self, backbone: Backbone, num_classes: int, image_size: int = 48, beta: float = 1.0, prob: float = 1.0):
        super().__init__(backbone, num_classes)
        self.beta, self.prob = beta, prob

    def transform_batch(self, batch: dict) -> dict:
        return cutmix_batch(batch, self.beta, self.prob) if self.training else batch
