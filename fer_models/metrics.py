"""Evaluation metrics of paper 002 (Sec. 4.1) and the figures built from them.

- ``cl``: classification accuracy in percent (as paper 002's tables print it).
- ``cam_cos``: cosine (Eq. 2) between the CAM of the *true* class (``FERModel.class_maps``,
  min-max normalised) and the AU map A of the sample, over the samples whose map is
  defined and whose label is not neutral (neutral has no AU); NaN for a method without a
  CAM (APViT, ``FERModel.has_cam``).
- ``att_cos``: the same for the attention T_l (Eq. 1) of ``att_layer``; the trainer passes
  the top aligned layer, ``max(cfg.layers)`` (5 by default: paper 002's Table 2 reports
  layer 5), with or without AU so both runs are measured alike. ``att_cos_1..5``: every layer.
- ``cam_cos_avg`` / ``att_cos_avg``: the mean of the per-class means, the "Average" row of
  paper 002's per-class cosine matrix, which is what its Tables 1-2 print; ``cam_cos`` /
  ``att_cos`` are the per-sample means. Both exist for both definitions below.
- On synthetic data ``gt_cam_cos`` / ``gt_att_cos`` compare with the map of the AUs truly
  active in the image (``gt_au_map``, where ``gt_valid``).
- ``confusion`` (K x K, rows true, columns predicted); ``cosine_matrix`` (K x 6: rows classes,
  columns layers 1..5 + CAM, NaN where a class has no valid sample, e.g. neutral);
  ``mean_maps``: per-class mean CAM and attention at the reference map's size, Figs. 6-9.

Two definitions (``metric_def``, ``TrainConfig.metric_def``):

- ``project`` (default): A is the stored training map (``au_map``, ``DataConfig.map_size``);
  the CAM and the attention are min-max normalised and resized to it (bilinear up, area
  down).
- ``released``: as paper 002's released evaluation (``dlib/learning/inference_wsol.py``,
  ``update_avg_per_cl_au_cosine``). A is rendered at the network input's full resolution
  (224 px, not the 28 px training map) from the batch's ``landmarks`` and the codebook
  (when a batch carries no landmarks, the stored map is up-sampled to that size instead,
  with a warning). The attention is up-sampled bilinearly (corners aligned) to that size,
  clamped to its own [min, max] and shifted by -min only when min < 0 (never divided: no
  min-max); the CAM, min-max normalised at its own resolution, is up-sampled bilinearly
  (corners not aligned) and clamped to [0, 1].
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from fer_models.config import METRIC_DEF, METRIC_DEFS
from fer_models.errors import ConfigError
from fer_models.figures import save_figure
from fer_models.labels import NEUTRAL, class_names, neutral_output
from fer_models.losses import attention, cosine
from fer_models.methods._base import FERModel, minmax

COSINE_COLUMNS = ("layer1", "layer2", "layer3", "layer4", "layer5", "cam")
log = logging.getLogger(__name__)


@dataclass
class EvalResult:
    metrics: dict[str, float]
    confusion: np.ndarray
    cosine_matrix: np.ndarray
    mean_maps: dict[str, np.ndarray] = field(default_factory=dict)
    class_names: list[str] | None = None  # the name of each output (the loader's); None: the project's first K


def to_size(m: torch.Tensor, size: int) -> torch.Tensor:
    """(B, h, w) -> (B, size, size): bilinear up, area down."""
    if m.shape[-2:] == (size, size):
        return m
    mode = "bilinear" if m.shape[-1] < size else "area"
    kw = {"align_corners": False} if mode == "bilinear" else {}
    return F.interpolate(m.unsqueeze(1).float(), size=(size, size), mode=mode, **kw)[:, 0]


def released_attention(t: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Released ATT map: (B, h, w) attention up-sampled to ``size`` (bilinear, corners
    aligned, antialiased), clamped to its own per-sample [min, max], shifted by -min where
    min < 0. No division: its scale is kept (cosine is scale-free, the shift is not)."""
    t = t.float()
    lo = t.amin(dim=(-2, -1), keepdim=True)
    hi = t.amax(dim=(-2, -1), keepdim=True)
    up = t if t.shape[-2:] == tuple(size) else F.interpolate(
        t.unsqueeze(1), size=size, mode="bilinear", align_corners=True, antialias=True)[:, 0]
    up = torch.minimum(torch.maximum(up, lo), hi)
    return up - lo.clamp(max=0.0)


