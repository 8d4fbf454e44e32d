"""The pairs of paper 003's suppression test: every misclassified test image A with a
visually similar, correctly classified image B (Table 3, Figs. 9-11).

:func:`pair_cases` makes the pairs automatically where the paper picked them by eye: B is a
correctly classified image of the **same subject and the same expression** as A (the paper's
identity pair differs only in gaze; its expression pairs are "visually similar"), the nearest
to A in input pixels (L2) among those; without identities (-1) the same expression and the
nearest image. Where no image shares all the keys (the synthetic faces have one or two test
images per subject and expression) the nearest correctly classified image of A's class is
taken, same-subject-other-expression on an identity run, other-subject on an expression run.
The ``pair_basis`` column says which rule made each pair and ``backtrack_pairs_exact`` counts
the pairs on all keys; misclassified images without a partner are counted, not shown.

:func:`scan_split` is the one pass over the test split that pairing needs (class,
prediction, subject, expression and a small copy of every image); :func:`scan_images`
fetches the full-size images of the rows a later phase works on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from fer_analysis.hooks import LogitsOnly
from fer_analysis.run_labels import class_labels, expression_labels, subject_labels
from fer_analysis.topn import fetch_images, iter_batches
from fer_models.errors import DatasetError


@dataclass
class Pair:
    a: int  # position of the misclassified image in the scanned rows
    b: int  # its correctly classified partner
    basis: str  # "subject+expression", "expression" (identities unknown) or "class only" (fallback)
    distance: float  # L2 between the two (down-sampled) inputs


def pair_cases(images: torch.Tensor, labels: torch.Tensor, preds: torch.Tensor, subjects: torch.Tensor,
               expressions: torch.Tensor, *, fallback: bool = True) -> tuple[list[Pair], list[int]]:
    """Pair every misclassified row (``preds != labels``) with the nearest correctly classified
    row (L2 over ``images`` flattened) of the same class, the same subject and the same
    expression, each where known (>= 0). With ``fallback``, a row without such a partner takes
    the nearest correctly classified row of its class (basis ``"class only"``). Returns (pairs,
    misclassified rows without a partner). See the module docstring for why these keys."""
    labels, preds = labels.long(), preds.long()
    subjects, expressions = subjects.long(), expressions.long()
    known = labels >= 0  # an identity run's rows of unknown identity have no class
    wrong = torch.nonzero(known & (preds != labels)).flatten()
    right = torch.nonzero(known & (preds == labels)).flatten()
    if len(wrong) == 0:
        return [], []
    if len(right) == 0:
        return [], wrong.tolist()
    flat = images.reshape(len(images), -1).float()
    dist = torch.cdist(flat[wrong], flat[right])  # (W, R)
    same_class = labels[wrong][:, None] == labels[right][None, :]
    strict = same_class.clone()
    for key in (subjects, expressions):
        kw, kr = key[wrong][:, None], key[right][None, :]
        strict &= (kw < 0) | (kw == kr)
    inf = torch.full_like(dist, float("inf"))
    best_strict, j_strict = torch.where(strict, dist, inf).min(1)
    best_class, j_class = torch.where(same_class, dist, inf).min(1)
    pairs, lonely = [], []
    for i, w in enumerate(wrong.tolist()):
        if best_strict[i] < float("inf"):
            basis = "subject+expression" if subjects[w] >= 0 else "expression"
            pairs.append(Pair(w, int(right[j_strict[i]]), basis, float(best_strict[i])))
        elif fallback and best_class[i] < float("inf"):
            pairs.append(Pair(w, int(right[j_class[i]]), "class only", float(best_class[i])))
        else:
            lonely.append(w)
    return pairs, lonely



@dataclass
class Scan:
    """One pass over a split: per row the class, prediction, subject, expression, dataset index
    and a small copy of the image (for pairing), plus the images themselves when the loader
    offers no dataset to fetch them from again."""

    labels: torch.Tensor
    preds: torch.Tensor
    subjects: torch.Tensor
    expressions: torch.Tensor
    index: torch.Tensor
    small: torch.Tensor
    images: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.labels)


@torch.no_grad()
def scan_split(model: nn.Module, loader, *, target: str = "expression", max_images: int | None = None,
               device: str = "cpu", progress: bool = False, small_size: int = 32,
               keep_images: bool = False) -> Scan:
    """Predict every image of ``loader`` (up to ``max_images``) and keep what pairing needs."""
    fwd = LogitsOnly(model).eval()
    cols: dict[str, list[torch.Tensor]] = {k: [] for k in ("labels", "preds", "subjects", "expressions", "index",
                                                         "small", "images")}
    seen = 0
    for x, extras in tqdm(iter_batches(loader, device), desc="backtrack: predict", disable=not progress):
        take = x.shape[0] if max_images is None else min(x.shape[0], max_images - seen)
        if take <= 0:
            break
        x = x[:take]
        ex = {k: (v[:take] if torch.is_tensor(v) or isinstance(v, (list, tuple)) else v) for k, v in extras.items()}
        cols["labels"].append(class_labels(ex, target))
        cols["preds"].append(fwd(x).argmax(1).cpu())
        cols["subjects"].append(subject_labels(ex))
        cols["expressions"].append(expression_labels(ex, target))
        cols["index"].append(torch.as_tensor(ex["index"]).reshape(-1).cpu().long())
        s = min(small_size, x.shape[-1])
        cols["small"].append(F.adaptive_avg_pool2d(x.float(), s).cpu())
        if keep_images:
            cols["images"].append(x.cpu())
        seen += take
    if seen == 0:
        raise DatasetError("the test split is empty, so there is nothing to backtrack; check the run's dataset")
    cat = {k: torch.cat(v) if v else None for k, v in cols.items()}
    return Scan(cat["labels"], cat["preds"], cat["subjects"], cat["expressions"], cat["index"], cat["small"],
                cat["images"])


def scan_images(loader, scan: Scan, rows: Sequence[int], device: str = "cpu") -> torch.Tensor:
    """The full-size images of the scanned ``rows`` (from the loader's dataset, or kept)."""
    if scan.images is not None:
        return scan.images[list(rows)].to(device)
    return fetch_images(loader.dataset, scan.index[list(rows)].tolist()).to(device).float()
