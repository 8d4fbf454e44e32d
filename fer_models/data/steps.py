"""The augmentation step vocabulary of ``DataConfig.augment`` and ``DataConfig.eval_steps``.

Pure Python (no torch), so that reading a config stays light; the steps are carried out by
:mod:`fer_models.data.augment` (kornia, on the training device). A step is ``name:args``,
sizes in pixels:

geometric (the image, ``au_map``, ``gt_au_map`` and ``landmarks`` move together)
  ``resize:S``              resize to S x S (bilinear, antialiased);
  ``crop:S``                random S x S crop (S <= the current size);
  ``center_crop:S``         central S x S crop;
  ``resized_crop:AMIN-AMAX[,S[,RMIN-RMAX]]``  random resized crop: area fraction in
                            [AMIN, AMAX], aspect ratio in [RMIN, RMAX] (default 3/4-4/3),
                            resized to S (default: the current size), as torchvision's
                            ``RandomResizedCrop``;
  ``flip:P``                horizontal flip with probability P;
  ``rotate:D[,P]``          rotation by an angle uniform in +-D degrees, with probability P
                            (default 1), zeros outside the image;
photometric (the image only; maps and landmarks stay as they are)
  ``jitter:B,C,S,H[,P]``    colour jitter (brightness, contrast, saturation, hue), with
                            probability P (default 1);
  ``grayscale:P``           grey image (kept at 3 channels) with probability P;
  ``erase:P``               random erasing (area 2-33 %, aspect 0.3-3.3, value 0) with
                            probability P.

``augment: true`` (configs written before steps existed) means :data:`CPU_RECIPE`,
``false`` means ``()``. The sizes are checked against the stored image size and
``image_size`` before any work starts (:func:`plan`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from fer_models.errors import ConfigError

GEOMETRIC = ("resize", "crop", "center_crop", "resized_crop", "flip", "rotate")
PHOTOMETRIC = ("jitter", "grayscale", "erase")
SIZED = ("resize", "crop", "center_crop")  # steps whose one argument is the output size

#: Today's CPU-preset recipe: crop area 0.8-1.0, aspect 3/4-4/3, flip 0.5.
CPU_RECIPE: tuple[str, ...] = ("resized_crop:0.8-1.0", "flip:0.5")
#: Paper 002's released training transforms (``get_train_transforms`` of the authors' code):
#: resize 256, rotation +-6 deg (p 0.5), RandomResizedCrop to 224 (area 0.8-1, square),
#: flip, grayscale 0.2, colour jitter 0.4/0.4/0.4/0.1 (p 0.8), random erasing 0.5. Store 256 px
#: (``stored_size: 256``) and train at ``image_size: 224``; evaluation resizes to 224.
#: Departure: their erasing fills with random noise after normalisation, ours with 0 before.
RELEASED_RECIPE: tuple[str, ...] = (
    "resize:256", "rotate:6,0.5", "resized_crop:0.8-1.0,224,1-1", "flip:0.5",
    "grayscale:0.2", "jitter:0.4,0.4,0.4,0.1,0.8", "erase:0.5",
)  # fmt: skip
NORMALIZE = ("imagenet", "per_image", "none")
COLOR = ("rgb", "gray")


@dataclass(frozen=True)
class Step:
    """One parsed step: ``name``, its ``text`` as written, and its arguments."""

    name: str
    text: str
    args: dict[str, Any] = field(default_factory=dict)

    @property
    def geometric(self) -> bool:
        return self.name in GEOMETRIC

    def size_after(self, size: int) -> int:
        """The image side after this step, given the side before it."""
        out = self.args.get("size")
        if out is None:
            return size
        if self.name in ("crop", "center_crop") and out > size:
            raise ConfigError(f"augmentation step '{self.text}' crops {out} px from a {size} px image; "
                              f"crop at most {size} px or resize first")
        return int(out)


def _floats(text: str, step: str, n: tuple[int, ...]) -> list[float]:
    try:
        vals = [float(v) for v in text.split(",")] if text else []
    except ValueError:
        vals = None
    if vals is None or len(vals) not in n:
        raise ConfigError(f"augmentation step '{step}' needs {' or '.join(map(str, n))} comma-separated "
                          f"numbers after ':'; see fer_models.data.steps")
    return vals


def _range(text: str, step: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in text.split("-"))
    except ValueError:
        raise ConfigError(f"augmentation step '{step}' needs a range like 0.8-1.0") from None
    if not 0 < lo <= hi:
        raise ConfigError(f"augmentation step '{step}': the range must satisfy 0 < low <= high")
    return lo, hi


def _prob(p: float, step: str) -> float:
    if not 0.0 <= p <= 1.0:
        raise ConfigError(f"augmentation step '{step}': the probability must be in [0, 1], got {p}")
    return p


def parse_step(text: str) -> Step:
    """``"flip:0.5"`` -> ``Step("flip", ..., {"p": 0.5})``; a ConfigError names what is wrong."""
    text = str(text).strip()
    name, _, arg = text.partition(":")
    name = name.strip()
    if name not in GEOMETRIC + PHOTOMETRIC:
        raise ConfigError(f"unknown augmentation step '{text}'; use one of "
                          f"{', '.join(GEOMETRIC + PHOTOMETRIC)} (fer_models.data.steps)")
    arg = arg.replace(" ", "")
    if name in SIZED:
        (s,) = _floats(arg, text, (1,))
        if s < 1 or s != int(s):
            raise ConfigError(f"augmentation step '{text}' needs a whole size in pixels")
        return Step(name, text, {"size": int(s)})
    if name == "resized_crop":
        parts = arg.split(",")
        if not 1 <= len(parts) <= 3:
            raise ConfigError(f"augmentation step '{text}' reads resized_crop:AMIN-AMAX[,SIZE[,RMIN-RMAX]]")
        scale = _range(parts[0], text)
        if scale[1] > 1:
            raise ConfigError(f"augmentation step '{text}': the area fraction is at most 1")
        size = None
        if len(parts) > 1 and parts[1]:
            (s,) = _floats(parts[1], text, (1,))
            size = int(s)
        ratio = _range(parts[2], text) if len(parts) > 2 else (3 / 4, 4 / 3)
        return Step(name, text, {"scale": scale, "size": size, "ratio": ratio})
    if name in ("flip", "grayscale", "erase"):
        (p,) = _floats(arg, text, (1,))
        return Step(name, text, {"p": _prob(p, text)})
    if name == "rotate":
        vals = _floats(arg, text, (1, 2))
        return Step(name, text, {"degrees": abs(vals[0]), "p": _prob(vals[1] if len(vals) > 1 else 1.0, text)})
    vals = _floats(arg, text, (4, 5))  # jitter
    if min(vals[:4]) < 0 or vals[3] > 0.5:
        raise ConfigError(f"augmentation step '{text}': jitter amounts are >= 0 and hue <= 0.5")
    return Step(name, text, {"brightness": vals[0], "contrast": vals[1], "saturation": vals[2],
                             "hue": vals[3], "p": _prob(vals[4] if len(vals) > 4 else 1.0, text)})


def as_steps(value: Any) -> tuple[str, ...]:
    """A config value -> the tuple of step strings: ``True`` (old configs) is
    :data:`CPU_RECIPE`, ``False``/``None`` is ``()``, a string holds steps separated by
    spaces or ``;``. Every step is parsed, so a typo fails here."""
    if value is True:
        return CPU_RECIPE
    if value is False or value is None:
        return ()
    if isinstance(value, str):
        value = value.replace(";", " ").split()
    if not isinstance(value, Iterable):
        raise ConfigError(f"augmentation steps must be a list of 'name:args' strings or true/false, got {value!r}")
    out = tuple(str(v).strip() for v in value if str(v).strip())
    for s in out:
        parse_step(s)
    return out


def plan(steps: Iterable[str], stored_size: int, image_size: int) -> tuple[Step, ...]:
    """The steps to run from a ``stored_size`` image to an ``image_size`` network input.

    When the steps never set the size, ``resize:image_size`` runs first (as before steps
    existed: resize, then augment at the network size). When they do, they must end at
    ``image_size``; otherwise a ConfigError says so before any work starts.
    """
    parsed = tuple(parse_step(s) for s in steps)
    size = int(stored_size)
    for s in parsed:
        size = s.size_after(size)
    if size == image_size:
        return parsed
    if any(s.args.get("size") is not None for s in parsed):
        raise ConfigError(f"the augmentation steps {[s.text for s in parsed]} turn {stored_size} px into "
                          f"{size} px, but image_size is {image_size}; end them at {image_size} px")
    return (parse_step(f"resize:{image_size}"),) + parsed