def released_cam(cam: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Released CAM map: (B, h, w) min-max normalised map up-sampled bilinearly (corners not
    aligned) to ``size`` and clamped to [0, 1]."""
    cam = cam.float()
    if cam.shape[-2:] != tuple(size):
        cam = F.interpolate(cam.unsqueeze(1), size=size, mode="bilinear", align_corners=False)[:, 0]
    return cam.clamp(0.0, 1.0)


def full_resolution_maps(batch: dict, codebook: str | None, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The AU map of each sample at the network input's resolution, and where it is defined.

    Rendered from ``batch["landmarks"]`` (network-input pixels) with the same vectorised
    renderer as the cache (``fer_models.data.au.expression_au_maps``); without landmarks,
    the stored ``au_map`` up-sampled bilinearly (a coarser stand-in, warned about).
    """
    y = batch.get("expression", batch["label"])  # the AU codebook is in the project's label order
    valid = batch["au_valid"].bool()
    lm = batch.get("landmarks")
    if torch.is_tensor(lm) and codebook:
        from fer_models.data.au import expression_au_maps

        maps, ok = expression_au_maps(lm.detach().float().cpu().numpy(), y.cpu().numpy(), codebook, size, size[0])
        return torch.from_numpy(maps).to(y.device), valid & torch.from_numpy(ok).to(valid.device)
    if not getattr(full_resolution_maps, "_warned", False):
        log.warning("metric_def 'released': the batch has no landmarks, so the AU map is the stored map "
                    "up-sampled to %s px, not rendered at that resolution", size[0])
        full_resolution_maps._warned = True  # type: ignore[attr-defined]
    a = batch["au_map"][:, 0].float()
    if a.shape[-2:] != tuple(size):
        a = F.interpolate(a.unsqueeze(1), size=size, mode="bilinear", align_corners=False)[:, 0]
    return a, valid


def _uses_builtin_cams(model: FERModel) -> bool:
    """The CAM of the forward pass is the method's map (``map_source == "cam"``): read it from
    the evaluation forward instead of a second pass through :meth:`FERModel.class_maps`."""
    return model.map_source == "cam"


def to_device(batch: dict, device: torch.device | str) -> dict:
    return {k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in batch.items()}


def eval_options(cfg: Any) -> dict[str, Any]:
    """The :func:`evaluate` options a ``TrainConfig`` sets: its metric definition, codebook and AMP."""
    return {"metric_def": cfg.metric_def, "codebook": cfg.data.codebook, "amp": bool(cfg.amp)}


def class_mean(cos_sum: np.ndarray, cos_cnt: np.ndarray, released: bool = False,
               neutral: int = NEUTRAL) -> tuple[np.ndarray, np.ndarray]:
    """Per-class mean cosines and their mean: paper 002's per-class matrix and its "Average" row.

    ``project``: a class without samples is NaN and the Average is over the classes that have
    samples. ``released`` (``get_matrix_avg_per_cl_au_cosine`` and ``print_avg_per_cl_au_cosine``
    of the released code): a class without samples is -1 and counts in the Average, which is the
    mean over every class but neutral (neutral stays NaN in the matrix). ``neutral``: its row
    (-1: the network has none)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        mat = np.where(cos_cnt > 0, cos_sum / np.maximum(cos_cnt, 1), np.nan)
    if released:
        rows = np.arange(len(mat)) != neutral
        mat[rows & (cos_cnt[:, 0] == 0)] = -1.0
        return mat, mat[rows].mean(axis=0) if rows.any() else np.full(mat.shape[1], np.nan)
    rows = mat[np.isfinite(mat).any(axis=1)]
    avg = np.nanmean(rows, axis=0) if len(rows) else np.full(mat.shape[1], np.nan)
    return mat, avg


class ReferenceMaps:
    """The released definition's full-resolution AU maps of one split, rendered once.

    :func:`full_resolution_maps` renders in numpy on the host (about 3 ms an image at 224 px);
    an evaluation loader without augmentation gives the same batches every pass, so the maps
    of its ``i``-th batch are kept (on the evaluation device) and reused by the next passes.
    Hand one instance per split and loader (``evaluate(..., ref_maps=...)``); a batch of
    another size than the kept one is rendered again.
    """

    def __init__(self) -> None:
        self._maps: list[tuple[torch.Tensor, torch.Tensor]] = []

    def __len__(self) -> int:
        return len(self._maps)

    def get(self, i: int, batch: dict, codebook: str | None, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        if i < len(self._maps) and self._maps[i][0].shape == (batch["label"].shape[0], *size):
            return self._maps[i]
        maps = full_resolution_maps(batch, codebook, size)
        if i == len(self._maps):
            self._maps.append(maps)
        elif i < len(self._maps):
            self._maps[i] = maps
        return maps


class _Sums:
    """Evaluation sums kept on the device (float64; int64 counts), read once per pass."""

    def __init__(self, K: int, device: torch.device | str) -> None:
        f = dict(dtype=torch.float64, device=device)
        self.K = K
        self.conf = torch.zeros(K * K, dtype=torch.int64, device=device)
        self.cos_sum = torch.zeros(K, len(COSINE_COLUMNS), **f)
        self.cos_cnt = torch.zeros(K, **f)
        self.gt = torch.zeros(4, **f)  # gt_cam sum, gt_att sum, their count, spare
        self.mm: dict[str, torch.Tensor] = {}
        self.mm_cnt = torch.zeros(K, **f)

    def add_conf(self, y: torch.Tensor, pred: torch.Tensor) -> None:
        self.conf.index_add_(0, y * self.K + pred, torch.ones_like(y))

    def add_cos(self, y: torch.Tensor, cols: torch.Tensor, mask: torch.Tensor) -> None:
        """Add the (B, 6) cosines of the samples where ``mask`` to their class's row."""
        m = mask.to(torch.float64)
        self.cos_sum.index_add_(0, y, torch.where(mask[:, None], cols.double(), 0.0))
        self.cos_cnt.index_add_(0, y, m)

    def add_gt(self, c_cam: torch.Tensor, c_att: torch.Tensor, mask: torch.Tensor) -> None:
        z = torch.zeros((), dtype=torch.float64, device=mask.device)
        self.gt += torch.stack((torch.where(mask, c_cam.double(), 0.0).sum(), torch.where(mask, c_att.double(), 0.0).sum(),
                                mask.sum().double(), z))

    def add_maps(self, y: torch.Tensor, maps: dict[str, torch.Tensor]) -> None:
        for key, m in maps.items():
            if key not in self.mm:
                self.mm[key] = torch.zeros(self.K, *m.shape[-2:], dtype=torch.float64, device=m.device)
            self.mm[key].index_add_(0, y, m.double())
        self.mm_cnt.index_add_(0, y, torch.ones_like(y, dtype=torch.float64))


def _batch_maps(model: FERModel, out: Any, batch: dict, released: bool, codebook: str | None,
                ref_maps: ReferenceMaps | None, i: int) -> tuple[torch.Tensor, dict[int, torch.Tensor], torch.Tensor,
                                                                torch.Tensor]:
    """The batch's CAM and attention maps and its reference map A with where it is defined,
    at the definition's resolution (module docstring)."""
    x, y = batch["image"], batch["label"]
    if _uses_builtin_cams(model) and out.cams is not None:
        idx = torch.arange(x.shape[0], device=x.device)
        cam = minmax(out.cams[idx, y].detach().float())
    else:
        cam = model.class_maps(x, y)
    feats = {l: attention(out.features[l]).detach().float() for l in range(1, 6) if l in out.features}
    if released:
        size = tuple(int(v) for v in x.shape[-2:])
        a, au_valid = (ref_maps.get(i, batch, codebook, size) if ref_maps is not None
                       else full_resolution_maps(batch, codebook, size))
        return released_cam(cam, size), {l: released_attention(t, size) for l, t in feats.items()}, a, au_valid
    a, au_valid = batch["au_map"][:, 0].float(), batch["au_valid"].bool()
    M = a.shape[-1]
    return to_size(cam, M), {l: to_size(minmax(t), M) for l, t in feats.items()}, a, au_valid


def evaluate(
    model: FERModel,
    loader,
    *,
    num_classes: int,
    att_layer: int = 5,
    device: torch.device | str = "cpu",
    maps: bool = True,
    mean_maps: bool = False,
    progress: bool = False,
    desc: str = "eval",
    metric_def: str = METRIC_DEF,
    codebook: str | None = None,
    amp: bool = False,
    ref_maps: ReferenceMaps | None = None,
) -> EvalResult:
    """Classification and localisation metrics of ``model`` over ``loader`` (batched); see
    the module docstring for ``metric_def``. The model gets the true labels
    (``model(x, labels=y)``): only a method that asks for them at evaluation uses them
    (ACoL with ``eval_erase="label"``, as the released code).

    Everything is summed on the device and read once, after the last batch: no host sync per
    batch. The forward runs under ``torch.inference_mode`` (bf16 autocast on CUDA with
    ``amp``); ``ref_maps`` keeps the released definition's reference maps between passes.
    """
    from tqdm.auto import tqdm

    if metric_def not in METRIC_DEFS:
        raise ConfigError(f"metric_def must be one of {', '.join(METRIC_DEFS)}, got '{metric_def}'")
    released = metric_def == "released"
    model.eval()
    dev = torch.device(device)
    sums = _Sums(num_classes, dev)
    use_amp = amp and dev.type == "cuda"
    for i, batch in enumerate(tqdm(loader, desc=desc, disable=not progress, leave=False)):
        batch = to_device(batch, dev)
        x, y = batch["image"], batch["label"]
        with torch.inference_mode(), torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_amp):
            out = model(x, labels=y)
        sums.add_conf(y, out.logits.argmax(1))
        if not maps:
            continue
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_amp):
            cam, atts, a, au_valid = _batch_maps(model, out, batch, released, codebook, ref_maps, i)
        att = atts[att_layer]
        not_neutral = batch.get("expression", y) != NEUTRAL
        cols = torch.stack([cosine(atts[l], a) for l in range(1, 6)] + [cosine(cam, a)], 1)
        if released:  # a NaN cosine (a constant or NaN CAM) counts as 0, as the released code's nan_to_num
            cols = cols.nan_to_num(0.0, posinf=1.0, neginf=0.0)
        sums.add_cos(y, cols, au_valid & not_neutral)
        if "gt_au_map" in batch and "gt_valid" in batch:
            g = batch["gt_au_map"][:, 0].float()
            M = a.shape[-1]
            if g.shape[-1] != M:
                g = to_size(g, M) if not released else F.interpolate(
                    g.unsqueeze(1), size=(M, M), mode="bilinear", align_corners=False)[:, 0]
            sums.add_gt(cosine(cam, g), cosine(att, g), batch["gt_valid"].bool() & not_neutral)
        if mean_maps:
            sums.add_maps(y, {"cam": cam, "att": att})
    names = loader_class_names(loader, num_classes)
    return _result(sums, maps, att_layer, bool(getattr(model, "has_cam", True)), released, names)


