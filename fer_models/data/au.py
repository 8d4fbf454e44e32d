"""AU codebook and spatial AU maps (paper 002, Sec. 3.2 and Fig. 2).

The *codebook* (which AUs make which expression, after Martinez et al. [51] of paper 002)
is data: one CSV per variant in ``fer_models/data/codebooks/`` (columns ``expression,aus``,
AU numbers separated by spaces), each registered in ``CODEBOOKS`` under its file stem when
this module is imported:

- ``paper002``: the table of Fig. 2;
- ``paper002-released``: the paper's released code, which draws AU5 instead of AU10 for
  disgust (kept so that its numbers can be reproduced).

Each AU has a *location rule* (:data:`AU_RULES`, :mod:`fer_models.data.au_rules`): one or two
landmark-based centres and an elliptic Gaussian footprint in the face's own frame.

A map is ``max`` over the requested AUs (and their centres) of ``weight * footprint``,
then normalised to peak 1 (paper 002: ``A in [0, 1]^{h x w}``). Neutral has no AU in the
codebook: its map is undefined, :func:`expression_au_maps` returns zeros with
``valid=False``, and the alignment loss and the localisation metrics skip such samples.
Missing landmarks (any NaN) give the same ``valid=False``.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from fer_models.data.au_released import RELEASED_DRAWING, released_au_maps
from fer_models.data.au_rules import AU_RULES, L_EYE, R_EYE, _compile_rules, face_frame  # noqa: F401 (public here too)
from fer_models.errors import ConfigError
from fer_models.labels import EXPRESSIONS, INDEX
from fer_models.registry import CODEBOOKS

CODEBOOK_DIR = Path(__file__).with_name("codebooks")

@dataclass(frozen=True)
class Codebook:
    """Expression -> AUs table (paper 002, Fig. 2); labels in the project's order."""

    name: str
    aus_per_label: dict[int, tuple[int, ...]]

    def aus(self, label: int) -> tuple[int, ...]:
        return self.aus_per_label.get(int(label), ())

    def weights(self, labels: Sequence[int] | np.ndarray) -> np.ndarray:
        """Binary AU weights (B, len(AU_IDS)) for ``labels``: 1 where the codebook lists the AU."""
        table = np.zeros((len(EXPRESSIONS), len(AU_IDS)), np.float32)
        for label, aus in self.aus_per_label.items():
            for au in aus:
                table[label, AU_INDEX[au]] = 1.0
        labels = np.asarray(labels, dtype=np.int64)
        if labels.size and (labels.min() < 0 or labels.max() >= len(EXPRESSIONS)):
            raise ConfigError(
                f"expression labels must lie in 0..{len(EXPRESSIONS) - 1} (fer_models.labels), "
                f"got {labels.min()}..{labels.max()}; map the dataset's ids with its reader"
            )
        return table[labels]


def load_codebook(path: str | Path) -> Codebook:
    """Read a codebook CSV (``expression,aus``); unknown expressions or AUs are errors."""
    path = Path(path)
    table: dict[int, tuple[int, ...]] = {}
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            expr = (row.get("expression") or "").strip().lower()
            if expr not in INDEX:
                raise ConfigError(
                    f"codebook {path.name} names expression '{expr}'; use one of {', '.join(EXPRESSIONS)}"
                )
            try:
                aus = tuple(int(a) for a in (row.get("aus") or "").split())
            except ValueError:
                raise ConfigError(
                    f"codebook {path.name}: AUs of '{expr}' must be numbers separated by spaces"
                ) from None
            missing = [a for a in aus if a not in AU_RULES]
            if missing:
                raise ConfigError(
                    f"codebook {path.name} uses AU{missing[0]}, which has no location rule; "
                    f"add it to fer_models.data.au.AU_RULES"
                )
            table[INDEX[expr]] = aus
    return Codebook(path.stem, table)


def _load_all() -> dict[str, Codebook]:
    return {p.stem: load_codebook(p) for p in sorted(CODEBOOK_DIR.glob("*.csv"))}


