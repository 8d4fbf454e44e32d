"""Image loading shared by readers (``verify=True``), preprocessing and the analysis jobs.

Every image a reader lists is a real file on disk: datasets that ship pixels inside a
table (FER2013's CSV, TFD's ``.mat``) are written once to PNG files under
``fer_models.paths.cache_dir()`` by their reader (:func:`write_png_cache`), so nothing
downstream needs to know about ``file.csv#row=N`` style pseudo-paths.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, UnidentifiedImageError

from fer_models.errors import FerOrchError


class UnreadableImage(FerOrchError):
    """An image file is missing or cannot be decoded (callers count it as a skip)."""


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Decode ``path`` to an ``(H, W, 3)`` uint8 RGB array.

    Grayscale (CK+, FER2013, TFD) and RGBA/palette images are converted to RGB. A missing,
    truncated or otherwise undecodable file raises :class:`UnreadableImage`.
    """
    p = Path(path)
    try:
        with warnings.catch_warnings():
            # a header announcing more than Pillow's MAX_IMAGE_PIXELS (89 M) is refused, not
            # decoded (hundreds of MiB for one face; Pillow only warns up to twice that)
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(p) as im:
                im.load()  # decode fully now: a truncated JPEG fails here, not later
                arr = _to_rgb8(im)
    except FileNotFoundError as e:
        raise UnreadableImage(f"image {p} does not exist; check the dataset root") from e
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError,
            Image.DecompressionBombWarning, MemoryError) as e:
        raise UnreadableImage(f"image {p} cannot be decoded ({type(e).__name__}: {e}); re-extract or remove it") from e
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise UnreadableImage(f"image {p} decoded to shape {arr.shape}, not (H, W, 3); replace it")
    return arr


def _to_rgb8(im: Image.Image) -> np.ndarray:
    """``im`` as 8-bit RGB. Pillow's ``convert("RGB")`` clips a 16-bit grayscale PNG (mode
    ``I;16``) or a 32-bit integer / float image to 255, i.e. pure white: those keep their
    contrast here, scaled from their bit depth (16-bit: the high byte; float: 0..1)."""
    if im.mode.startswith("I;16") or im.mode in ("I", "F"):
        a = np.asarray(im).astype(np.float64)
        if im.mode == "F":
            top = 1.0 if np.nanmax(a, initial=0.0) <= 1.0 else 255.0
        else:
            top = 65535.0 if im.mode.startswith("I;16") or np.max(a, initial=0) > 255 else 255.0
        gray = np.clip(np.nan_to_num(a / top * 255.0), 0, 255).round().astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    return np.asarray(im.convert("RGB"), dtype=np.uint8)


def is_readable(path: str | os.PathLike) -> bool:
    """True when :func:`load_image` would succeed."""
    try:
        load_image(path)
    except UnreadableImage:
        return False
    return True


def source_fingerprint(path: Path, **extra) -> str:
    """A short key for a source file: resolved path, size, mtime and ``extra`` options."""
    st = path.stat()
    blob = json.dumps(
        {"path": str(path.resolve()), "size": st.st_size, "mtime": int(st.st_mtime), **extra},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def write_png_cache(
    folder: Path,
    names: list[str],
    pixels: Callable[[int], np.ndarray],
    *,
    desc: str = "writing images",
) -> list[Path]:
    """Write ``pixels(i)`` (an (H, W) or (H, W, 3) uint8 array) to ``folder/names[i]`` as PNG, once.

    A ``.complete`` marker records that the folder is whole; when present the images are
    not written again. The folder is filled in place (image files are independent and each
    is written to a temporary name first, then renamed), so an interrupted run resumes.
    """
    from tqdm import tqdm

    paths = [folder / n for n in names]
    if png_cache_complete(folder, len(names)):
        return paths
    folder.mkdir(parents=True, exist_ok=True)
    for i, p in enumerate(tqdm(paths, desc=desc, unit="img", leave=False, mininterval=1.0, delay=1.0)):
        if p.exists():
            continue
        arr = np.asarray(pixels(i), dtype=np.uint8)
        tmp = p.with_name(p.name + ".tmp")
        Image.fromarray(arr).save(tmp, format="PNG")
        os.replace(tmp, p)
    (folder / ".complete").write_text(str(len(names)))
    return paths


def png_cache_complete(folder: Path, n: int | None = None) -> bool:
    """True when :func:`write_png_cache` finished ``folder`` (with ``n`` images, if given)."""
    marker = folder / ".complete"
    if not marker.is_file():
        return False
    return n is None or marker.read_text().strip() == str(n)

