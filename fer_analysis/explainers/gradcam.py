"""Grad-CAM (Selvaraju et al. 2017) of any block, as in paper 004 Fig. 2e-f.

For a layer with feature maps A^c (c = channels), the class-``k`` map is
``relu(sum_c alpha_c A^c)`` with ``alpha_c`` the spatial mean of d y_k / d A^c. Captum's
``LayerGradCam`` computes it (its hooks are removed by captum); :meth:`raw` returns that map
at the layer's resolution, :meth:`attribute` up-samples it bilinearly to the input and
min-max normalises each image to [0, 1] (an all-zero map stays zero), which is how paper
004 shows it ("dark blue zeros, dark red ones").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from captum.attr import LayerGradCam

from fer_analysis.explainers._base import Explainer, quiet
from fer_analysis.registry import EXPLAINERS


def normalise_maps(maps: torch.Tensor) -> torch.Tensor:
    """Per-image min-max to [0, 1] of (B, H, W); constant maps become zeros."""
    flat = maps.reshape(maps.shape[0], -1)
    lo = flat.min(dim=1, keepdim=True).values
    hi = flat.max(dim=1, keepdim=True).values
    span = (hi - lo).clamp_min(1e-12)
    out = (flat - lo) / span
    out = torch.where((hi - lo) > 1e-12, out, torch.zeros_like(out))
    return out.reshape(maps.shape)


@EXPLAINERS.register("gradcam", output="map", paper="004")
class GradCamExplainer(Explainer):
    """Grad-CAM of a chosen block (captum LayerGradCam), up-sampled and normalised."""

    name = "gradcam"
    output = "map"

    def __init__(self, model, layer=None):
        super().__init__(model)
        self.layer = layer

    def _target(self, x: torch.Tensor, target):
        if target is None:
            with torch.no_grad():
                target = self.forward_model(x).argmax(dim=1)
        return target

    def raw(self, x: torch.Tensor, target=None, layer=None) -> torch.Tensor:
        """``relu(sum_c alpha_c A^c)`` at the layer's own resolution, (B, h, w)."""
        layer = layer if layer is not None else self.layer
        if layer is None:
            raise ValueError("Grad-CAM needs a layer: pass layer= to the explainer or the call")
        target = self._target(x, target)
        with quiet():
            algo = LayerGradCam(self.forward_model, self._layer(layer))
            cam = algo.attribute(x, target=target, relu_attributions=True)
        return cam.detach()[:, 0]

    def attribute(self, x: torch.Tensor, target=None, layer=None) -> torch.Tensor:
        cam = self.raw(x, target, layer)
        cam = F.interpolate(cam[:, None], size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
        return normalise_maps(cam.clamp_min(0))

    def per_block(self, x: torch.Tensor, target=None, layers=()) -> dict[str, torch.Tensor]:
        """Grad-CAM of the same target class at every block in ``layers`` (names)."""
        target = self._target(x, target)
        return {name: self.attribute(x, target, name) for name in layers}


# ----------------------------------------------------------------------------- jobs
def default_blocks(model) -> list[str]:
    """The blocks to show: the model's paper layers 1..5 where it names them (seed nets:
    ``layer_names``; backbone methods: ``layer1..layer5`` taps), else its conv tap layers."""
    from torch import nn

    from fer_analysis.hooks import tap_layers

    taps = tap_layers(model)
    names = getattr(model, "layer_names", None)
    if isinstance(names, dict) and all(v in taps for v in names.values()):
        return [names[k] for k in sorted(names)]
    paper = [f"layer{i}" for i in range(1, 6)]
    if all(p in taps for p in paper):
        return paper
    return [n for n, m in taps.items() if isinstance(m, nn.Conv2d)]


def class_mean_maps(model, loader, num_classes: int, *, max_samples: int = 512, size: int | None = None,
                    device: str = "cpu", progress: bool = True):
    """Mean of the method's own map M[k] of the *true* class over the images of each class
    (paper 002 Figs. 6-11), via ``model.class_maps(x, labels)``; models without it fall back
    to Grad-CAM at their deepest block. Returns (maps (K, S, S) numpy, counts (K,))."""
    import numpy as np
    from tqdm.auto import tqdm

    from fer_analysis.topn import iter_batches

    sums, counts, seen = None, torch.zeros(num_classes), 0
    fallback = None
    for x, extras in tqdm(iter_batches(loader, device), desc="class maps", disable=not progress):
        y = torch.as_tensor(extras["label"]).to(x.device)
        if hasattr(model, "class_maps"):
            m = model.class_maps(x, y)
        else:
            fallback = fallback or GradCamExplainer(model, layer=default_blocks(model)[-1])
            m = fallback.attribute(x, y)
        m = m.detach().float()
        s = size or x.shape[-1]
        if m.shape[-2:] != (s, s):
            m = F.interpolate(m[:, None], size=(s, s), mode="bilinear", align_corners=False)[:, 0]
        if sums is None:
            sums = torch.zeros(num_classes, s, s)
        y = y.cpu().long()
        keep = y < num_classes
        sums.index_add_(0, y[keep], m.cpu()[keep])
        counts += torch.bincount(y[keep], minlength=num_classes).float()
        seen += x.shape[0]
        if seen >= max_samples:
            break
    maps = (sums / counts.clamp_min(1)[:, None, None]).numpy() if sums is not None else np.zeros((num_classes, 1, 1))
    return maps, counts.long().tolist()


def run_gradcam(model, loader, out_dir, *, layers=None, n: int = 8, num_classes: int | None = None,
                class_names=None, max_samples: int = 512, device: str = "cpu",
                progress: bool = True) -> dict[str, float]:
    """Paper 004 Fig. 2e-f (Grad-CAM of the predicted class at every block, ``n`` test images)
    and the per-class mean maps of the method (``class_maps``), PNG + JSON."""
    import json
    from pathlib import Path

    from fer_analysis.plots_explain import class_maps_figure, gradcam_grid
    from fer_analysis.topn import iter_batches
    from fer_models.labels import class_names as default_names

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    layers = list(layers or default_blocks(model))
    xs, ys = [], []
    for x, extras in iter_batches(loader, device):
        xs.append(x)
        ys.append(torch.as_tensor(extras["label"]))
        if sum(len(t) for t in xs) >= n:
            break
    x = torch.cat(xs)[:n]
    y = torch.cat(ys)[:n].cpu()
    cam = GradCamExplainer(model)
    with torch.no_grad():
        logits = cam.forward_model(x)
    k = num_classes or logits.shape[1]
    names = list(class_names or default_names(min(k, 8)))
    names += [str(i) for i in range(len(names), k)]
    pred = logits.argmax(1)
    maps = cam.per_block(x, pred, layers)
    titles = [f"true {names[int(a)]} / pred {names[int(b)]}" for a, b in zip(y, pred.cpu())]
    gradcam_grid(x.cpu(), maps, out_dir / "gradcam_blocks.png", titles)
    mean_maps, counts = class_mean_maps(model, loader, k, max_samples=max_samples, device=device, progress=progress)
    class_maps_figure(mean_maps, counts, names, out_dir / "class_mean_maps.png",
                      title=f"mean map of the true class ({type(model).__name__})")
    # centre of mass (row, col, as a fraction of the image) of each block's mean map: where it looks
    com = {}
    for name, m in maps.items():
        w = m.mean(0)
        tot = w.sum().clamp_min(1e-12)
        r = (w.sum(1) * torch.arange(w.shape[0])).sum() / tot / w.shape[0]
        c = (w.sum(0) * torch.arange(w.shape[1])).sum() / tot / w.shape[1]
        com[name] = [float(r), float(c)]
    (out_dir / "gradcam.json").write_text(json.dumps({
        "blocks": layers, "images": int(len(x)), "class_counts": dict(zip(names, counts)),
        "block_map_centre_of_mass": com, "block_map_mean": {n_: float(m.mean()) for n_, m in maps.items()},
    }, indent=2))
    return {
        "gradcam_blocks": float(len(layers)),
        "gradcam_accuracy_shown": float((pred.cpu() == y).float().mean()),
        "class_maps_samples": float(sum(counts)),
    }