_CODEBOOKS = _load_all()
AU_IDS: tuple[int, ...] = tuple(
    sorted({a for cb in _CODEBOOKS.values() for aus in cb.aus_per_label.values() for a in aus})
)
AU_INDEX: dict[int, int] = {au: i for i, au in enumerate(AU_IDS)}
_DESCRIPTIONS = {
    "paper002": "paper 002, Fig. 2 (Martinez et al.)",
    "paper002-released": "paper 002's released code: AU5 instead of AU10 for disgust",
}
for _name, _cb in _CODEBOOKS.items():
    if _name not in CODEBOOKS:
        CODEBOOKS.register(_name, description=_DESCRIPTIONS.get(_name, f"codebook {_name}.csv"))(_cb)


def get_codebook(name_or_codebook: str | Codebook) -> Codebook:
    if isinstance(name_or_codebook, Codebook):
        return name_or_codebook
    return CODEBOOKS.get(name_or_codebook)


_W, _OFF, _SIG = _compile_rules(AU_IDS)


def au_centres(landmarks: np.ndarray, au_ids: Sequence[int] = AU_IDS):
    """Centres (B, n_au, k, 2) in pixels, and per-AU sigmas (B, n_au, 2) in pixels."""
    if tuple(au_ids) == AU_IDS:
        w, off, sig = _W, _OFF, _SIG
    else:
        w, off, sig = _compile_rules(au_ids)
    lm = np.asarray(landmarks, np.float64)
    iod, ex, ey = face_frame(lm)
    base = np.matmul(w.reshape(-1, 68), lm).reshape(len(lm), *w.shape[:2], 2)
    shift = off[None, ..., :1] * ex[:, None, None] + off[None, ..., 1:] * ey[:, None, None]
    centres = base + shift * iod[:, None, None, None]
    sigmas = sig[None] * iod[:, None, None]
    return centres, sigmas, ex, ey


def _grid(image_hw: tuple[int, int], out_size: int):
    """Pixel-centre coordinates of the ``out_size`` x ``out_size`` map cells, in image pixels
    (landmark convention: pixel ``i`` has its centre at coordinate ``i``)."""
    h, w = image_hw
    gx = (np.arange(out_size) + 0.5) * (w / out_size) - 0.5
    gy = (np.arange(out_size) + 0.5) * (h / out_size) - 0.5
    return gx, gy


def _check(landmarks, weights):
    lm = np.asarray(landmarks, np.float64)
    wt = np.asarray(weights, np.float64)
    if lm.ndim != 3 or lm.shape[1:] != (68, 2):
        raise ConfigError(f"landmarks must have shape (B, 68, 2), got {lm.shape}")
    if wt.shape != (lm.shape[0], len(AU_IDS)):
        raise ConfigError(
            f"AU weights must have shape (B, {len(AU_IDS)}) ordered as au.AU_IDS, got {wt.shape}"
        )
    return lm, wt


