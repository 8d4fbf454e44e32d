"""Layer embeddings of a probe set (paper 004, Studies 1-4: "feed N faces, keep each layer's output").

:func:`collect_embeddings` feeds batches through a network with forward hooks on named
layers and keeps, per layer, one row per sample, together with the sample's expression,
identity and valence/arousal labels.

**Exact PCA of flattened layers.** Paper 004 flattens each layer (N x 9216 for ``flatten``,
N x 147,456 for ``batchnorm_1`` at 48 px) and takes its principal components (10 for the
silhouettes, 2 for valence/arousal, UMAP after PCA). Layers with at most ``max_features``
values per sample (4,096) are kept as they are. A larger layer is not kept: its exact
principal components come from the N x N Gram matrix of the flattened, centred rows
(K = X X^T, double-centred; its eigenvectors times the square roots of its eigenvalues are
the PC scores, the same as PCA of X up to sign), and the layer is stored as its first
``n_components`` (50) PC scores. Every probe starts with a PCA of at most 50 components,
which on those scores gives back the same components, so nothing the probes read is lost;
:meth:`Embeddings.variance_share` keeps the stored share of the layer's total variance so
that explained-variance figures stay exact. The Gram matrix is accumulated batch by batch:
the big layers of a *group* of samples are held (``memory_mb`` in all, 1,024 by default;
on the GPU when the model is there) and multiplied with every batch of the same and later
groups, one pass over the probe set per group, so memory is bounded whatever the layer
size (``benchmarks/bench_probe_memory.py`` measures it on a 96 px network). A one-shot
iterable of batches is replayed from its inputs, which are kept for that. ``big="pool"``
keeps the first version's rule instead (adaptive average pooling to a g x g grid with
C*g*g <= ``max_features``), cheaper and lossy.

**Names.** By default, every layer of ``model.tap_layers()``; on paper 004's light CNN its
Keras names (``fer_analysis.layers``: ``conv2d_n`` post-ELU, ``out_layer`` the softmax).
The pseudo-layer ``input`` (only when named) is the network's input images, flattened: paper
004's Fig. 3a-b maps the faces themselves.

**Aliases.** A module that returns its input object (eval-mode Dropout, Flatten of a flat
tensor) would duplicate the layer before it. With the default layers, of such a run of
identical outputs only the *last* name is kept (so Keras-style names like paper 004's
``dropout_4`` survive); a tap whose output is the model's logits becomes the output layer
and no separate ``logits`` pseudo-layer is added.

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
from fer_analysis.probeset import thumbnails
from fer_models.errors import ConfigError

OUTPUT_LAYER = "logits"  # pseudo-layer: the network's class scores (paper 004's "out_layer")
INPUT_LAYER = "input"  # pseudo-layer: the images themselves (paper 004 Fig. 3a-b), only when named


BIG = ("pca", "pool")


@dataclass
class Embeddings:
    """Per-layer activations of N samples and their labels (row i is the same sample everywhere)."""

    layers: dict[str, np.ndarray]  # name -> (N, D) float32, in network order
    label: np.ndarray  # (N,) int64 expression, project order
    identity: np.ndarray  # (N,) int64, -1 unknown
    valence: np.ndarray  # (N,) float32, NaN unknown
    arousal: np.ndarray  # (N,) float32, NaN unknown
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)  # per-sample activation shape
    pooled: dict[str, bool] = field(default_factory=dict)  # whether the layer is stored reduced (PCA or pooling)
    output_layer: str = OUTPUT_LAYER  # the layer holding the class scores (a tap, or the pseudo-layer)
    dropped: list[str] = field(default_factory=list)  # default taps dropped as aliases of the next one
    reduced: dict[str, str] = field(default_factory=dict)  # "raw", "pca" (exact PC scores) or "pool"
    total_variance: dict[str, float] = field(default_factory=dict)  # of the flattened layer, where reduced by PCA
    images: np.ndarray | None = None  # (N, h, w, C) uint8 pictures of the inputs (``thumbnails``), for face strips

    @property
    def n(self) -> int:
        return int(self.label.shape[0])

    @property
    def names(self) -> list[str]:
        return list(self.layers)

    def penultimate(self) -> str:
        """The last tapped layer before the output (paper 004, Study 4)."""
        names = [n for n in self.layers if n not in (OUTPUT_LAYER, self.output_layer, INPUT_LAYER)]
        if not names:
            raise ConfigError("the embeddings hold no layer besides the output; tap at least one layer")
        return names[-1]

    def variance_share(self, name: str) -> float:
        """The share of the layer's total variance its stored rows hold (1 unless reduced by
        PCA to its first components); explained-variance ratios of the rows times this are
        ratios of the whole flattened layer."""
        total = self.total_variance.get(name)
        if not total:
            return 1.0
        x = self.layers[name].astype(np.float64)
        return float(x.var(axis=0, ddof=1).sum() / total) if len(x) > 1 else 1.0

    def save(self, path: str | Path) -> None:
        arrays = {f"layer::{k}": v for k, v in self.layers.items()}
        np.savez_compressed(
            path,
            _order=np.array(list(self.layers)),
            _output=np.array(self.output_layer),
            _total_variance=np.array([self.total_variance.get(k, 0.0) for k in self.layers]),
            label=self.label,
            identity=self.identity,
            valence=self.valence,
            arousal=self.arousal,
            **({} if self.images is None else {"images": self.images}),
            **arrays,
        )

    @classmethod
    def load(cls, path: str | Path) -> "Embeddings":
        z = np.load(path, allow_pickle=False)
        layers = {str(k): z[f"layer::{k}"] for k in z["_order"]}
        out = str(z["_output"]) if "_output" in z else OUTPUT_LAYER
        tv = dict(zip(layers, z["_total_variance"].tolist())) if "_total_variance" in z else {}
        return cls(layers, z["label"], z["identity"], z["valence"], z["arousal"], output_layer=out,
                   total_variance={k: v for k, v in tv.items() if v}, images=z["images"] if "images" in z else None)


def grid_size(channels: int, h: int, w: int, max_features: int) -> int | None:
    """The pooling grid g of ``big="pool"``, or None when the map is flattened as is."""
    if channels * h * w <= max_features:
        return None
    g = int(math.isqrt(max(max_features // max(channels, 1), 1)))
    return max(1, min(g, h, w))


def pool_activation(a: torch.Tensor, max_features: int) -> tuple[torch.Tensor, bool]:
    """(B, ...) activation -> (B, D) by the pooling rule of ``big="pool"``; returns (rows, pooled)."""
    a = a.detach()
    if a.ndim == 4:
        g = grid_size(a.shape[1], a.shape[2], a.shape[3], max_features)
        if g is not None:
            return torch.nn.functional.adaptive_avg_pool2d(a.float(), g).flatten(1), True
        return a.float().flatten(1), False
    if a.ndim == 3 and a[0].numel() > max_features:  # (B, tokens, D)
        return a.float().mean(1), True
    return a.float().reshape(a.shape[0], -1), False


def resolve_layers(model: nn.Module, layers: Iterable[str] | None = None) -> dict[str, tuple[nn.Module, Any]]:
    """Named layers to tap, each as (module, transform of its output or None): paper 004's Keras
    names on the light CNN (``fer_analysis.layers``), else all of ``model.tap_layers()`` (its
    top-level children for a model without them); or the ``layers`` named
    (``fer_analysis.hooks.resolve_layer``: a Keras name, a tap layer or any submodule path;
    the ``logits`` pseudo-layer is not a module)."""
    from fer_analysis.layers import keras_layers

    keras = keras_layers(model) or {}
    if layers is None:
        if keras:
            return dict(keras)
        taps = dict(model.tap_layers()) if hasattr(model, "tap_layers") else dict(model.named_children())
        return {n: (m, None) for n, m in taps.items()}
    out = {}
    for name in layers:
        if name in (OUTPUT_LAYER, INPUT_LAYER):
            continue
        out[name] = keras[name] if name in keras else (resolve_layer(model, name)[1], None)
    return out


def _col(batch: Mapping[str, Any], key: str, n: int, fill: float) -> np.ndarray:
    v = batch.get(key)
    if v is None:
        return np.full(n, fill, dtype=np.float64)
    return np.asarray(v.detach().cpu() if isinstance(v, torch.Tensor) else v, dtype=np.float64).reshape(n)


class _Gram:
    """The N x N Gram matrices of the big layers, from blocks of held x streamed rows."""

    def __init__(self, names: list[str]):
        self.names = names
        self.blocks: dict[str, list[tuple[int, int, np.ndarray]]] = {n: [] for n in names}
        self.held: dict[str, list[torch.Tensor]] = {n: [] for n in names}
        self.start = 0

    def hold(self, name: str, rows: torch.Tensor) -> None:
        self.held[name].append(rows)

    def cross(self, name: str, offset: int, rows: torch.Tensor) -> None:
        if len(self.held[name]) > 1:
            self.held[name] = [torch.cat(self.held[name])]
        h = self.held[name][0]
        self.blocks[name].append((self.start, offset, (h @ rows.T).double().cpu().numpy()))

    def close_group(self) -> None:
        for name in self.names:
            if self.held[name]:
                h = torch.cat(self.held[name])
                self.blocks[name].append((self.start, self.start, (h @ h.T).double().cpu().numpy()))
            self.held[name] = []

    def scores(self, name: str, n: int, n_components: int) -> tuple[np.ndarray, float]:
        """(first PC scores (n, k), total variance) of the layer, from its double-centred Gram."""
        k = np.zeros((n, n))
        for r0, c0, blk in self.blocks.pop(name):
            k[r0:r0 + blk.shape[0], c0:c0 + blk.shape[1]] = blk
            k[c0:c0 + blk.shape[1], r0:r0 + blk.shape[0]] = blk.T
        mean_r = k.mean(axis=0)
        k = k - mean_r[None, :] - mean_r[:, None] + mean_r.mean()
        total = float(np.trace(k) / max(n - 1, 1))
        keep = int(max(1, min(n_components, n - 1)))
        vals, vecs = np.linalg.eigh(k)
        vals, vecs = vals[::-1][:keep].clip(min=0), vecs[:, ::-1][:, :keep]
        return (vecs * np.sqrt(vals)[None, :]).astype(np.float32), total


class _Collector:
    """The state of one :func:`collect_embeddings` call, phase by phase: the first pass over the
    batches (:meth:`first_pass`: layout from the first batch, then every batch's rows and labels),
    one more pass per group of held samples for the big layers' Gram matrices
    (:meth:`more_passes`), and the result (:meth:`result`)."""

    def __init__(self, model: nn.Module, batches: Iterable[Mapping[str, Any]], layers: Iterable[str] | None, *,
                 n_samples: int | None, max_features: int, big: str, n_components: int, memory_mb: float,
                 include_output: bool, device: str | torch.device, thumbnails: int | None = None):
        if big not in BIG:
            raise ConfigError(f"big must be one of {', '.join(BIG)}, got '{big}'")
        views = resolve_layers(model, layers)
        if not views and not include_output:
            raise ConfigError("no layer to probe; pass layer names or keep include_output")
        self.model, self.batches, self.device = model, batches, device
        self.n_samples, self.max_features, self.big = n_samples, max_features, big
        self.n_components, self.memory_mb = n_components, memory_mb
        self.modules = {k: v[0] for k, v in views.items()}
        self.transforms = {k: v[1] for k, v in views.items() if v[1] is not None}
        self.with_input = layers is not None and INPUT_LAYER in list(layers)
        self.dedupe = layers is None
        self.replay: list[Mapping[str, Any]] | None = [] if iter(batches) is batches else None
        names = ([INPUT_LAYER] if self.with_input else []) + list(self.modules)
        self.feats: dict[str, list[np.ndarray]] = {k: [] for k in names}
        if include_output:
            self.feats[OUTPUT_LAYER] = []
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.reduced: dict[str, str] = {}
        self.output_layer, self.dropped = OUTPUT_LAYER, []
        self.cols: dict[str, list[np.ndarray]] = {"label": [], "identity": [], "valence": [], "arousal": []}
        self.gram: _Gram | None = None
        self.group = 0
        self.seen = 0
        self.thumbnails = thumbnails
        self.images: list[np.ndarray] = []

    def forward(self, source, start_at: int, sink):
        """(offset, take, activations by name, output, batch) of every batch holding rows >= start_at."""
        seen, n_samples = 0, self.n_samples
        for batch in source:
            x = batch["image"]
            take = x.shape[0] if n_samples is None else min(x.shape[0], n_samples - seen)
            if take <= 0:
                break
            if self.replay is not None and source is not self.replay:
                self.replay.append(batch)
            if seen + take > start_at:
                sink.clear()
                xin = x[:take].to(self.device)
                out = self.model(xin)
                acts = dict(sink)
                if self.with_input:
                    acts[INPUT_LAYER] = xin
                yield seen, take, acts, out, batch
            seen += take
            if n_samples is not None and seen >= n_samples:
                break

    def rows_of(self, name: str, acts: dict[str, torch.Tensor]) -> torch.Tensor:
        a = acts[name]
        if name in self.transforms:
            a = self.transforms[name](a)
        return a.detach().float().reshape(a.shape[0], -1)

    def layout(self, acts: dict[str, torch.Tensor], o: torch.Tensor | None) -> None:
        """From the first batch: aliases and the output layer, each layer's shape and how it is
        stored (raw, pooled or by its exact PCs), and the group size of the Gram passes."""
        self.output_layer, self.dropped = _aliases(list(self.modules), acts, o, dedupe=self.dedupe)
        for name in self.dropped:
            self.feats.pop(name, None)
        if self.output_layer != OUTPUT_LAYER:
            self.feats.pop(OUTPUT_LAYER, None)
        if OUTPUT_LAYER in self.feats and o is None:
            raise ConfigError("the model output has no logits; pass include_output=False")
        for name in self.feats:
            if name != OUTPUT_LAYER and name not in acts:
                raise ConfigError(f"layer '{name}' did not run in the forward pass; choose another layer")
            a = o if name == OUTPUT_LAYER else acts[name]
            self.shapes[name] = tuple(a.shape[1:])
            too_big = int(np.prod(self.shapes[name])) > self.max_features
            self.reduced[name] = "raw" if not too_big else self.big
        big_names = [n for n in self.feats if self.reduced[n] == "pca"]
        if big_names:
            self.gram = _Gram(big_names)
            per_sample = 4 * sum(int(np.prod(self.shapes[n])) for n in big_names)
            self.group = max(1, int(self.memory_mb * 2**20) // per_sample)

    def store(self, offset: int, take: int, acts: dict[str, torch.Tensor], batch: Mapping[str, Any]) -> None:
        """Keep one batch's rows of every layer (the big ones into the Gram blocks) and its labels."""
        for name in self.feats:
            if self.reduced[name] == "pool":
                a = acts[name]
                a = self.transforms[name](a) if name in self.transforms else a
                self.feats[name].append(pool_activation(a, self.max_features)[0].cpu().numpy().astype(np.float32))
            elif self.reduced[name] == "raw":
                self.feats[name].append(self.rows_of(name, acts).cpu().numpy().astype(np.float32))
            else:  # exact PCA: hold the first group, multiply the rest with it
                r = self.rows_of(name, acts)
                split = max(0, min(take, self.group - offset))
                if split:
                    self.gram.hold(name, r[:split])
                if split < take:
                    self.gram.cross(name, offset + split, r[split:])
        n = batch["image"].shape[0]
        if self.thumbnails:
            self.images.append(thumbnails(batch["image"][:take], self.thumbnails))
        # the expression: an "expression" column where the batches carry one (identity runs)
        self.cols["label"].append(_col(batch, "expression" if "expression" in batch else "label", n, -1)[:take])
        self.cols["identity"].append(_col(batch, "identity", n, -1)[:take])
        self.cols["valence"].append(_col(batch, "valence", n, np.nan)[:take])
        self.cols["arousal"].append(_col(batch, "arousal", n, np.nan)[:take])

    def first_pass(self, batches: Iterable[Mapping[str, Any]]) -> None:
        with capture(self.modules, detach=False) as sink:
            for offset, take, acts, out, batch in self.forward(batches, 0, sink):
                o = first_tensor(out)
                if offset == 0:
                    self.layout(acts, o)
                if OUTPUT_LAYER in self.feats:
                    acts[OUTPUT_LAYER] = o
                self.store(offset, take, acts, batch)
                self.seen += take
        if self.seen == 0:
            raise ConfigError("the probe set is empty; check the dataset and split")

    def more_passes(self) -> None:
        """The Gram blocks of the big layers beyond the first group: one pass per group."""
        gram = self.gram
        if gram is None:
            return
        gram.close_group()
        big_modules = {n: self.modules[n] for n in gram.names if n != INPUT_LAYER}
        for start in range(self.group, self.seen, self.group):
            gram.start = start
            source = self.replay if self.replay is not None else self.batches
            with capture(big_modules, detach=False) as sink:
                for offset, take, acts, _, _ in self.forward(source, start, sink):
                    for name in gram.names:
                        r = self.rows_of(name, acts)
                        lo = max(0, start - offset)
                        split = max(lo, min(take, start + self.group - offset))
                        if split > lo:
                            gram.hold(name, r[lo:split])
                        if split < take:
                            gram.cross(name, offset + split, r[split:])
            gram.close_group()

    def result(self) -> Embeddings:
        layers_out: dict[str, np.ndarray] = {}
        total_variance: dict[str, float] = {}
        for name in self.feats:
            if self.reduced[name] == "pca":
                layers_out[name], total_variance[name] = self.gram.scores(name, self.seen, self.n_components)
            else:
                layers_out[name] = np.concatenate(self.feats[name])
        reduced = {k: v for k, v in self.reduced.items() if k in self.feats}
        return Embeddings(
            layers=layers_out,
            label=np.concatenate(self.cols["label"]).astype(np.int64),
            identity=np.concatenate(self.cols["identity"]).astype(np.int64),
            valence=np.concatenate(self.cols["valence"]).astype(np.float32),
            arousal=np.concatenate(self.cols["arousal"]).astype(np.float32),
            shapes=self.shapes,
            pooled={k: v != "raw" for k, v in reduced.items()},
            output_layer=self.output_layer,
            dropped=self.dropped,
            reduced=reduced,
            total_variance=total_variance,
            images=np.concatenate(self.images) if self.images else None,
        )


@torch.no_grad()
def collect_embeddings(
    model: nn.Module,
    batches: Iterable[Mapping[str, Any]],
    layers: Iterable[str] | None = None,
    *,
    n_samples: int | None = None,
    max_features: int = 4096,
    big: str = "pca",
    n_components: int = 50,
    memory_mb: float = 1024,
    include_output: bool = True,
    device: str | torch.device = "cpu",
    progress: bool = False,
    thumbnails: int | None = None,
) -> Embeddings:
    """Run ``batches`` (dicts with ``image``, ``label`` and optionally ``identity``,
    ``valence``, ``arousal``, as fer_models' FaceDataset yields) through ``model`` in eval
    mode and return each tapped layer's activations: flattened, or for layers above
    ``max_features`` values their exact first ``n_components`` PC scores (``big="pca"``) or
    a pooled grid (``big="pool"``); see the module docstring. ``include_output`` adds the
    class scores as the pseudo-layer ``logits`` unless a tap is the output. ``thumbnails``
    (a size in pixels) keeps a small picture of every input (``Embeddings.images``). The
    model's train/eval mode is restored afterwards.
    """
    c = _Collector(model, batches, layers, n_samples=n_samples, max_features=max_features, big=big,
                   n_components=n_components, memory_mb=memory_mb, include_output=include_output, device=device,
                   thumbnails=thumbnails)
    was_training = model.training
    model.eval()
    try:
        it = batches
        if progress:
            from tqdm.auto import tqdm

            it = tqdm(batches, desc="embeddings", unit="batch", leave=False)
        c.first_pass(it)
        c.more_passes()
    finally:
        model.train(was_training)
    return c.result()


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
