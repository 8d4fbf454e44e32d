"""Augmentation steps on the device: maps and landmarks follow every geometric step,
photometric steps leave them alone, the vocabulary and its checks (fer_models.data.steps)."""

from __future__ import annotations

import math

import pytest
import torch

from fer_models.config import DataConfig, from_dict
from fer_models.data.augment import BatchTransform
from fer_models.data.steps import CPU_RECIPE, RELEASED_RECIPE, as_steps, parse_step, plan
from fer_models.errors import ConfigError

torch.set_num_threads(1)


def _blobs(pos: torch.Tensor, size: int, map_size: int, sigma: float = 0.04) -> dict[str, torch.Tensor]:
    """A raw batch whose image, maps and first landmark all mark ``pos`` (B, 2), given as
    fractions of the side: a bright Gaussian blob on a dark image, the same blob at map
    resolution (half-pixel grid, as the cache renders maps), the landmark at its centre."""

    def draw(n: int) -> torch.Tensor:
        c = torch.arange(n, dtype=torch.float32)
        px = pos * n - 0.5  # the centre in the pixels of an n-px grid
        dx = c[None, None, :] - px[:, 0, None, None]
        dy = c[None, :, None] - px[:, 1, None, None]
        return torch.exp(-(dx**2 + dy**2) / (2 * (sigma * n) ** 2))

    b = len(pos)
    image = (draw(size) * 255).round().to(torch.uint8)[..., None].expand(b, size, size, 3).contiguous()
    landmarks = torch.full((b, 68, 2), math.nan)
    landmarks[:, 0] = pos * size - 0.5
    return {"image": image, "au_map": draw(map_size), "gt_au_map": draw(map_size).clone(), "landmarks": landmarks,
            "label": torch.arange(b)}


