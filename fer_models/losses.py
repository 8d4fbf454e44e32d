"""AU alignment loss of paper 002 (Eq. 1-3).

- Eq. 1: layer-wise attention T_l = mean over the n feature maps of layer l, (B, h, w).
- Eq. 2: R(T_l, A) = sum(T_l * A) / (||T_l||_2 ||A||_2), per sample, with the AU map A
  resized to T_l's size: adaptive average pooling when shrinking (each cell gets the mean
  of the AU-map pixels it covers, which keeps thin AU blobs instead of skipping them as
  strided or bilinear sampling may), bilinear interpolation when T_l is larger than A.
- Eq. 3: loss = CE + lambda * (1 - R). For several layers ("5+4+3") the per-layer terms are
  averaged (the paper "adds more layer-wise terms"; averaging keeps lambda's scale
  independent of the number of layers). Only samples whose map is defined (``au_valid``:
  not neutral, landmarks found) count; a batch without any gives exactly 0, not NaN.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F

EPS = 1e-8


def attention(features: torch.Tensor) -> torch.Tensor:
    """Eq. 1: (B, C, h, w) -> (B, h, w), the channel mean."""
    return features.mean(dim=1)


def resize_map(a: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, 1, M, M) or (B, M, M) -> (B, h, w): adaptive average pool down, bilinear up."""
    if a.ndim == 3:
        a = a.unsqueeze(1)
    a = a.float()
    if a.shape[-2] >= size[0] and a.shape[-1] >= size[1]:
        return F.adaptive_avg_pool2d(a, size)[:, 0]
    return F.interpolate(a, size=size, mode="bilinear", align_corners=False)[:, 0]


def cosine(t: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """Eq. 2 per sample: (B, h, w) x (B, h, w) -> (B,). Zero when either map is all zero."""
    t = t.flatten(1).float()
    a = a.flatten(1).float()
    return (t * a).sum(1) / (t.norm(dim=1) * a.norm(dim=1)).clamp_min(EPS)


def alignment_terms(features: dict[int, torch.Tensor], au_map: torch.Tensor, layers: Iterable[int]) -> torch.Tensor:
    """R(T_l, A) for each layer, (B, L)."""
    rs = []
    for l in layers:
        t = attention(features[l])
        rs.append(cosine(t, resize_map(au_map, tuple(t.shape[-2:]))))
    return torch.stack(rs, dim=1)


def au_alignment_loss(
    features: dict[int, torch.Tensor],
    au_map: torch.Tensor,
    au_valid: torch.Tensor,
    layers: Iterable[int] = (5,),
) -> torch.Tensor:
    """mean over layers and valid samples of (1 - R(T_l, A)); 0 when no sample is valid."""
    layers = tuple(layers)
    r = alignment_terms(features, au_map, layers)  # (B, L)
    valid = au_valid.to(r.device).bool()
    per_sample = torch.where(valid[:, None], 1.0 - r, torch.zeros_like(r)).mean(1)
    return per_sample.sum() / valid.sum().clamp_min(1)


def total_loss(ce: torch.Tensor, features, au_map, au_valid, layers=(5,), lam: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 3: (CE + lambda * alignment, alignment)."""
    al = au_alignment_loss(features, au_map, au_valid, layers)
    return ce + lam * al, al
