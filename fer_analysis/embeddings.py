"""Layer embeddings of a probe set (paper 004, Studies 1-4: "feed N faces, keep each layer's output").

:func:`collect_embeddings` feeds batches through a network with forward hooks on named
layers and keeps, per layer, one row per sample, together with the sample's expression,
identity and valence/arousal labels.

Size rule (paper 004 flattens each layer, e.g. N x 128 for "dropout_4"; its 48 px inputs
keep conv maps small, ours may not be): an activation of shape (C, h, w) is flattened
when C*h*w <= ``max_features`` (4096 by default); otherwise it is adaptive-average-pooled
to a g x g grid first, with g the largest integer such that C*g*g <= ``max_features``
(at least 1, i.e. global average pooling when C alone exceeds the budget). Token
activations (N, D) are flattened, or mean-pooled over tokens when too large. The rule
and the original shapes are recorded in :attr:`Embeddings.shapes` / ``pooled``.

Aliases: a module that returns its input object (eval-mode Dropout, Flatten of a flat
tensor) would duplicate the layer before it. With the default layers (all of
``model.tap_layers()``), of such a run of identical outputs only the *last* name is kept
(so Keras-style names like paper 004's ``dropout_4`` survive); a tap whose output is the
model's logits becomes the output layer and no separate ``logits`` pseudo-layer is added.

The hooks are ``fer_analysis.hooks.capture`` (undetached, so aliases are found by
identity), which always removes them, also when the forward pass raises.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import torch
from torch import nn

from fer_analysis.hooks import capture, first_tensor, resolve_layer
from fer_models.errors import ConfigError

OUTPUT_LAYER = "logits"  # pseudo-layer: the network's class scores (paper 004's "out_layer")


@dataclass
class Embeddings:
    """Per-layer activations of N samples and their labels (row i is the same sample everywhere)."""

    layers: dict[str, np.ndarray]  # name -> (N, D) float32, in network order
    label: np.ndarray  # (N,) int64 expression, project order
    identity: np.ndarray  # (N,) int64, -1 unknown
    valence: np.ndarray  # (N,) float32, NaN unknown
    arousal: np.ndarray  # (N,) float32, NaN unknown
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)  # per-sample activation shape
    pooled: dict[str, bool] = field(default_factory=dict)  # whether the size rule pooled it
    output_layer: str = OUTPUT_LAYER  # the layer holding the class scores (a tap, or the pseudo-layer)
    dropped: list[str] = field(default_factory=list)  # default taps dropped as aliases of the next one

    @property
    def n(self) -> int:
        return int(self.label.shape[0])

    @property
    def names(self) -> list[str]:
        return list(self.layers)

    def penultimate(self) -> str:
        """The last tapped layer before the output (paper 004, Study 4)."""
        names = [n for n in self.layers if n not in (OUTPUT_LAYER, self.output_layer)]
        if not names:
            raise ConfigError("the embeddings hold no layer besides the output; tap at least one layer")
        return names[-1]

    def save(self, path: str | Path) -> None:
        arrays = {f"layer::{k}": v for k, v in self.layers.items()}
        np.savez_compressed(
            path,
            _order=np.array(list(self.layers)),
            _output=np.array(self.output_layer),
            label=self.label,
            identity=self.identity,
            valence=self.valence,
            arousal=self.arousal,
            **arrays,
        )

    @classmethod
    def load(cls, path: str | Path) -> "Embeddings":
        z = np.load(path, allow_pickle=False)
        layers = {str(k): z[f"layer::{k}"] for k in z["_order"]}
        out = str(z["_output"]) if "_output" in z else OUTPUT_LAYER
        return cls(layers, z["label"], z["identity"], z["valence"], z["arousal"], output_layer=out)


def grid_size(channels: int, h: int, w: int, max_features: int) -> int | None:
    """The pooling grid g of the size rule, or None when the map is flattened as is."""
    if channels * h * w <= max_features:
        return None
    g = int(math.isqrt(max(max_features // max(channels, 1), 1)))
    return max(1, min(g, h, w))


def reduce_activation(a: torch.Tensor, max_features: int) -> tuple[torch.Tensor, bool]:
    """(B, ...) activation -> (B, D) by the module's size rule; returns (rows, pooled)."""
    a = a.detach()
    if a.ndim == 4:
        g = grid_size(a.shape[1], a.shape[2], a.shape[3], max_features)
        if g is not None:
            return torch.nn.functional.adaptive_avg_pool2d(a.float(), g).flatten(1), True
        return a.float().flatten(1), False
    if a.ndim == 3 and a[0].numel() > max_features:  # (B, tokens, D)
        return a.float().mean(1), True
    return a.float().reshape(a.shape[0], -1), False


