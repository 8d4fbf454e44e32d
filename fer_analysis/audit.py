"""Auditing a trained network (``fer-orch audit``): paper 002's metrics with their uncertainty.

For a network on a dataset's test split (:func:`score_split`):

- **CL** (``fer_models.metrics.evaluate``) on the dataset's label order, with its 95% Wilson
  interval over the test faces (``fer_analysis.stats.binomial_ci``);
- **CAM-COS** of the true class's Grad-CAM-family map against the AU map, under both metric
  definitions (``project`` and ``released``, see ``fer_models.metrics``), and against the map
  of the labelled AUs where the dataset has them (``gt_cam_cos``: the synthetic faces); the
  per-sample values give a 95% Student t interval of the mean (:func:`per_sample_cam_cos`,
  whose means are ``evaluate``'s ``cam_cos`` under each definition: a test checks it, so the
  released definition's second ``evaluate`` pass is not run);
- **faithfulness**: deletion / insertion AUC of the same map (``fer_models.faithfulness``),
  per face, with a t interval;
- the per-class mean maps (CAM, attention of layer 5) and the per-class mean AU map beside them.

For a folder of photos (:func:`prepare_faces`, :func:`predict_faces`): each face is found and
cropped by a landmark backend as the data pipeline crops whole frames (a square of 1.25 x
the landmarks' extent, ``fer_models.data.cache.stages.face_box``), converted to the model's
channels and side; the prediction, its probability and the CAM-COS of the *predicted* class
(there is no true class) against that class's codebook AU map drawn from the face's landmarks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from fer_models.config import METRIC_DEF
from fer_models.labels import NEUTRAL, class_names
from fer_models.losses import cosine


@dataclass
class Interval:
    """A mean (or a CL in percent) with its 95% interval and the count it rests on."""

    mean: float
    low: float
    high: float
    n: int

    def format(self, digits: int = 2) -> str:
        if not math.isfinite(self.mean):
            return "–"
        if not math.isfinite(self.low):
            return f"{self.mean:.{digits}f} (n={self.n})"
        return f"{self.mean:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


def mean_ci(values: Sequence[float]) -> Interval:
    """Mean of the finite ``values`` with its 95% Student t interval (scipy, through
    ``fer_analysis.stats.paired_difference`` against zeros: the one-sample t interval)."""
    from fer_analysis.stats import paired_difference

    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    d = paired_difference(np.zeros_like(v), v)
    return Interval(d.mean, d.low, d.high, d.n)


def cl_ci(correct: int, total: int) -> Interval:
    """CL in percent with its 95% Wilson interval (``fer_analysis.stats.binomial_ci``)."""
    from fer_analysis.stats import binomial_ci

    lo, hi = binomial_ci(correct, total)
    return Interval(100.0 * correct / total if total else math.nan, lo, hi, int(total))


def per_sample_cam_cos(model, loader, *, codebook: str = "paper002", device: str = "cpu") -> dict[str, Any]:
    """Per test face, CAM-COS of the true class under both definitions (``cam_cos``: project,
    ``released_cam_cos``) and against the labelled AUs' map where the batch has one
    (``gt_cam_cos``, project definition), from one map per face; NaN where the map is undefined
    or the face is neutral (the faces ``evaluate`` skips). Also the labels and the per-class
    mean AU map (project)."""
    from fer_models.metrics import full_resolution_maps, released_cam, to_device, to_size

    model.eval()
    cols: dict[str, list] = {"cam_cos": [], "released_cam_cos": [], "label": []}  # + gt_cam_cos where labelled
    au_sum = au_cnt = None
    for batch in loader:
        batch = to_device(batch, device)
        x, y = batch["image"], batch["label"]
        cam = model.class_maps(x, y)
        a, valid = batch["au_map"][:, 0].float(), batch["au_valid"].bool()
        size = tuple(int(v) for v in x.shape[-2:])
        a_rel, valid_rel = full_resolution_maps(batch, codebook, size)
        for key, c, ok in (("cam_cos", cosine(to_size(cam, a.shape[-1]), a), valid),
                           ("released_cam_cos", cosine(released_cam(cam, size), a_rel), valid_rel)):
            c = c.detach().clone()
            c[~(ok & (batch.get("expression", y) != NEUTRAL))] = float("nan")
            cols[key].append(c.cpu().numpy())
        cols["label"].append(y.cpu().numpy())
        if "gt_au_map" in batch and "gt_valid" in batch:  # the labelled AUs' map (synthetic faces)
            g = to_size(batch["gt_au_map"][:, 0].float(), a.shape[-1])
            c = cosine(to_size(cam, a.shape[-1]), g).detach().clone()
            c[~(batch["gt_valid"].bool() & (batch.get("expression", y) != NEUTRAL))] = float("nan")
            cols.setdefault("gt_cam_cos", []).append(c.cpu().numpy())
        if au_sum is None:
            k = int(getattr(model, "num_classes", 7))
            au_sum, au_cnt = np.zeros((k, *a.shape[-2:])), np.zeros(k)
        np.add.at(au_sum, y.cpu().numpy(), (a * valid[:, None, None]).cpu().numpy())
        np.add.at(au_cnt, y.cpu().numpy(), valid.cpu().numpy())
    out: dict[str, Any] = {k: np.concatenate(v) for k, v in cols.items()}
    out["mean_au"] = au_sum / np.maximum(au_cnt, 1)[:, None, None]
    return out


def faithfulness_per_face(model, dataset, *, n: int = 32, steps: int = 6, device: str = "cpu") -> dict[str, np.ndarray]:
    """Deletion / insertion AUC per face of the true class's map (``cam``) and the layer-5
    attention (``att``) over the fixed subset of ``fer_models.faithfulness`` (``n`` faces)."""
    from fer_models.faithfulness import deletion_insertion, subset_indices, trial_maps

    if n <= 0 or len(dataset) == 0:
        return {}
    idx = subset_indices(len(dataset), n)
    batch = dataset[idx.tolist()]
    x, y = batch["image"].to(device), batch["label"].long().to(device)
    maps = trial_maps(model, x, y, 5)
    out = {}
    for name, (dele, ins) in deletion_insertion(model, x, y, maps, steps).items():
        out[f"deletion_{name}"], out[f"insertion_{name}"] = dele, ins
    return out


@dataclass
class SplitScores:
    """What :func:`score_split` measured: the metrics (MLflow), the intervals, the per-face values."""

    metrics: dict[str, float]
    intervals: dict[str, Interval]
    per_face: dict[str, np.ndarray]
    evaluation: Any  # the project definition's fer_models.metrics.EvalResult (matrices, mean maps)
    mean_maps: dict[str, np.ndarray] = field(default_factory=dict)


def score_split(model, loader, dataset, *, num_classes: int, codebook: str = "paper002", faith_n: int = 32,
                faith_steps: int = 6, device: str = "cpu") -> SplitScores:
    """Every number of an audit on one test split (see the module docstring)."""
    from fer_models.metrics import evaluate

    maps = bool(getattr(model, "has_cam", True)) and bool(getattr(model, "layer_names", {5: 1}))
    metrics: dict[str, float] = {}
    intervals: dict[str, Interval] = {}
    per_face: dict[str, np.ndarray] = {}
    ev = evaluate(model, loader, num_classes=num_classes, device=device, maps=maps, mean_maps=maps,
                  metric_def=METRIC_DEF, codebook=codebook)
    metrics.update(ev.metrics)
    conf = ev.confusion
    metrics["test_n"] = float(conf.sum())
    intervals["cl"] = cl_ci(int(np.trace(conf)), int(conf.sum()))
    mean_maps = dict(ev.mean_maps)
    if maps:
        ps = per_sample_cam_cos(model, loader, codebook=codebook, device=device)
        keys = [k for k in ("cam_cos", "released_cam_cos", "gt_cam_cos") if k in ps]
        per_face.update({k: ps[k] for k in ("label", *keys)})
        mean_maps["au"] = ps["mean_au"]
        for key in keys:
            intervals[key] = mean_ci(ps[key])
        metrics["released_cam_cos"] = intervals["released_cam_cos"].mean
        for k, v in faithfulness_per_face(model, dataset, n=faith_n, steps=faith_steps, device=device).items():
            per_face[k], metrics[k], intervals[k] = v, float(np.mean(v)), mean_ci(v)
    for k, iv in intervals.items():
        metrics[f"{k}_ci_low"], metrics[f"{k}_ci_high"] = iv.low, iv.high
    return SplitScores(metrics, intervals, per_face, ev, mean_maps)


# --------------------------------------------------------------------------------------
# a folder of photos
# --------------------------------------------------------------------------------------

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


@dataclass
class Face:
    """One photo's face as the model reads it: ``image`` (S, S, 3) uint8 crop, ``landmarks``
    (68, 2) in crop pixels, or ``image=None`` when no face was found."""

    path: Path
    image: np.ndarray | None
    landmarks: np.ndarray | None


def image_files(folder: str | Path) -> list[Path]:
    from fer_models.errors import ConfigError

    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"--images {folder} is not a folder")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ConfigError(f"--images {folder} holds no image ({', '.join(IMAGE_SUFFIXES)})")
    return files


def prepare_faces(files: Sequence[Path], size: int, backend: str = "dlib") -> list[Face]:
    """Detect each photo's landmarks with the ``backend`` (a LANDMARKS name) and crop its face
    as the data pipeline crops whole frames (``face_box``), resized to ``size``."""
    from fer_models.data.cache.stages import _crop_resize, _to_stored, face_box
    from fer_models.data.images import load_image
    from fer_models.data.manifest import Sample
    from fer_models.registry import LANDMARKS

    images = [load_image(p) for p in files]
    det = LANDMARKS.get(backend)(device="cpu")
    found = det.detect(images, [Sample(path=str(p), split="test", label=-1) for p in files])
    faces = []
    for p, img, lm in zip(files, images, found):
        if lm is None or not np.isfinite(lm).all():
            faces.append(Face(Path(p), None, None))
            continue
        crop, region = _crop_resize(img, face_box(lm), size, pad=True)
        faces.append(Face(Path(p), crop, _to_stored(np.asarray(lm, np.float32), region, size)))
    return faces


def to_input(crop: np.ndarray, channels: int) -> torch.Tensor:
    """(S, S, 3) uint8 -> (1, C, S, S) in [0, 1]; grey is ITU-R 601 luma, as the data pipeline's."""
    from fer_models.data.augment import LUMA

    x = torch.from_numpy(crop.astype(np.float32) / 255.0).permute(2, 0, 1)
    if channels == 1:
        x = (x * torch.tensor(LUMA).reshape(3, 1, 1)).sum(0, keepdim=True)
    return x.unsqueeze(0)


