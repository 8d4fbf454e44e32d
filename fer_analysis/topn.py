"""Top-N images per filter and the input patterns behind them (paper 001 Sec. 4.3; paper 000).

Paper 001: "for each filter, we find the N images in the chosen split's training set that
generated the strongest magnitude response. We then leave the strongest neuron high and set
all other activations to zero" and reconstruct it with the deconvnet, refined by guided
backprop. Here:

1. :func:`layer_max_responses` makes **one batched pass** over a loader and keeps, per image
   and per filter, the maximal spatial response and where it is (also labels and AUs, so the
   filter/AU statistics of Sec. 4.4 reuse the same pass);
2. :func:`top_n` ranks the images per filter (``torch.topk`` over the images);
3. :func:`reconstruct` runs deconvnet and guided backprop for the chosen filter's maximum in
   each of its top images and crops the patch of the input the neuron sees.

"Strongest response" is read as the largest *positive* maximum (the filters feed a ReLU, so a
large negative value is no response at all); paper 001 says "magnitude" without sign.
The receptive field is measured, not derived from the architecture (any tap layer of any
model works): the bounding box of the input pixels that receive gradient from the centre
neuron over a few random inputs (:func:`receptive_field`).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from fer_analysis.hooks import LogitsOnly, capture, resolve_layer, tap_layers
from fer_models.errors import ConfigError, DatasetError


# ----------------------------------------------------------------------------- data access
def iter_batches(loader: Iterable, device: str = "cpu") -> Iterator[tuple[torch.Tensor, dict[str, Any]]]:
    """Normalise loader items to ``(images, extras)``: dict items of the data contract
    (``image``, ``label``, ``aus``, ``index`` ...) or ``(image, label)`` tuples (tests)."""
    seen = 0
    for item in loader:
        if isinstance(item, dict):
            x = item["image"]
            extras = {k: v for k, v in item.items() if k != "image"}
        else:
            x, *rest = item
            extras = {"label": rest[0]} if rest else {}
        if "index" not in extras:
            extras["index"] = torch.arange(seen, seen + x.shape[0])
        seen += x.shape[0]
        yield x.to(device), extras


def fetch_images(dataset, indices: Iterable[int]) -> torch.Tensor:
    """Images of the given dataset rows, stacked (dict items or tuple items)."""
    indices = [int(i) for i in indices]
    if hasattr(dataset, "get_batch"):  # fer_models FaceDataset: one batched gather
        return torch.as_tensor(dataset.get_batch(indices)["image"])
    out = []
    for i in indices:
        item = dataset[int(i)]
        out.append(item["image"] if isinstance(item, dict) else item[0])
    return torch.stack([torch.as_tensor(t) for t in out])


def default_layer(model: nn.Module, x: torch.Tensor) -> str:
    """Paper layer 5 of a backbone method (``layer5``: its last stage), else the deepest
    convolution among the tap layers (seed nets: paper 001 uses conv3), else the deepest tap
    layer whose output is still a spatial map."""
    layers = tap_layers(model)
    if "layer5" in layers:
        return "layer5"
    with torch.no_grad(), capture(layers) as acts:
        LogitsOnly(model)(x[:1])
    spatial = [n for n in layers if n in acts and acts[n].dim() == 4 and acts[n].shape[-1] * acts[n].shape[-2] > 1]
    convs = [n for n in spatial if isinstance(layers[n], nn.Conv2d)]
    spatial = convs or spatial
    if not spatial:
        raise ConfigError("this model has no convolutional tap layer to visualise; pass --layer explicitly")
    order = list(acts)  # dict order = order of first call in the forward pass
    return max(spatial, key=order.index)


# ----------------------------------------------------------------------------- one pass
@dataclass
class Responses:
    """Per image (rows) and filter (columns) maximal response of one layer."""

    layer: str
    values: torch.Tensor  # (M, C) float: max over h, w
    argmax: torch.Tensor  # (M, C) long: flat position h * w_f + w of the max
    index: torch.Tensor  # (M,) dataset row of each image
    feature_hw: tuple[int, int]
    input_hw: tuple[int, int]
    labels: torch.Tensor | None = None  # (M,)
    aus: torch.Tensor | None = None  # (M, A) intensities, NaN if unknown
    columns: dict[str, np.ndarray] = field(default_factory=dict)  # ROW_COLUMNS found in the batches


# per-row columns kept with the responses when the batches carry them (the loader passes every
# 1-D cache column through by name): ``sequence`` counts CK+ samples by sequence (filter_au)
ROW_COLUMNS = ("sequence",)


@torch.no_grad()
def layer_max_responses(
    model: nn.Module,
    layer: str | nn.Module,
    loader: Iterable,
    *,
    device: str = "cpu",
    max_batches: int | None = None,
    progress: bool = True,
) -> Responses:
    """One batched pass: per image and filter of ``layer``, the max over space and its position."""
    name, module = resolve_layer(model, layer)
    fwd = LogitsOnly(model).eval()
    vals, args, idx, labels, aus = [], [], [], [], []
    cols: dict[str, list[np.ndarray]] = {}
    fhw = ihw = None
    it = iter_batches(loader, device)
    total = None
    try:
        total = len(loader)  # type: ignore[arg-type]
    except TypeError:
        pass
    if max_batches is not None and total is not None:
        total = min(total, max_batches)
    with capture({name: module}) as acts:
        for b, (x, extras) in enumerate(tqdm(it, total=total, desc=f"responses {name}", disable=not progress)):
            if max_batches is not None and b >= max_batches:
                break
            fwd(x)
            a = acts[name]
            if a.dim() != 4:
                raise ConfigError(f"layer '{name}' gives a {a.dim()}-d output; choose a convolutional layer")
            fhw, ihw = tuple(a.shape[-2:]), tuple(x.shape[-2:])
            v, i = a.flatten(2).max(dim=2)
            vals.append(v.float().cpu())
            args.append(i.cpu())
            idx.append(torch.as_tensor(extras["index"]).cpu())
            if "label" in extras:
                labels.append(torch.as_tensor(extras["label"]).cpu())
            if "aus" in extras:
                aus.append(torch.as_tensor(extras["aus"]).float().cpu())
            for key in ROW_COLUMNS:
                if key in extras:
                    v = extras[key]
                    cols.setdefault(key, []).append(np.asarray(v.cpu() if torch.is_tensor(v) else v).reshape(-1))
    if not vals:
        raise DatasetError("the data loader gave no images; check the run's dataset and split")
    return Responses(
        layer=name,
        values=torch.cat(vals),
        argmax=torch.cat(args),
        index=torch.cat(idx),
        feature_hw=fhw,
        input_hw=ihw,
        labels=torch.cat(labels) if labels else None,
        aus=torch.cat(aus) if aus else None,
        columns={k: np.concatenate(v) for k, v in cols.items() if len(v) == len(vals)},
    )


@dataclass
class TopN:
    layer: str
    filters: list[int]
    values: torch.Tensor  # (F, N) strongest first
    index: torch.Tensor  # (F, N) dataset rows
    position: torch.Tensor  # (F, N, 2) (row, col) in the feature map


def top_n(resp: Responses, n: int = 8, filters: Iterable[int] | None = None) -> TopN:
    """The ``n`` images with the strongest response of each filter (rows of ``resp``)."""
    filters = list(range(resp.values.shape[1])) if filters is None else [int(f) for f in filters]
    n = min(n, resp.values.shape[0])
    v = resp.values[:, filters]  # (M, F)
    top_v, top_i = v.topk(n, dim=0)  # (n, F)
    top_v, top_i = top_v.T, top_i.T
    flat = torch.gather(resp.argmax[:, filters].T, 1, top_i)  # (F, n)
    w = resp.feature_hw[1]
    pos = torch.stack([flat // w, flat % w], dim=-1)
    return TopN(resp.layer, filters, top_v, resp.index[top_i], pos)


def strongest_filters(resp: Responses, k: int = 10, n: int = 8) -> list[int]:
    """Filters ranked by the mean of their top-``n`` responses (paper 001 shows 10 of 256)."""
    n = min(n, resp.values.shape[0])
    score = resp.values.topk(n, dim=0).values.mean(dim=0)
    return score.argsort(descending=True)[:k].tolist()


# ----------------------------------------------------------------------------- patches
def receptive_field(model: nn.Module, layer: str | nn.Module, input_shape: tuple[int, ...], trials: int = 8) -> tuple[int, int]:
    """Measured receptive field (height, width) in input pixels of a neuron at the centre of
    ``layer``: bounding box of the input pixels with non-zero gradient, over random inputs."""
    name, module = resolve_layer(model, layer)
    g = torch.Generator().manual_seed(0)
    p = next(model.parameters(), None)
    x = torch.randn(trials, *input_shape[-3:], generator=g)
    if p is not None:
        x = x.to(p.device, p.dtype)
    x.requires_grad_(True)
    fwd = LogitsOnly(model).eval()
    with torch.enable_grad(), capture({name: module}, detach=False) as acts:
        fwd(x)
        a = acts[name]
        h, w = a.shape[-2] // 2, a.shape[-1] // 2
        a[:, :, h, w].abs().sum().backward()
    support = (x.grad.abs().sum(dim=(0, 1)) > 0).nonzero()
    if len(support) == 0:
        return tuple(input_shape[-2:])  # type: ignore[return-value]
    lo, hi = support.min(0).values, support.max(0).values
    return int(hi[0] - lo[0] + 1), int(hi[1] - lo[1] + 1)


def patch_box(pos: tuple[int, int], feature_hw, input_hw, rf: tuple[int, int]) -> tuple[int, int, int, int]:
    """(top, left, height, width) of the receptive-field patch around a feature position,
    shifted to lie inside the image (the map is assumed to tile the input evenly)."""
    out = []
    for p, f, i, r in zip(pos, feature_hw, input_hw, rf):
        r = min(r, i)
        c = (p + 0.5) * i / f
        start = int(round(c - r / 2))
        start = max(0, min(start, i - r))
        out.append((start, r))
    return out[0][0], out[1][0], out[0][1], out[1][1]


@dataclass
class Reconstruction:
    filter: int
    rank: list[int]
    index: list[int]
    activation: list[float]
    boxes: list[tuple[int, int, int, int]]
    image: torch.Tensor  # (N, 3, h, w) patches
    deconv: torch.Tensor
    gbp: torch.Tensor


def reconstruct(model: nn.Module, layer: str | nn.Module, dataset, top: TopN, *, device: str = "cpu",
                progress: bool = True) -> list[Reconstruction]:
    """Deconvnet and guided-backprop patterns of each filter's maximum in its top images."""
    from fer_analysis.registry import EXPLAINERS

    name, module = resolve_layer(model, layer)
    deconv = EXPLAINERS.get("deconvnet")(model)
    gbp = EXPLAINERS.get("guided-backprop")(model)
    out = []
    rf = None
    for fi, f in enumerate(tqdm(top.filters, desc=f"reconstruct {name}", disable=not progress)):
        x = fetch_images(dataset, top.index[fi].tolist()).to(device).float()
        if rf is None:
            rf = receptive_field(model, module, tuple(x.shape[1:]))
        with torch.no_grad(), capture({name: module}) as acts:
            LogitsOnly(model)(x)
        a = acts[name][:, f]
        flat = a.flatten(1).argmax(dim=1)
        fh, fw = a.shape[-2:]
        d = deconv.neuron(x, module, f)
        g = gbp.neuron(x, module, f)
        boxes = [patch_box((int(p) // fw, int(p) % fw), (fh, fw), tuple(x.shape[-2:]), rf) for p in flat]
        crop = lambda t: torch.stack([t[k, :, b[0]:b[0] + b[2], b[1]:b[1] + b[3]] for k, b in enumerate(boxes)])
        out.append(Reconstruction(
            filter=f, rank=list(range(len(boxes))), index=top.index[fi].tolist(),
            activation=top.values[fi].tolist(), boxes=boxes,
            image=crop(x).cpu(), deconv=crop(d).cpu(), gbp=crop(g).cpu(),
        ))
    return out


def write_topn_csv(path: Path, top: TopN, labels: torch.Tensor | None = None, resp: Responses | None = None) -> Path:
    """CSV rows (filter, rank, image_index, activation, row, col[, label])."""
    label_of = {}
    if resp is not None and resp.labels is not None:
        label_of = dict(zip(resp.index.tolist(), resp.labels.tolist()))
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["layer", "filter", "rank", "image_index", "activation", "row", "col", "label"])
        for fi, f in enumerate(top.filters):
            for r in range(top.values.shape[1]):
                idx = int(top.index[fi, r])
                w.writerow([top.layer, f, r, idx, f"{float(top.values[fi, r]):.6g}",
                            int(top.position[fi, r, 0]), int(top.position[fi, r, 1]), label_of.get(idx, "")])
    return path


def scan_layer(model: nn.Module, loader, layer: str | None = None, *, device: str = "cpu",
               max_batches: int | None = None, progress: bool = True) -> Responses:
    """Every filter's maximum response per image at ``layer`` (default: ``default_layer``)."""
    if layer is None:
        x0, _ = next(iter_batches(loader, device))
        layer = default_layer(model, x0)
    return layer_max_responses(model, layer, loader, device=device, max_batches=max_batches, progress=progress)


def run_topn(model: nn.Module, loader, out_dir: Path, *, layer: str | None = None, n: int = 8,
             filters: list[int] | None = None, max_filters: int = 10, device: str = "cpu",
             responses: Responses | None = None, max_batches: int | None = None,
             progress: bool = True) -> dict[str, float]:
    """The whole paper-001 Fig. 3-4 job: grid PNG + CSV in ``out_dir``; returns metrics."""
    from fer_analysis.plots_explain import topn_grid

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    resp = responses or scan_layer(model, loader, layer, device=device, max_batches=max_batches, progress=progress)
    if filters is None:
        filters = strongest_filters(resp, max_filters, n)
    top = top_n(resp, n, filters)
    recs = reconstruct(model, resp.layer, loader.dataset, top, device=device, progress=progress)
    safe = resp.layer.replace(".", "_")
    write_topn_csv(out_dir / f"topn_{safe}.csv", top, resp=resp)
    topn_grid(recs, out_dir / f"topn_{safe}.png", title=f"top-{n} images per filter, layer {resp.layer}")
    return {
        "topn_filters": float(len(filters)),
        "topn_mean_top1_activation": float(top.values[:, 0].mean()),
        "topn_dead_filter_fraction": float((resp.values.max(dim=0).values <= 0).float().mean()),
    }
