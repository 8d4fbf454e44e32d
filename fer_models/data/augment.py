"""Batch transforms on the training device: uint8 -> float, augmentation steps, normalisation.

:class:`BatchTransform` turns a *raw* batch (what :meth:`FaceDataset.gather
<fer_models.data.dataset.FaceDataset.gather>` reads from the cache: ``image`` uint8
(B, S, S, 3), ``au_map`` / ``gt_au_map`` (B, m, m), ``landmarks`` (B, 68, 2) in stored-image
pixels, 1-D columns) into the batch of docs/contracts.md, on whatever device the raw batch
is: the GPU during a CUDA trial, the CPU otherwise. The steps are those of
:mod:`fer_models.data.steps` (``DataConfig.augment`` / ``eval_steps``).

Why kornia: its augmentations draw per-sample parameters for a whole batch in one call (no
per-image Python), each geometric one gives the matrix its draw applies (input pixel ->
output pixel, pixel centres at integers), and its random resized crop and colour jitter
sample as torchvision's do, so paper 002's released recipe means the same thing here; its
photometric ops run on GPU or CPU alike. The hand-written affine maths this module held
before had to re-derive those conventions and had no photometric steps.

How maps and landmarks follow the image (paper 002 aligns attention with an AU map drawn from
the landmarks of the *un-augmented* face: a crop, flip or rotation that moved only the image
would put the target on the wrong pixels). The matrices of the geometric steps are chained
(``M = M_k ... M_1``, kornia's ``generate_transformation_matrix`` of each step's draw). The
image is resampled once per run of consecutive geometric steps (one interpolation for the
run's product instead of one per step); ``resize`` uses ``F.interpolate`` with
antialiasing, as the cache reader always did. Resampling goes through ``F.affine_grid`` /
``F.grid_sample`` in normalised coordinates (``align_corners=False``), where [-1, 1] spans
the whole image at any resolution: the same grid transform then warps the AU maps, which
cover the same face at m px, once at the end with the whole chain ``M`` (in pixel space the
map kornia's ``warp_affine`` would apply, without converting it to map pixels). The
landmarks are moved by ``M`` itself (one ``baddbmm``: kornia's ``transform_points`` costs 5x; NaN rows
stay NaN). Photometric steps touch the image only. After a crop a map's peak may fall
below 1; it is not re-normalised, as the alignment loss (cosine) and CAM-COS are
scale-invariant. Maps are clamped back to [0, 1] after bilinear resampling.

Randomness: parameters are drawn on the CPU from the transform's own generator (seeded by
``seed``, under ``torch.random.fork_rng``), so a transform is reproducible, gives the same
draws on every device and consumes nothing of the model's random stream (see
:class:`BatchTransform` for why the CPU and in banks).
"""

from __future__ import annotations

import functools
import math
from typing import Any, Iterable

import torch
import torch.nn.functional as F

from fer_models.data.steps import COLOR, NORMALIZE, Step, plan
from fer_models.errors import ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: ITU-R 601 luma weights, those of ``kornia.color.rgb_to_grayscale``; a grey network input
#: is ImageNet-normalised with the same weighting of the channel means and deviations.
LUMA = (0.299, 0.587, 0.114)
MAP_KEYS = ("au_map", "gt_au_map")


def _kornia_module(step: Step, size: int) -> Any:
    """The kornia augmentation of one step (``size``: the image side where it runs)."""
    import kornia.augmentation as K

    a = step.args
    if step.name == "crop":
        return K.RandomCrop((a["size"],) * 2, cropping_mode="resample")
    if step.name == "center_crop":
        return K.CenterCrop((a["size"],) * 2, cropping_mode="resample")
    if step.name == "resized_crop":
        out = a["size"] or size
        return K.RandomResizedCrop((out, out), scale=a["scale"], ratio=a["ratio"], cropping_mode="resample")
    if step.name == "flip":
        return K.RandomHorizontalFlip(p=a["p"])
    if step.name == "rotate":
        return K.RandomRotation(degrees=a["degrees"], p=a["p"])
    if step.name == "jitter":
        return K.ColorJitter(a["brightness"], a["contrast"], a["saturation"], a["hue"], p=a["p"])
    if step.name == "grayscale":
        return K.RandomGrayscale(p=a["p"])
    if step.name == "erase":
        return K.RandomErasing(p=a["p"])
    return None  # resize: F.interpolate