def predict_faces(model, faces: Sequence[Face], channels: int, *, codebook: str = "paper002",
                  map_size: int = 32) -> list[dict[str, Any]]:
    """Per face: predicted class, its probability, the predicted class's map and its AU map,
    and CAM-COS between them (NaN for neutral, which has no AU, and for a model without maps)."""
    from fer_models.data.au import expression_au_maps
    from fer_models.metrics import to_size

    names = class_names(model.num_classes)
    out = []
    for f in faces:
        if f.image is None:
            out.append({"file": f.path.name, "face": False})
            continue
        x = to_input(f.image, channels)
        with torch.no_grad():
            p = torch.softmax(model(x).logits.float(), 1)[0]
        k = int(p.argmax())
        row = {"file": f.path.name, "face": True, "pred": names[k], "prob": float(p[k]),
               "probs": {n: float(v) for n, v in zip(names, p.tolist())}, "cam": None, "au": None,
               "cam_cos": math.nan}
        if getattr(model, "has_cam", False):
            cam = model.class_maps(x, torch.tensor([k]))
            a, ok = expression_au_maps(f.landmarks[None], [k], codebook, f.image.shape[:2], map_size)
            row["cam"] = cam[0].numpy()
            if ok[0]:
                row["au"] = a[0]
                row["cam_cos"] = float(cosine(to_size(cam, map_size), torch.from_numpy(a))[0])
        out.append(row)
    return out


def save_overlays(faces: Sequence[Face], rows: Sequence[dict], out_dir: Path) -> list[Path]:
    """One PNG per face: the crop, its map of the predicted class, and that class's AU map."""
    from fer_models.data.overlay import overlay_grid

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for f, r in zip(faces, rows):
        if not r.get("face"):
            continue
        title = f"{r['pred']} {r['prob']:.2f}, COS {r['cam_cos']:.2f}"
        path = out_dir / f"{f.path.stem}_overlay.png"
        overlay_grid([f.image], {f"map ({r['pred']})": [r["cam"]], "AU map": [r["au"]]}, [title], path,
                     landmarks=[f.landmarks], ncols=1)
        paths.append(path)
    return paths