def render_au_maps(
    landmarks: np.ndarray,
    weights: np.ndarray,
    image_hw: tuple[int, int],
    out_size: int,
    *,
    chunk_elems: int = 1_000_000,
) -> np.ndarray:
    """AU maps (B, out_size, out_size) float32 in [0, 1], vectorised over images and AUs.

    ``weights[b, a]`` scales AU ``AU_IDS[a]`` (binary for a codebook map, intensities for a
    ground-truth map). All present (image, AU, centre) footprints are stacked into one
    (B, R, S, S) tensor of ``log w - q/2`` (``R`` = the most footprints of any image, the
    others padded with ``log w = -inf``; ``q`` the elliptic quadratic form, built from the
    separable terms ``dx^2``, ``dy^2`` and the cross term ``dx dy`` by broadcasting),
    reduced by ``max`` over R, and exponentiated once per cell:
    ``max_a w_a g_a = exp(max_a (log w_a - q_a / 2))``. Images are processed in chunks of at
    most ``chunk_elems`` tensor elements. Each map is divided by its peak; all-zero weights
    or NaN landmarks give a zero map.
    """
    lm, wt = _check(landmarks, weights)
    b = lm.shape[0]
    out = np.zeros((b, out_size, out_size), np.float32)
    ok = np.isfinite(lm).all(axis=(1, 2)) & np.isfinite(wt).all(1) & (wt > 0).any(1)
    if not ok.any():
        return out
    idx = np.flatnonzero(ok)
    gx, gy = (g.astype(np.float32) for g in _grid(image_hw, out_size))
    centres, sigmas, ex, ey = au_centres(lm[idx])  # (n, A, k, 2), (n, A, 2), (n, 2), (n, 2)
    n_img, _, k = centres.shape[:3]
    present = wt[idx] > 0
    bi, ai = np.nonzero(present)  # present AUs, sorted by image
    # inverse covariance of each footprint in image axes: R diag(1/sx^2, 1/sy^2) R^T
    isx, isy = 1.0 / sigmas[bi, ai, 0] ** 2, 1.0 / sigmas[bi, ai, 1] ** 2
    e, f = ex[bi], ey[bi]
    coef = np.stack([
        np.log(wt[idx][bi, ai]),
        e[:, 0] ** 2 * isx + f[:, 0] ** 2 * isy,  # a11 (x x)
        e[:, 1] ** 2 * isx + f[:, 1] ** 2 * isy,  # a22 (y y)
        e[:, 0] * e[:, 1] * isx + f[:, 0] * f[:, 1] * isy,  # a12 (x y)
    ], -1)
    # pack the rows (image, AU, centre) densely per image, padding with log w = -inf
    per_img = present.sum(1) * k
    r_max = int(per_img.max())
    rows_img = np.repeat(bi, k)
    slot = np.arange(len(rows_img)) - np.repeat(np.cumsum(per_img) - per_img, per_img)
    dense = np.zeros((n_img, r_max, 6), np.float32)
    dense[..., 0] = -np.inf
    dense[rows_img, slot, :4] = np.repeat(coef, k, axis=0)
    dense[rows_img, slot, 4:] = centres[bi, ai].reshape(-1, 2)
    order = np.argsort(per_img, kind="stable")  # chunks of images with similar row counts
    s = 0
    while s < n_img:
        r = int(per_img[order[min(n_img, s + 1) - 1]])
        step = max(1, chunk_elems // (max(r, 1) * out_size * out_size))
        sel = order[s : s + step]
        r = int(per_img[sel].max())
        d = dense[sel, :r]
        logw, a11, a22, a12 = (d[..., i, None] for i in range(4))
        dx = gx - d[..., 4, None]  # (n, r, S) along x
        dy = gy - d[..., 5, None]  # (n, r, S) along y
        row_x = logw - 0.5 * a11 * dx * dx
        col_y = 0.5 * a22 * dy * dy
        val = row_x[..., None, :] - col_y[..., :, None]
        val -= (a12 * dy)[..., :, None] * dx[..., None, :]
        m = np.exp(val.max(axis=1))  # (n, S, S)
        m /= np.maximum(m.max(axis=(1, 2), keepdims=True), 1e-30)
        out[idx[sel]] = m
        s += step
    return out


def render_au_maps_naive(
    landmarks: np.ndarray, weights: np.ndarray, image_hw: tuple[int, int], out_size: int
) -> np.ndarray:
    """Reference renderer: one image, one AU, one centre at a time (a drawing loop).

    Same maths as :func:`render_au_maps`; kept for the equivalence test and the benchmark.
    """
    lm, wt = _check(landmarks, weights)
    out = np.zeros((lm.shape[0], out_size, out_size), np.float32)
    gx, gy = _grid(image_hw, out_size)
    xx, yy = np.meshgrid(gx, gy)
    for b in range(lm.shape[0]):
        if not np.isfinite(lm[b]).all() or not np.isfinite(wt[b]).all():
            continue
        pts = lm[b]
        right, left = pts[list(R_EYE)].mean(0), pts[list(L_EYE)].mean(0)
        iod = float(np.hypot(*(left - right)))
        ex = (left - right) / max(iod, 1e-9)
        ey = np.array([-ex[1], ex[0]])
        m = np.zeros((out_size, out_size))
        for a, au in enumerate(AU_IDS):
            if wt[b, a] <= 0:
                continue
            _, centres, (sx, sy) = AU_RULES[au]
            for idxw, (ox, oy) in centres:
                c = sum(wgt * pts[i] for i, wgt in idxw.items())
                c = c + iod * (ox * ex + oy * ey)
                u = (xx - c[0]) * ex[0] + (yy - c[1]) * ex[1]
                v = (xx - c[0]) * ey[0] + (yy - c[1]) * ey[1]
                g = wt[b, a] * np.exp(-0.5 * ((u / (sx * iod)) ** 2 + (v / (sy * iod)) ** 2))
                m = np.maximum(m, g)
        if m.max() > 0:
            out[b] = m / m.max()
    return out


def expression_au_maps(
    landmarks: np.ndarray,
    labels: Sequence[int] | np.ndarray,
    codebook: str | Codebook,
    image_hw: tuple[int, int],
    out_size: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Codebook AU maps of the labelled expressions: ``(maps (B, S, S) float32, valid (B,) bool)``.

    ``valid`` is False where the map is undefined — neutral (and any label without AUs in
    the codebook, e.g. contempt) or missing landmarks (NaN) — and such maps are zeros; the
    alignment loss and the localisation metrics skip them. ``paper002-released``: the released drawing.
    """
    lm = np.asarray(landmarks, np.float64)
    cb = get_codebook(codebook)
    weights = cb.weights(labels)
    if cb.name in RELEASED_DRAWING:  # the released code's filled ellipses (fer_models.data.au_released)
        return released_au_maps(lm, [cb.aus(int(y)) for y in np.asarray(labels).reshape(-1)], image_hw, out_size)
    maps = render_au_maps(lm, weights, image_hw, out_size)
    valid = np.isfinite(lm).all(axis=(1, 2)) & (weights > 0).any(1)
    maps[~valid] = 0.0
    return maps, valid


def aus_to_vector(aus: Mapping[int, float] | None, au_ids: Sequence[int] = AU_IDS) -> np.ndarray:
    """``{au: intensity}`` -> (len(au_ids),) float32 over ``au_ids`` (default the codebooks'
    ``AU_IDS``); an AU of ``au_ids`` the dict does not name is 0 (absent), one outside
    ``au_ids`` is left out; NaN everywhere if None (no AU labels)."""
    index = AU_INDEX if tuple(au_ids) == AU_IDS else {int(a): i for i, a in enumerate(au_ids)}
    vec = np.full(len(index), np.nan if aus is None else 0.0, np.float32)
    for au, v in (aus or {}).items():
        if int(au) in index:
            vec[index[int(au)]] = float(v)
    return vec


def drawable_aus(aus: np.ndarray, au_ids: Sequence[int]) -> np.ndarray:
    """Intensities (B, len(au_ids)) over a dataset's AU columns -> (B, len(AU_IDS)) over the
    AUs the maps can draw (those with a location rule that the codebooks use).

    The cache keeps every AU a dataset labels (CK+'s AU11, 14, 43, ...: the filter-AU analysis
    tests them); the maps draw only ``AU_IDS``. A codebook AU the dataset does not label is 0
    (absent) in a row with labels; a row without labels (any NaN, or no AU column at all)
    stays NaN everywhere."""
    aus = np.asarray(aus, np.float32).reshape(-1, len(au_ids))
    if tuple(int(a) for a in au_ids) == AU_IDS:
        return aus
    known = np.isfinite(aus).all(1) & (aus.shape[1] > 0)
    out = np.zeros((len(aus), len(AU_IDS)), np.float32)
    for j, a in enumerate(au_ids):
        if int(a) in AU_INDEX:
            out[:, AU_INDEX[int(a)]] = aus[:, j]
    out[~known] = np.nan
    return out


# ----------------------------------------------------------------------------- AU sources
# Where the training map's AUs come from (``DataConfig.au_source``; paper 002, Sec. 2: "use
# active AUs to build an ideal interpretable model ... alternatively, a pretrained AU detector
# could be used"). The location rules and the renderer are the same for every source; only
# the per-image AU weights differ.
CODEBOOK, LABELS, CODEBOOK_AND_LABELS = "codebook", "labels", "codebook+labels"
AU_SOURCES: tuple[str, ...] = (CODEBOOK, LABELS, CODEBOOK_AND_LABELS)  # plus "detector:NAME"
DETECTOR_PREFIX = "detector:"
#: ``src_origin`` of a row (cache column): the source's own map, the codebook map used instead
#: because the image has no AU labels, or no map (labels known, no active AU with a location rule)
SRC_MAP, SRC_FALLBACK, SRC_EMPTY = 0, 1, 2
SRC_ORIGINS = {SRC_MAP: "map", SRC_FALLBACK: "fallback", SRC_EMPTY: "empty"}


def parse_au_source(value: str | None) -> str:
    """The canonical spelling of an AU source, or one ``ConfigError`` listing the valid ones.

    ``codebook`` (paper 002), ``labels``, ``codebook+labels`` (also written ``codebook∩labels``,
    ``codebook&labels`` or ``labels+codebook``: the codebook's AUs that the image's labels say
    are active) and ``detector:NAME`` (an ``AU_DETECTORS`` entry; the name is checked when the
    cache is resolved, where the registry is loaded).
    """
    text = CODEBOOK if value is None else str(value).strip().lower()
    if text.startswith(DETECTOR_PREFIX) and text[len(DETECTOR_PREFIX):].strip():
        return DETECTOR_PREFIX + text[len(DETECTOR_PREFIX):].strip()
    for sep in ("∩", "&", " and "):
        text = text.replace(sep, "+")
    parts = [p.strip() for p in text.split("+") if p.strip()]
    if sorted(parts) == [CODEBOOK, LABELS]:
        return CODEBOOK_AND_LABELS
    if len(parts) == 1 and parts[0] in (CODEBOOK, LABELS):
        return parts[0]
    raise ConfigError(
        f"unknown AU source '{value}'; use codebook, labels, codebook+labels (= codebook∩labels) "
        f"or detector:NAME (see `fer-orch list au-detectors`)"
    )


def detector_name(source: str) -> str | None:
    """``"detector:NAME"`` -> ``NAME``; None for the other sources."""
    source = parse_au_source(source)
    return source[len(DETECTOR_PREFIX):] if source.startswith(DETECTOR_PREFIX) else None


def source_weights(
    labels: Sequence[int] | np.ndarray,
    aus: np.ndarray,
    codebook: str | Codebook,
    source: str,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-image AU weights of ``source`` (B, len(AU_IDS)) and each row's origin (B,) int8.

    ``aus``: (B, len(AU_IDS)) AU intensities (``aus_to_vector`` order; a row of NaN = the image
    has no AU labels; for ``detector:NAME`` the detector's thresholded predictions). An AU is
    active when its intensity is > 0, and it is drawn with its intensity as weight (a faint AU
    faint; the renderer normalises each map to peak 1, so only ratios within an image matter).

    - ``codebook``: the expression's AUs, weight 1 (paper 002); origin ``SRC_MAP``.
    - ``labels`` / ``detector:NAME``: every active AU.
    - ``codebook+labels``: the expression's codebook AUs that are active (paper 002, Sec. 2:
      "not all AUs must be active").

    The rule for an image without AU labels: it falls back to the codebook map (origin
    ``SRC_FALLBACK``), so a dataset with partial labels keeps its AU guidance where it has no
    labels, and the fallbacks are counted (cache ``meta.json`` ``au_source``, the trial's
    ``data_au_fallback_rate``). Labels with no active AU (a neutral face; an expression shown
    without any of its codebook AUs) give no map (origin ``SRC_EMPTY``; the loss skips the row,
    as it skips neutral under the codebook).
    """
    source = parse_au_source(source)
    cb = get_codebook(codebook).weights(labels)
    origin = np.full(len(cb), SRC_MAP, np.int8)
    if source == CODEBOOK:
        return cb, origin
    aus = np.asarray(aus, np.float32).reshape(len(cb), len(AU_IDS))
    known = np.isfinite(aus).all(1)
    active = np.where(known[:, None], np.clip(np.nan_to_num(aus), 0.0, None), 0.0).astype(np.float32)
    weights = active * (cb > 0) if source == CODEBOOK_AND_LABELS else active
    weights[~known] = cb[~known]
    origin[~known] = SRC_FALLBACK
    origin[known & ~(weights > 0).any(1)] = SRC_EMPTY
    return weights.astype(np.float32), origin


def source_au_maps(
    landmarks: np.ndarray,
    labels: Sequence[int] | np.ndarray,
    aus: np.ndarray,
    codebook: str | Codebook,
    source: str,
    image_hw: tuple[int, int],
    out_size: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AU maps of ``source`` (see :func:`source_weights`): ``(maps (B, S, S), valid (B,), origin (B,))``.

    Rendered by :func:`render_au_maps` (the renderer of the codebook and ground-truth maps);
    ``valid`` False where the weights are all zero or the landmarks are missing (NaN).
    ``source="codebook"`` gives :func:`expression_au_maps`'s maps.
    """
    lm = np.asarray(landmarks, np.float64)
    weights, origin = source_weights(labels, aus, codebook, source)
    maps = render_au_maps(lm, weights, image_hw, out_size)
    valid = np.isfinite(lm).all(axis=(1, 2)) & (weights > 0).any(1)
    maps[~valid] = 0.0
    return maps, valid, origin