def _scale_matrix(b: int, s: float) -> torch.Tensor:
    """(B, 3, 3) half-pixel scaling ``x' = (x + 0.5) * s - 0.5`` (a resize by ``s``, as
    ``F.interpolate(align_corners=False)`` and ``fer_models.data.au._grid`` place pixels)."""
    t = 0.5 * s - 0.5
    return torch.tensor([[s, 0.0, t], [0.0, s, t], [0.0, 0.0, 1.0]]).expand(b, 3, 3)


def _to(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A small CPU tensor (parameters, matrices) onto ``device`` without a host sync: a plain
    ``.to("cuda")`` of pageable memory waits for the stream, a pinned ``non_blocking`` one does not."""
    if device.type != "cuda":
        return t.to(device)
    return t.pin_memory().to(device, non_blocking=True)


@functools.lru_cache(maxsize=None)
def _normalizer(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(3, 3) pixel -> normalised coordinates of a ``size``-px side, ``align_corners=False``
    (``u = (2x + 1) / size - 1``: the image spans [-1, 1] edge to edge), and its inverse."""
    n = torch.tensor([[2.0 / size, 0.0, 1.0 / size - 1.0], [0.0, 2.0 / size, 1.0 / size - 1.0], [0.0, 0.0, 1.0]])
    return n, torch.linalg.inv(n)


def _theta(matrix: torch.Tensor, size_in: int, size_out: int) -> torch.Tensor:
    """The (B, 2, 3) ``affine_grid`` transform of the pixel map ``matrix`` (B, 3, 3; input px
    -> output px of an image going from ``size_in`` to ``size_out`` px): output -> input in
    normalised coordinates (``align_corners=False``).

    In those coordinates [-1, 1] spans the whole image whatever its resolution, so one theta
    serves the image and the AU maps (which cover the same face at m px) without converting
    the matrix to map pixels; in pixel space it is the exact map kornia's ``warp_affine``
    applies.
    """
    return (_normalizer(size_in)[0] @ torch.linalg.inv(matrix) @ _normalizer(size_out)[1])[:, :2].contiguous()


def _warp(x: torch.Tensor, theta: torch.Tensor, size: int) -> torch.Tensor:
    """Resample ``x`` (B, C, h, w) through the CPU ``theta`` of :func:`_theta` to ``size`` px."""
    grid = F.affine_grid(_to(theta, x.device), [x.shape[0], x.shape[1], size, size], align_corners=False)
    return F.grid_sample(x, grid.to(x.dtype), mode="bilinear", padding_mode="zeros", align_corners=False)


def _move_points(points: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """(B, N, 2) points through the affine (B, 3, 3) ``matrix``: ``p A^T + t`` (NaN stays NaN)."""
    m = _to(matrix, points.device).to(points.dtype)
    return torch.baddbmm(m[:, None, :2, 2], points, m[:, :2, :2].transpose(1, 2))


class BatchTransform:
    """Raw cache batch -> contract batch, on the batch's device (see the module docstring).

    ``steps``: step strings (:mod:`fer_models.data.steps`); the plan is checked against
    ``stored_size`` -> ``image_size`` at construction. ``normalize``: ``imagenet``,
    ``per_image`` (each image to zero mean and unit deviation, the deviation floored at
    ``1/sqrt(pixels)`` as TensorFlow's ``per_image_standardization``, paper 001's
    preprocessing) or ``none`` ([0, 1]). ``color``: ``rgb`` or ``gray`` (one channel, luma).
    ``memory_format``: of the output image (the trainer asks for channels_last on CUDA).

    Parameters and matrices are drawn on the CPU (a few numbers a sample) and copied to the
    device pinned and ``non_blocking``, so that nothing in the sampling can make the host wait
    for the GPU (a small tensor made from Python values on a CUDA device is a blocking copy);
    it also makes a seed give the same augmentation on every device. The geometric matrices are
    drawn for ``bank`` samples at a time and handed out a batch at a time: kornia's cost is per
    call (about 2 ms for a crop and a flip), not per sample, and would otherwise weigh on small
    CPU batches. The stream of per-sample draws depends on the seed and ``bank`` only, not on
    batch sizes.
    """

    def __init__(self, steps: Iterable[str] = (), *, stored_size: int, image_size: int, map_size: int,
                 normalize: str = "imagenet", color: str = "rgb", seed: int = 0, bank: int = 2048):
        if normalize not in NORMALIZE:
            raise ConfigError(f"normalize must be one of {', '.join(NORMALIZE)}, got '{normalize}'")
        if color not in COLOR:
            raise ConfigError(f"color must be one of {', '.join(COLOR)}, got '{color}'")
        self.steps = tuple(steps)
        self.plan = plan(self.steps, stored_size, image_size)
        self.stored_size, self.image_size, self.map_size = int(stored_size), int(image_size), int(map_size)
        self.normalize, self.color = normalize, color
        self.generator = torch.Generator().manual_seed(int(seed))
        self.memory_format = torch.contiguous_format
        self.bank = int(bank)
        self._moves_maps = any(s.geometric and s.name != "resize" for s in self.plan)
        self._moves_points = any(s.geometric for s in self.plan)
        self._modules, self._sizes = [], []
        size = self.stored_size
        for s in self.plan:  # kornia modules stay on the CPU: they only draw parameters there
            self._modules.append(_kornia_module(s, size))
            self._sizes.append(size)
            size = s.size_after(size)
        self._drawn = [i for i, s in enumerate(self.plan) if s.geometric and s.name != "resize"]
        self._bank: dict[int, torch.Tensor] = {}
        mean = IMAGENET_MEAN if color == "rgb" else (sum(w * m for w, m in zip(LUMA, IMAGENET_MEAN)),)
        std = IMAGENET_STD if color == "rgb" else (sum(w * s for w, s in zip(LUMA, IMAGENET_STD)),)
        self._mean_std = torch.tensor([mean, std]).view(2, 1, -1, 1, 1)
        self._on_device: dict[str, torch.Tensor] = {}

    def __repr__(self) -> str:
        return (f"BatchTransform({[s.text for s in self.plan]}, {self.stored_size}->{self.image_size} px, "
                f"normalize={self.normalize}, color={self.color})")

    def _seeded(self):
        """A context drawing from the CPU generator reseeded from this transform's own stream."""
        seed = int(torch.randint(0, 2**62, (1,), generator=self.generator))
        ctx = torch.random.fork_rng(devices=[])  # the CPU generator only: parameters are drawn there
        ctx.__enter__()
        torch.default_generator.manual_seed(seed)
        return ctx

    def _matrices(self, b: int) -> dict[int, torch.Tensor]:
        """The (b, 3, 3) matrices of the next ``b`` samples for each drawn geometric step."""
        if not self._drawn:
            return {}
        while (len(next(iter(self._bank.values()))) if self._bank else 0) < b:
            ctx = self._seeded()  # a chunk of exactly ``bank`` samples per seed
            try:
                for i in self._drawn:
                    mod, shape = self._modules[i], (self.bank, 3, self._sizes[i], self._sizes[i])
                    params = mod.forward_parameters(shape)
                    meta = torch.empty(()).expand(shape)  # kornia reads only its shape
                    new = mod.generate_transformation_matrix(meta, params, mod.flags).float()
                    self._bank[i] = torch.cat([self._bank[i], new]) if i in self._bank else new
            finally:
                ctx.__exit__(None, None, None)
        out = {i: m[:b] for i, m in self._bank.items()}
        self._bank = {i: m[b:] for i, m in self._bank.items()}
        return out

    # -------------------------------------------------------------------------- the call
    def __call__(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = dict(batch)
        image = batch["image"]
        if image.dtype != torch.uint8 or image.dim() != 4 or image.shape[-1] != 3:
            raise TypeError(f"BatchTransform takes the cache's uint8 (B, S, S, 3) images, got "
                            f"{tuple(image.shape)} {image.dtype}")
        x = image.permute(0, 3, 1, 2).float().div_(255.0)
        b = x.shape[0]
        maps = {k: batch[k].unsqueeze(1) for k in MAP_KEYS if k in batch}
        landmarks = batch.get("landmarks")
        if self.plan and b:
            x, matrix, theta = self._apply(x, self._matrices(b))
            if self._moves_maps and maps:
                if theta is None:  # several warps (photometric steps between geometric ones): the chain
                    theta = _theta(matrix, self.stored_size, self.image_size)
                stacked = _warp(torch.cat(list(maps.values()), 1), theta, self.map_size).clamp_(0.0, 1.0)
                maps = dict(zip(maps, stacked.split(1, dim=1)))
            if landmarks is not None and self._moves_points:
                landmarks = _move_points(landmarks, matrix)
        if self.color == "gray":
            from kornia.color import rgb_to_grayscale

            x = rgb_to_grayscale(x)
        x = self._normalize(x)
        out["image"] = x.contiguous(memory_format=self.memory_format)
        out.update(maps)
        if landmarks is not None:
            out["landmarks"] = landmarks
        return out

    def _apply(self, x: torch.Tensor, drawn: dict[int, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, Any]:
        """Run the plan on images ``x`` (B, 3, S, S) in [0, 1] with the ``drawn`` geometric
        matrices -> (images, the CPU (B, 3, 3) map from stored-image to output pixels, and the
        theta of the image's warp when there was one warp, else None). One warp covers every
        non-resize geometric step, and a resize is the identity in normalised coordinates,
        so the maps can reuse that theta."""
        b = x.shape[0]
        total = pending = None  # the whole chain; the geometric steps not yet applied to the image
        size = start = self.stored_size  # ``pending`` runs from side ``start`` to ``size``
        warps = 0

        def flush(x):
            nonlocal pending, warps
            if pending is None:
                return x, None
            theta = _theta(pending, start, size)
            pending, warps = None, warps + 1
            return _warp(x, theta, size), theta

        theta = None
        for i, (step, mod) in enumerate(zip(self.plan, self._modules)):
            if step.name == "resize":
                x, _ = flush(x)
                new = step.args["size"]
                if new != x.shape[-1]:
                    x = F.interpolate(x, size=(new, new), mode="bilinear", align_corners=False, antialias=True)
                m = _scale_matrix(b, new / size)
                total = m if total is None else m @ total
                size = start = new
            elif step.geometric:
                m = drawn[i]
                pending = m if pending is None else m @ pending
                total = m if total is None else m @ total
                size = step.size_after(size)
            else:
                x, _ = flush(x)
                start = size
                ctx = self._seeded()
                try:
                    params = mod.forward_parameters(x.shape)
                finally:
                    ctx.__exit__(None, None, None)
                x = mod(x, params=params)  # CPU parameters: kornia moves what it needs, non_blocking
        x, theta = flush(x)
        if total is None:
            total = torch.eye(3).expand(b, 3, 3)
        return x, total, theta if warps == 1 else None

    def _normalize(self, x: torch.Tensor) -> torch.Tensor:
        if self.normalize == "imagenet":
            key = str(x.device)
            if key not in self._on_device:
                self._on_device[key] = self._mean_std.to(x.device)  # once per device
            mean, std = self._on_device[key]
            return (x - mean) / std
        if self.normalize == "per_image":
            flat = x.flatten(1)
            mean = flat.mean(1).view(-1, 1, 1, 1)
            std = flat.std(1, unbiased=False).clamp_min(1.0 / math.sqrt(flat.shape[1])).view(-1, 1, 1, 1)
            return (x - mean) / std
        return x
