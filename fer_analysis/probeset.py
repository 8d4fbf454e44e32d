"""Which samples a probe set holds (paper 004, Study 3: "970 snapshots from 12 identities").

A split in dataset order is grouped by subject (all of one subject's frames, then the next
subject's), so its first N rows are a handful of subjects, or one: the identity silhouette
of such a set measures nothing. :func:`per_identity_rows` draws the probe set across
identities instead:

- every identity gets the same share of ``n_samples`` (an identity with fewer rows gives
  all it has, and the rest is shared among the others: water-filling);
- within an identity the rows are evenly spaced in dataset order: on a video dataset
  (DISFA: one subject's frames in time order) every k-th frame of the subject, k = its frame
  count / its share, so the set spans each whole video instead of its first seconds;
- rows of unknown identity (-1) are used only when no identity is known at all; then the
  set is a seeded random sample of the rows (never the first N).

:class:`ConcatSplits` joins a cache's splits into one (``split="all"`` for datasets read for
analysis only, where no split matters); :func:`rows_loader` reads chosen rows in batches.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Subset


def allocate(counts: Sequence[int], n: int) -> np.ndarray:
    """Rows to take from each group of ``counts`` rows, ``n`` in all (or every row when the
    groups hold fewer): equal shares, a small group giving all it has (water-filling)."""
    counts = np.asarray(counts, dtype=np.int64)
    alloc = np.zeros_like(counts)
    remaining = int(min(n, counts.sum()))
    order = np.argsort(counts, kind="stable")
    for pos, i in enumerate(order):
        share = remaining // (len(order) - pos)
        alloc[i] = min(counts[i], share)
        remaining -= alloc[i]
    for i in order[::-1]:  # the integer-division leftover: one more row to the largest groups
        if remaining == 0:
            break
        if alloc[i] < counts[i]:
            alloc[i] += 1
            remaining -= 1
    return alloc


def evenly_spaced(rows: np.ndarray, k: int) -> np.ndarray:
    """``k`` of ``rows`` (in their order), evenly spaced from the first: every (len/k)-th."""
    if k >= len(rows):
        return rows
    return rows[(np.arange(k) * len(rows)) // k]


def per_identity_rows(identity: np.ndarray, n_samples: int | None, seed: int = 0) -> np.ndarray:
    """Sorted row indices of a probe set of ``n_samples`` rows drawn across identities (see
    the module docstring); every row when ``n_samples`` is None or not smaller."""
    identity = np.asarray(identity).reshape(-1)
    n = len(identity)
    if n_samples is None or n_samples >= n:
        return np.arange(n)
    known = identity >= 0
    if not known.any():
        rng = np.random.default_rng(seed)
        return np.sort(rng.choice(n, n_samples, replace=False))
    ids, inverse = np.unique(identity[known], return_inverse=True)
    rows_known = np.flatnonzero(known)
    groups = [rows_known[inverse == g] for g in range(len(ids))]
    alloc = allocate([len(g) for g in groups], n_samples)
    return np.sort(np.concatenate([evenly_spaced(g, int(k)) for g, k in zip(groups, alloc)]))


def describe(identity: np.ndarray, rows: np.ndarray, names: Sequence[str] | None = None) -> dict[str, Any]:
    """What the probe set holds: identities, rows per identity (min / max), and the count of
    each identity (``per_identity``, by its name in ``names`` where given), and the rows of
    unknown identity."""
    ids = np.asarray(identity)[rows]
    unknown = int((ids < 0).sum())
    ids = ids[ids >= 0]
    keys, per = np.unique(ids, return_counts=True) if len(ids) else (np.zeros(0, int), np.zeros(0, int))
    label = (lambda k: str(names[k])) if names is not None else str
    return {"rows": int(len(rows)), "identities": int(len(per)),
            "rows_per_identity_min": int(per.min()) if len(per) else 0,
            "rows_per_identity_max": int(per.max()) if len(per) else 0,
            "unknown_identity_rows": unknown,
            "per_identity": {label(int(k)): int(c) for k, c in zip(keys, per)}}


class ConcatSplits:
    """Several FaceDataset splits read as one (``split="all"``): ``ds[list]`` gathers the rows
    from each part and concatenates the batch dicts; ``identity`` is the parts' column joined."""

    def __init__(self, parts: Sequence[Any]):
        self.parts = [p for p in parts if len(p)]
        self.offsets = np.cumsum([0] + [len(p) for p in self.parts])
        self.identity = torch.cat([torch.as_tensor(p.identity) for p in self.parts]) if self.parts else torch.zeros(0)
        self.info = getattr(self.parts[0], "info", None) if self.parts else None

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def get_batch(self, indices) -> dict[str, torch.Tensor]:
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        part = np.searchsorted(self.offsets, idx, side="right") - 1
        pieces, order = [], []
        for k in np.unique(part):
            sel = np.flatnonzero(part == k)
            b = self.parts[k].get_batch(idx[sel] - self.offsets[k])
            b["index"] = torch.as_tensor(idx[sel])
            pieces.append(b)
            order.append(sel)
        pos = np.argsort(np.concatenate(order), kind="stable")
        return {key: torch.cat([p[key] for p in pieces])[pos] for key in pieces[0]}

    def __getitem__(self, index):
        if isinstance(index, (int, np.integer)):
            return {k: v[0] for k, v in self.get_batch([int(index)]).items()}
        return self.get_batch(index)


def rows_loader(dataset: Any, rows: Sequence[int], batch_size: int) -> DataLoader:
    """A loader over ``rows`` of ``dataset`` in that order: batched gathers on a FaceDataset
    (or :class:`ConcatSplits`), the default collate on any other map-style dataset."""
    rows = [int(r) for r in rows]
    if hasattr(dataset, "get_batch"):
        return DataLoader(dataset, sampler=BatchSampler(rows, batch_size, False), batch_size=None)
    return DataLoader(Subset(dataset, rows), batch_size=batch_size, shuffle=False)


def thumbnails(x: torch.Tensor, size: int = 64) -> np.ndarray:
    """(B, C, H, W) network inputs (any normalisation) -> (B, h, w, C) uint8 pictures of the
    faces for figures (paper 004's face strips): each image min-max scaled to 0-255, as the
    explain figures show inputs, and average-pooled so that its longer side is at most ``size``
    (a thousand 224 px faces would otherwise hold 600 MB)."""
    a = x.detach().float().cpu()
    h, w = a.shape[-2:]
    if max(h, w) > size:
        scale = size / max(h, w)
        a = torch.nn.functional.adaptive_avg_pool2d(a, (max(1, round(h * scale)), max(1, round(w * scale))))
    lo = a.amin(dim=(1, 2, 3), keepdim=True)
    hi = a.amax(dim=(1, 2, 3), keepdim=True)
    a = (a - lo) / (hi - lo).clamp_min(1e-8)
    return (a * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