def _peak(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, 2) sub-pixel (x, y) of the brightest blob (centroid of its top pixels)."""
    m = x[:, 0]
    b, h, w = m.shape
    flat = m.reshape(b, -1)
    weights = torch.where(flat >= 0.6 * flat.amax(1, keepdim=True), flat, torch.zeros(()))
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    tot = weights.sum(1)
    return torch.stack([(weights * xs.reshape(-1)).sum(1) / tot, (weights * ys.reshape(-1)).sum(1) / tot], 1)


def _in_image_px(map_xy: torch.Tensor, map_size: int, image_size: int) -> torch.Tensor:
    return (map_xy + 0.5) * image_size / map_size - 0.5


def _run(steps, pos, stored=48, image=48, m=16, seed=0):
    t = BatchTransform(steps, stored_size=stored, image_size=image, map_size=m, normalize="none", seed=seed)
    return t, t(_blobs(pos, stored, m))


POS = torch.tensor([[0.3, 0.35], [0.62, 0.4], [0.45, 0.7]])


def test_a_flip_a_centre_crop_and_a_resize_move_image_maps_and_landmarks_to_known_places():
    s, m = 48, 16
    px = POS * s - 0.5  # blob centres in stored pixels
    # flip with p = 1: x -> S - 1 - x
    _, out = _run(("flip:1",), POS)
    want = torch.stack([s - 1 - px[:, 0], px[:, 1]], 1)
    # centre crop to 32 px: shifted by 8 px
    _, cc = _run(("center_crop:32",), POS, image=32)
    # resize 48 -> 32 (no steps: the plan resizes first), half-pixel grid
    _, rs = _run((), POS, image=32)
    for o, expect, side in ((out, want, s), (cc, px - 8, 32), (rs, (px + 0.5) * 32 / s - 0.5, 32)):
        assert o["image"].shape[-1] == side and o["au_map"].shape[-1] == m
        assert torch.allclose(_peak(o["image"]), expect, atol=0.35)
        assert torch.allclose(o["landmarks"][:, 0], expect, atol=1e-4)
        for key in ("au_map", "gt_au_map"):
            assert torch.allclose(_in_image_px(_peak(o[key]), m, side), expect, atol=0.5 * side / m)


def test_a_known_rotation_moves_image_maps_and_landmarks_alike():
    import kornia.augmentation as K

    s, m = 48, 16
    t = BatchTransform(("rotate:30",), stored_size=s, image_size=s, map_size=m, normalize="none")
    t._modules[0] = K.RandomRotation(degrees=(30.0, 30.0), p=1.0)  # a known angle instead of a draw
    out = t(_blobs(POS, s, m))
    c = (s - 1) / 2
    d = POS * s - 0.5 - c
    a = math.radians(30.0)  # kornia: positive angles turn anticlockwise on screen (y down)
    want = torch.stack([c + d[:, 0] * math.cos(a) + d[:, 1] * math.sin(a),
                        c - d[:, 0] * math.sin(a) + d[:, 1] * math.cos(a)], 1)
    assert (want - (POS * s - 0.5)).abs().max() > 3  # it really moved
    assert torch.allclose(_peak(out["image"]), want, atol=0.5)
    assert torch.allclose(out["landmarks"][:, 0], want, atol=1e-3)
    assert torch.allclose(_in_image_px(_peak(out["au_map"]), m, s), want, atol=0.5 * s / m)


@pytest.mark.parametrize("steps,stored,image", [
    (CPU_RECIPE, 48, 48),
    (("crop:40",), 48, 40),
    (("rotate:25", "flip:0.5", "resized_crop:0.6-1.0"), 48, 48),
    (("resize:56", "rotate:6,0.5", "resized_crop:0.8-1.0,40,1-1", "flip:0.5"), 48, 40),  # released, smaller
    (("rotate:20", "grayscale:0.5", "crop:40", "jitter:0.2,0.2,0,0", "flip:0.5"), 48, 40),  # two warps
])  # fmt: skip
def test_maps_and_landmarks_stay_aligned_with_the_image_under_random_geometric_steps(steps, stored, image):
    g = torch.Generator().manual_seed(0)
    pos = 0.3 + 0.4 * torch.rand(48, 2, generator=g)
    m = 16
    _, out = _run(steps, pos, stored, image, m)
    img_xy, lm = _peak(out["image"]), out["landmarks"][:, 0]
    map_xy = _in_image_px(_peak(out["au_map"]), m, image)
    inside = ((lm > 2) & (lm < image - 3)).all(1)  # blobs cut by the border have a biased peak
    assert inside.sum() > 30
    assert (img_xy - lm)[inside].abs().max() < 0.75
    assert (map_xy - lm)[inside].abs().max() < 0.6 * image / m
    moved = (lm - (pos * stored - 0.5) * image / stored).abs().amax(1)
    assert moved.max() > 2.0  # the steps did something
    assert out["au_map"].min() >= 0 and out["au_map"].max() <= 1
    assert torch.equal(out["label"], torch.arange(48))  # other columns pass through


def test_photometric_steps_change_the_image_only():
    pos = POS.repeat(4, 1)
    raw = _blobs(pos, 48, 16)
    t = BatchTransform(("jitter:0.4,0.4,0.4,0.1", "grayscale:1", "erase:1"), stored_size=48, image_size=48,
                       map_size=16, normalize="none")
    out = t(raw)
    plain = BatchTransform((), stored_size=48, image_size=48, map_size=16, normalize="none")(raw)
    assert not torch.allclose(out["image"], plain["image"])
    for k in ("au_map", "gt_au_map"):
        assert torch.equal(out[k], raw[k].unsqueeze(1))
    assert torch.equal(out["landmarks"].nan_to_num(-1), raw["landmarks"].nan_to_num(-1))


def test_draws_are_seeded_per_sample_and_do_not_depend_on_batch_sizes():
    raw = _blobs(0.3 + 0.4 * torch.rand(16, 2, generator=torch.Generator().manual_seed(1)), 48, 16)
    steps = ("rotate:20", "resized_crop:0.7-1.0", "flip:0.5")
    whole = BatchTransform(steps, stored_size=48, image_size=48, map_size=16, seed=3, bank=5)(raw)
    t = BatchTransform(steps, stored_size=48, image_size=48, map_size=16, seed=3, bank=5)
    halves = [t({k: v[:8] for k, v in raw.items()}), t({k: v[8:] for k, v in raw.items()})]
    for k in ("image", "au_map", "landmarks"):
        assert torch.allclose(whole[k], torch.cat([h[k] for h in halves]), atol=1e-5, equal_nan=True), k
    other = BatchTransform(steps, stored_size=48, image_size=48, map_size=16, seed=4, bank=5)(raw)
    assert not torch.allclose(whole["image"], other["image"])


def test_normalisation_and_colour():
    raw = _blobs(POS, 32, 8)
    gray = BatchTransform((), stored_size=32, image_size=32, map_size=8, color="gray")(raw)
    assert gray["image"].shape == (3, 1, 32, 32)
    per = BatchTransform((), stored_size=32, image_size=32, map_size=8, normalize="per_image")(raw)["image"]
    assert torch.allclose(per.mean((1, 2, 3)), torch.zeros(3), atol=1e-5)
    assert torch.allclose(per.std((1, 2, 3), unbiased=False), torch.ones(3), atol=1e-4)
    none = BatchTransform((), stored_size=32, image_size=32, map_size=8, normalize="none")(raw)["image"]
    assert torch.equal(none, raw["image"].permute(0, 3, 1, 2).float() / 255)


def test_the_vocabulary_and_its_checks():
    assert as_steps(True) == CPU_RECIPE and as_steps(False) == () and as_steps(None) == ()
    assert as_steps("flip:0.5; crop:24") == ("flip:0.5", "crop:24")
    assert parse_step("resized_crop:0.8-1.0").args == {"scale": (0.8, 1.0), "size": None, "ratio": (0.75, 4 / 3)}
    assert parse_step("rotate:6,0.5").args == {"degrees": 6.0, "p": 0.5}
    assert [s.name for s in plan(RELEASED_RECIPE, 256, 224)][:3] == ["resize", "rotate", "resized_crop"]
    assert [s.text for s in plan(CPU_RECIPE, 64, 32)] == ["resize:32", *CPU_RECIPE]  # resize first
    for bad, match in (("flop:0.5", "unknown augmentation step"), ("flip:2", "probability"),
                       ("crop:x", "numbers"), ("resized_crop:1-0.5", "range")):
        with pytest.raises(ConfigError, match=match):
            parse_step(bad)
    with pytest.raises(ConfigError, match="image_size is 32"):
        plan(("crop:24",), 48, 32)
    with pytest.raises(ConfigError, match="crops 64 px from a 48 px"):
        plan(("crop:64",), 48, 64)
    # configs: old booleans, YAML lists, the checks at construction
    assert DataConfig(augment=True).augment == CPU_RECIPE == DataConfig().augment
    assert from_dict(DataConfig, {"augment": False}).augment == ()
    assert from_dict(DataConfig, {"augment": ["flip:0.5"]}).augment == ("flip:0.5",)
    released = DataConfig(image_size=224, stored_size=256, augment=RELEASED_RECIPE, normalize="none")
    assert released.cache_image_size == 256
    with pytest.raises(ConfigError, match="image_size"):
        DataConfig(image_size=64, augment=("crop:48",))
    with pytest.raises(ConfigError, match="normalize"):
        DataConfig(normalize="zscore")


def test_the_released_recipe_runs_at_its_sizes():
    t, out = _run(RELEASED_RECIPE, torch.rand(4, 2) * 0.4 + 0.3, stored=256, image=224, m=28)
    assert out["image"].shape == (4, 3, 224, 224) and out["au_map"].shape == (4, 1, 28, 28)
    assert torch.isfinite(out["landmarks"][:, 0]).all()
