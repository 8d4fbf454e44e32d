"""Geometric augmentation that moves the AU maps with the image (issue 3, paper 002).

Paper 002 aligns layer attention with an AU map drawn from the landmarks of the *un-augmented*
face; if a crop or flip moved only the image, the target would sit on the wrong pixels. Here
one affine transform per sample (random resized crop, horizontal flip, optional small
rotation) is expressed in normalised coordinates ([-1, 1], ``align_corners=False``) and
applied with ``F.affine_grid`` + ``F.grid_sample`` to the image and to every map, whatever
their resolution, so they stay aligned by construction.

Why not torchvision.transforms.v2: it can transform images and masks jointly, but draws
one set of parameters per call; we want per-sample parameters on a whole batch in one
vectorised call (the training loader augments batches, not items), which is three lines
of affine maths.

Defaults follow common FER practice: crop area ~ U(0.8, 1) of the image, aspect ratio
log-uniform in (3/4, 4/3), flip with p = 0.5, no rotation (``max_degrees`` enables it; the
rotation is exact for square inputs, which is all this project stores). The crop never
leaves the image, so no padding appears unless rotation is used (then zeros).
After a crop a map's peak may fall below 1; it is not re-normalised, as the alignment
loss (cosine) and CAM-COS are invariant to scale.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentParams:
    scale: tuple[float, float] = (0.8, 1.0)  # crop area as a fraction of the image
    ratio: tuple[float, float] = (3 / 4, 4 / 3)  # crop aspect ratio w/h
    flip_p: float = 0.5
    max_degrees: float = 0.0  # rotation ~ U(-d, d); 0 = off


def sample_affine(
    batch: int, generator: torch.Generator | None = None, params: AugmentParams = AugmentParams()
) -> torch.Tensor:
    """(B, 2, 3) affine matrices mapping output to input normalised coordinates."""

    def u(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(batch, generator=generator)

    area = u(*params.scale)
    log_r = u(math.log(params.ratio[0]), math.log(params.ratio[1]))
    r = torch.exp(log_r)
    sw = torch.sqrt(area * r).clamp(max=1.0)  # half-width of the crop in [-1, 1] units
    sh = torch.sqrt(area / r).clamp(max=1.0)
    cx = (1 - sw) * u(-1.0, 1.0)
    cy = (1 - sh) * u(-1.0, 1.0)
    flip = torch.where(torch.rand(batch, generator=generator) < params.flip_p, -1.0, 1.0)
    a = torch.deg2rad(u(-params.max_degrees, params.max_degrees))
    cos, sin = torch.cos(a), torch.sin(a)
    theta = torch.stack(
        [
            torch.stack([sw * flip * cos, -sh * sin, cx], dim=1),
            torch.stack([sw * flip * sin, sh * cos, cy], dim=1),
        ],
        dim=1,
    )
    return theta


def warp(x: torch.Tensor, theta: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """Resample (B, C, H, W) ``x`` through ``theta``; outside the input is zero."""
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode=mode, padding_mode="zeros", align_corners=False)


def augment_batch(
    image: torch.Tensor,
    maps: list[torch.Tensor] | tuple[torch.Tensor, ...] = (),
    generator: torch.Generator | None = None,
    params: AugmentParams = AugmentParams(),
    theta: torch.Tensor | None = None,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Apply the same per-sample transform to ``image`` (B,3,H,W) and each map (B,1,m,m).

    Maps are clamped back to [0, 1] (bilinear resampling keeps them there up to rounding).
    """
    theta = sample_affine(image.shape[0], generator, params) if theta is None else theta
    out_img = warp(image, theta)
    out_maps = [warp(m, theta).clamp_(0.0, 1.0) for m in maps]
    return out_img, out_maps