def loader_class_names(loader: Any, num_classes: int) -> list[str] | None:
    """The name of each of the ``num_classes`` outputs as the loader's dataset names them (a
    class subset names its own); None when it does not (an identity run's loader)."""
    names = getattr(getattr(loader, "dataset", None), "class_names", None)
    return list(names) if names is not None and len(names) == num_classes else None


def _result(sums: _Sums, maps: bool, att_layer: int, has_cam: bool, released: bool = False,
            names: list[str] | None = None) -> EvalResult:
    """The pass's one read of its device sums, and the metrics made from them."""
    K = sums.K
    conf = sums.conf.view(K, K).cpu().numpy()
    cos_sum, cos_cnt = sums.cos_sum.cpu().numpy(), sums.cos_cnt.cpu().numpy()[:, None]
    gt = sums.gt.cpu().numpy()
    nan = float("nan")
    total = conf.sum()
    metrics = {"cl": 100.0 * float(np.trace(conf)) / float(total) if total else nan}
    neutral = NEUTRAL if names is None else neutral_output(names)
    names = names or class_names(K)
    cos_mat, avg = class_mean(cos_sum, cos_cnt, released, neutral)
    if not has_cam:
        cos_mat[:, -1], avg[-1] = nan, nan
    if maps:
        n = float(cos_cnt.sum())
        col = cos_sum.sum(0) / n if n else np.full(len(COSINE_COLUMNS), nan)
        metrics["cam_cos"], metrics["att_cos"] = float(col[-1]), float(col[att_layer - 1])
        metrics["gt_cam_cos"] = float(gt[0] / gt[2]) if gt[2] else nan
        metrics["gt_att_cos"] = float(gt[1] / gt[2]) if gt[2] else nan
        if not has_cam:
            metrics["cam_cos"] = metrics["gt_cam_cos"] = nan
        for l in range(5):
            metrics[f"att_cos_{l + 1}"] = float(col[l])
        metrics["cam_cos_avg"] = float(avg[-1])
        metrics["att_cos_avg"] = float(avg[att_layer - 1])
    cnt = np.maximum(sums.mm_cnt.cpu().numpy(), 1)[:, None, None]
    means = {k: v.cpu().numpy() / cnt for k, v in sums.mm.items()}
    return EvalResult(metrics=metrics, confusion=conf, cosine_matrix=cos_mat, mean_maps=means, class_names=names)