def resolve_layers(model: nn.Module, layers: Iterable[str] | None = None) -> dict[str, nn.Module]:
    """Named layers to tap: all of ``model.tap_layers()`` (its top-level children for a model
    without them), or the ``layers`` named (``fer_analysis.hooks.resolve_layer``: a tap
    layer or any submodule path; the ``logits`` pseudo-layer is not a module)."""
    if layers is None:
        return dict(model.tap_layers()) if hasattr(model, "tap_layers") else dict(model.named_children())
    return dict(resolve_layer(model, name) for name in layers if name != OUTPUT_LAYER)


def _col(batch: Mapping[str, Any], key: str, n: int, fill: float) -> np.ndarray:
    v = batch.get(key)
    if v is None:
        return np.full(n, fill, dtype=np.float64)
    return np.asarray(v.detach().cpu() if isinstance(v, torch.Tensor) else v, dtype=np.float64).reshape(n)


@torch.no_grad()
def collect_embeddings(
    model: nn.Module,
    batches: Iterable[Mapping[str, Any]],
    layers: Iterable[str] | None = None,
    *,
    n_samples: int | None = None,
    max_features: int = 4096,
    include_output: bool = True,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> Embeddings:
    """Run ``batches`` (dicts with ``image``, ``label`` and optionally ``identity``,
    ``valence``, ``arousal``, as fer_models' FaceDataset yields) through ``model`` in eval
    mode and return each tapped layer's activations (see the module docstring for the
    size rule). ``include_output`` adds the class scores as the pseudo-layer ``logits``.
    The model's train/eval mode is restored afterwards.
    """
    modules = resolve_layers(model, layers)
    if not modules and not include_output:
        raise ConfigError("no layer to probe; pass layer names or keep include_output")
    was_training = model.training
    model.eval()
    feats: dict[str, list[np.ndarray]] = {k: [] for k in modules}
    if include_output:
        feats[OUTPUT_LAYER] = []
    shapes: dict[str, tuple[int, ...]] = {}
    pooled: dict[str, bool] = {}
    output_layer, dropped = OUTPUT_LAYER, []
    cols: dict[str, list[np.ndarray]] = {"label": [], "identity": [], "valence": [], "arousal": []}
    seen = 0
    it = batches
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(batches, desc="embeddings", unit="batch", leave=False)
    try:
        with capture(modules, detach=False) as sink:
            for batch in it:
                x = batch["image"]
                take = x.shape[0] if n_samples is None else min(x.shape[0], n_samples - seen)
                if take <= 0:
                    break
                sink.clear()
                out = model(x[:take].to(device))
                acts = dict(sink)
                o = first_tensor(out)
                if seen == 0:
                    output_layer, dropped = _aliases(list(modules), acts, o, dedupe=layers is None)
                    for name in dropped:
                        feats.pop(name, None)
                    if output_layer != OUTPUT_LAYER:
                        feats.pop(OUTPUT_LAYER, None)
                if OUTPUT_LAYER in feats:
                    if o is None:
                        raise ConfigError("the model output has no logits; pass include_output=False")
                    acts[OUTPUT_LAYER] = o
                for name in feats:
                    if name not in acts:
                        raise ConfigError(f"layer '{name}' did not run in the forward pass; choose another layer")
                    a = acts[name]
                    shapes.setdefault(name, tuple(a.shape[1:]))
                    rows, p = reduce_activation(a, max_features)
                    pooled.setdefault(name, p)
                    feats[name].append(rows.cpu().numpy().astype(np.float32))
                cols["label"].append(_col(batch, "label", x.shape[0], -1)[:take])
                cols["identity"].append(_col(batch, "identity", x.shape[0], -1)[:take])
                cols["valence"].append(_col(batch, "valence", x.shape[0], np.nan)[:take])
                cols["arousal"].append(_col(batch, "arousal", x.shape[0], np.nan)[:take])
                seen += take
                if n_samples is not None and seen >= n_samples:
                    break
    finally:
        model.train(was_training)
    if seen == 0:
        raise ConfigError("the probe set is empty; check the dataset and split")
    return Embeddings(
        layers={k: np.concatenate(v) for k, v in feats.items()},
        label=np.concatenate(cols["label"]).astype(np.int64),
        identity=np.concatenate(cols["identity"]).astype(np.int64),
        valence=np.concatenate(cols["valence"]).astype(np.float32),
        arousal=np.concatenate(cols["arousal"]).astype(np.float32),
        shapes=shapes,
        pooled=pooled,
        output_layer=output_layer,
        dropped=dropped,
    )


def _aliases(order: list[str], acts: dict[str, torch.Tensor], logits: torch.Tensor | None, dedupe: bool):
    """(output layer name, taps to drop) from one batch's activations; see the module docstring."""
    dropped: list[str] = []
    if dedupe:
        for prev, nxt in zip(order, order[1:]):
            if prev in acts and nxt in acts and acts[prev] is acts[nxt]:
                dropped.append(prev)
    output_layer = OUTPUT_LAYER
    if logits is not None:
        for name in order:
            if name not in dropped and acts.get(name) is logits:
                output_layer = name
    return output_layer, dropped
