"""Job ``block-maps`` (alias ``gradcam``): where the network looks, block by block.

Paper 004 Fig. 2e-f: Grad-CAM (the ``layer-gradcam`` explainer) of the predicted class at every
block for a few test images; paper 002 Figs. 6-11: the mean over the test images of each class
of the method's own map M[k] of the true class (``class_maps``; Grad-CAM at the deepest block for
a model without one). The job was called ``gradcam`` before; that name is kept as an alias (the
method ``gradcam`` and the explainer ``layer-gradcam`` are other things).

Blocks: ``--gradcam-layers`` (any layer name ``fer_analysis.hooks.resolve_layer`` knows), else
the paper's: on paper 004's light CNN its Fig. 2 blocks ``batchnorm_1``, ``conv2d_4``,
``conv2d_6`` (Keras names: ``conv2d_n`` is the post-ELU map, ``fer_analysis.layers``), on the
other networks paper 002's layers 1..5. On an identity run the Grad-CAM grid shows identities;
the per-class mean maps (paper 002: one map per expression) are not drawn, with a note.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F

from fer_analysis.jobs._base import register_job
from fer_analysis.registry import EXPLAINERS


@register_job("block-maps", split="test", paper="004, 002", aliases=("gradcam",))
def block_maps(model, loader, out_dir, spec, *, num_classes=None, device="cpu", progress=False, context=None):
    """Grad-CAM of the predicted class at every block (paper 004) and the per-class mean maps (paper 002)."""
    from fer_analysis.run_labels import RunContext

    ctx = context or RunContext()
    return run_block_maps(model, loader, out_dir, layers=spec.gradcam_layers, images=spec.images,
                          num_classes=num_classes, class_names=ctx.class_names, target=ctx.target, device=device,
                          progress=progress)


def default_blocks(model) -> list[str]:
    """The blocks to show: paper 004's Fig. 2 blocks on its light CNN; else the model's paper
    layers 1..5 where it names them (seed nets: ``layer_names``; backbone methods:
    ``layer1..layer5`` taps), else its conv tap layers."""
    from torch import nn

    from fer_analysis.hooks import tap_layers
    from fer_analysis.layers import paper_layers

    paper = paper_layers(model, "gradcam")
    if paper:
        return list(paper)
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
            fallback = fallback or EXPLAINERS.get("layer-gradcam")(model, layer=default_blocks(model)[-1])
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


def run_block_maps(model, loader, out_dir, *, layers=None, images: int = 8, num_classes: int | None = None,
                   class_names=None, target: str = "expression", max_samples: int = 512, device: str = "cpu",
                   progress: bool = True) -> dict[str, float]:
    """Paper 004 Fig. 2e-f (Grad-CAM of the predicted class at every block, ``images`` test
    images) and, on an expression run, the per-class mean maps of the method (``class_maps``),
    PNG + JSON."""
    from fer_analysis.hooks import resolve_layer
    from fer_analysis.plots_explain import class_maps_figure, gradcam_grid
    from fer_analysis.run_labels import class_labels, class_names_for
    from fer_analysis.topn import iter_batches

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    layers = list(layers or default_blocks(model))
    for name in layers:
        resolve_layer(model, name)  # one clear sentence for a wrong --gradcam-layers, before any work
    xs, ys = [], []
    for x, extras in iter_batches(loader, device):
        xs.append(x)
        ys.append(class_labels(extras, target))
        if sum(len(t) for t in xs) >= images:
            break
    x = torch.cat(xs)[:images]
    y = torch.cat(ys)[:images].cpu()
    cam = EXPLAINERS.get("layer-gradcam")(model)
    with torch.no_grad():
        logits = cam.forward_model(x)
    k = num_classes or logits.shape[1]
    names = list(class_names or class_names_for(target, k, loader))
    names += [f"class {i}" for i in range(len(names), k)]
    pred = logits.argmax(1)
    maps = cam.per_block(x, pred, layers)
    titles = [f"true {names[int(a)]} / pred {names[int(b)]}" for a, b in zip(y, pred.cpu())]
    gradcam_grid(x.cpu(), maps, out_dir / "gradcam_blocks.png", titles)
    if target == "expression":
        mean_maps, counts = class_mean_maps(model, loader, k, max_samples=max_samples, device=device,
                                            progress=progress)
        class_maps_figure(mean_maps, counts, names, out_dir / "class_mean_maps.png",
                          title=f"mean map of the true class ({type(model).__name__})")
    else:
        counts = []
        (out_dir / "class_mean_maps_skipped.txt").write_text(
            f"Not applicable: the per-class mean maps (paper 002, Figs. 6-11) average each expression's maps; this "
            f"run predicts {target}, with {k} classes of a few images each, so they are not drawn.\n")
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