def save_figures(result: EvalResult, out_dir: Path, title: str = "") -> list[Path]:
    """Write the run's matrices and maps under ``out_dir`` (the MLflow trial layout too):

    ``matrices/confusion.{csv,png}`` (counts; the PNG row-normalised), ``matrices/cosine.{csv,png}``
    (classes x layers 1-5 + CAM, paper 002 Figs. 10-11) and ``maps/mean_<kind>.png`` (per-class
    mean maps, Figs. 6-9). Mean maps that are not (K, h, w) arrays are skipped.
    """
    out_dir = Path(out_dir)
    K = result.confusion.shape[0]
    names = list(result.class_names or class_names(K))
    conf = np.asarray(result.confusion, dtype=float)
    paths = _save_matrix(conf, names, names, out_dir / "matrices", "confusion", f"{title} confusion".strip(),
                         shown=conf / np.maximum(conf.sum(1, keepdims=True), 1), xlabel="predicted", ylabel="true")
    if result.cosine_matrix is not None:
        cos = np.asarray(result.cosine_matrix, dtype=float)
        paths += _save_matrix(cos, names, list(COSINE_COLUMNS)[: cos.shape[1]], out_dir / "matrices", "cosine",
                              f"{title} cosine with AU map".strip(), xlabel="layer", ylabel="class")
    for key, m in (result.mean_maps or {}).items():
        arr = np.asarray(m) if isinstance(m, (np.ndarray, torch.Tensor, list)) else None
        if arr is not None and arr.ndim == 3:
            paths.append(_save_mean_maps(arr.astype(float), names, out_dir / "maps" / f"mean_{key}.png",
                                         f"{title} per-class mean {key}".strip()))
    return paths


