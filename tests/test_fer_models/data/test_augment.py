"""Geometric augmentation moves the AU maps with the image (issue 3)."""

from __future__ import annotations

import torch

from fer_models.data.augment import AugmentParams, augment_batch, sample_affine

torch.set_num_threads(1)


def _spots(b: int, size: int, map_size: int, g: torch.Generator):
    """Images with one bright blurred spot each, and maps made from the same spot."""
    pos = 0.2 + 0.6 * torch.rand(b, 2, generator=g)  # (x, y) as fractions of the side

    def draw(n: int) -> torch.Tensor:
        c = (torch.arange(n) + 0.5) / n
        dx = c[None, None, :] - pos[:, 0, None, None]
        dy = c[None, :, None] - pos[:, 1, None, None]
        return torch.exp(-(dx**2 + dy**2) / (2 * 0.05**2)).unsqueeze(1)

    return draw(size).repeat(1, 3, 1, 1), draw(map_size)


def _argmax_xy(x: torch.Tensor) -> torch.Tensor:
    b, _, h, w = x.shape
    flat = x[:, 0].reshape(b, -1).argmax(1)
    return torch.stack([(flat % w).float() / w, (flat // w).float() / h], 1)  # fractions


def test_a_spot_and_its_map_stay_aligned_under_random_crops_flips_rotations():
    g = torch.Generator().manual_seed(0)
    image, amap = _spots(64, 64, 16, g)
    params = AugmentParams(max_degrees=10.0)
    out_img, (out_map,) = augment_batch(image, [amap], g, params)
    visible = out_map.amax(dim=(1, 2, 3)) > 0.5  # spots cropped away have nothing to compare
    assert visible.sum() > 48
    err = (_argmax_xy(out_img) - _argmax_xy(out_map))[visible].abs()
    assert err.max() <= 1.0 / 16 + 1e-6  # within one map pixel
    # and augmentation really moved the spots
    moved = (_argmax_xy(out_map) - _argmax_xy(amap))[visible].abs().max()
    assert moved > 2.0 / 16


def test_flip_moves_both_image_and_maps():
    g = torch.Generator().manual_seed(1)
    image, amap = _spots(4, 32, 8, g)
    flip_only = AugmentParams(scale=(1.0, 1.0), ratio=(1.0, 1.0), flip_p=1.0)
    out_img, (out_map,) = augment_batch(image, [amap], g, flip_only)
    assert torch.allclose(out_img, image.flip(-1), atol=1e-5)
    assert torch.allclose(out_map, amap.flip(-1), atol=1e-5)


def test_no_op_parameters_give_back_the_input_and_maps_stay_in_unit_range():
    g = torch.Generator().manual_seed(2)
    image, amap = _spots(3, 32, 8, g)
    none = AugmentParams(scale=(1.0, 1.0), ratio=(1.0, 1.0), flip_p=0.0)
    out_img, (out_map,) = augment_batch(image, [amap], g, none)
    assert torch.allclose(out_img, image, atol=1e-5) and torch.allclose(out_map, amap, atol=1e-5)
    _, (m,) = augment_batch(image, [amap], g, AugmentParams(max_degrees=30.0))
    assert m.min() >= 0.0 and m.max() <= 1.0


def test_sampling_is_seeded_and_per_sample():
    a = sample_affine(8, torch.Generator().manual_seed(3))
    b = sample_affine(8, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert a.shape == (8, 2, 3) and not torch.allclose(a[0], a[1])
    # crops never leave the image: |centre| + half-extent <= 1 along each axis
    assert ((a[:, 0, 2].abs() + a[:, 0, 0].abs()) <= 1 + 1e-6).all()
    assert ((a[:, 1, 2].abs() + a[:, 1, 1].abs()) <= 1 + 1e-6).all()