def _save_matrix(mat: np.ndarray, rows: list[str], cols: list[str], folder: Path, stem: str, title: str, *,
                 shown: np.ndarray | None = None, xlabel: str, ylabel: str) -> list[Path]:
    """``mat`` as CSV (exact values) and as an annotated PNG of ``shown`` (default ``mat``) in [0, 1]."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    csv_path, png_path = folder / f"{stem}.csv", folder / f"{stem}.png"
    with open(csv_path, "w") as f:
        f.write(f"{ylabel}\\{xlabel}," + ",".join(cols) + "\n")
        for r, row in zip(rows, mat):
            f.write(r + "," + ",".join(f"{v:.6g}" for v in row) + "\n")
    shown = mat if shown is None else shown
    fig, ax = plt.subplots(figsize=(1.3 + 0.52 * mat.shape[1], 1 + 0.55 * mat.shape[0]))
    ax.imshow(shown, vmin=0, vmax=1, cmap="viridis")
    ax.set_xticks(range(len(cols)), cols, rotation=45, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    for (i, j), v in np.ndenumerate(shown):
        if np.isfinite(v):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color="w" if v < 0.6 else "k")
    ax.set_title(title, fontsize=9)
    # no colorbar: every cell is annotated, and a colorbar is a fifth of the figure's time;
    # fixed margins (inches) instead of tight_layout, which costs a third of a trial's figure
    # time on the CPU preset (benchmarks/bench_trial_phases.py)
    w, h = fig.get_size_inches()
    fig.subplots_adjust(left=min(0.45, 1.0 / w), bottom=min(0.45, 0.95 / h), right=1 - min(0.3, 0.15 / w),
                        top=1 - min(0.3, 0.35 / h))
    save_figure(fig, png_path)
    return [csv_path, png_path]


def _save_mean_maps(maps: np.ndarray, names: list[str], path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    k, h, w = maps.shape
    # one image of the k maps side by side (a 1-pixel white gap), named on the x axis: one
    # axes instead of k keeps the per-trial figure cheap (benchmarks/bench_trial_phases.py)
    gap = max(1, w // 16)
    strip = np.full((h, k * (w + gap) - gap), np.nan)
    for i in range(k):
        strip[:, i * (w + gap): i * (w + gap) + w] = maps[i]
    cmap = matplotlib.colormaps["jet"].with_extremes(bad="white")
    fig, ax = plt.subplots(figsize=(1.6 * k, 2.0))
    ax.imshow(strip, cmap=cmap, vmin=0, vmax=1)
    ax.set_xticks([i * (w + gap) + (w - 1) / 2 for i in range(k)],
                  [names[i] if i < len(names) else str(i) for i in range(k)], fontsize=8)
    ax.set_yticks([])
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    ax.set_title(title, fontsize=9)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.12, top=0.86)
    return save_figure(fig, path)
