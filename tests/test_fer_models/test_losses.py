"""AU alignment loss (paper 002, Eq. 1-3)."""

from __future__ import annotations

import math

import pytest
import torch

from fer_models.losses import alignment_terms, attention, au_alignment_loss, cosine, resize_map, total_loss

torch.set_num_threads(1)


def _blob_maps(b: int, m: int = 16, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(m).float(), torch.arange(m).float(), indexing="ij")
    cy, cx = torch.randint(3, m - 3, (b,), generator=g).float(), torch.randint(3, m - 3, (b,), generator=g).float()
    maps = torch.exp(-((yy - cy[:, None, None]) ** 2 + (xx - cx[:, None, None]) ** 2) / 8.0)
    return maps.unsqueeze(1)  # (B, 1, M, M)


def test_attention_is_channel_mean_and_cosine_matches_eq2():
    f = torch.rand(2, 5, 4, 4)
    t = attention(f)
    assert torch.allclose(t, f.mean(1))
    a = torch.rand(2, 4, 4)
    ref = (t * a).sum((1, 2)) / (t.flatten(1).norm(dim=1) * a.flatten(1).norm(dim=1))
    assert torch.allclose(cosine(t, a), ref, atol=1e-6)
    assert torch.allclose(cosine(a, 3.0 * a), torch.ones(2), atol=1e-6)  # scale invariant


def test_resize_map_averages_down_and_interpolates_up():
    a = _blob_maps(3, 16)
    down = resize_map(a, (4, 4))
    assert down.shape == (3, 4, 4)
    assert torch.allclose(down.mean((1, 2)), a.mean((1, 2, 3)), atol=1e-6)  # area average keeps the mass
    up = resize_map(a, (32, 32))
    assert up.shape == (3, 32, 32) and up.max() <= 1.0 + 1e-6


def test_loss_skips_invalid_maps_and_is_zero_without_any():
    feats = {5: torch.rand(4, 8, 4, 4, requires_grad=True)}
    a = _blob_maps(4, 16)
    valid = torch.tensor([True, False, True, False])
    full = au_alignment_loss(feats, a, valid)
    only_valid = au_alignment_loss({5: feats[5][valid]}, a[valid], torch.ones(2, dtype=torch.bool))
    assert torch.allclose(full, only_valid)
    # changing an invalid sample's map does not change the loss
    a2 = a.clone()
    a2[1] = torch.rand_like(a2[1])
    assert torch.allclose(au_alignment_loss(feats, a2, valid), full)
    none = au_alignment_loss(feats, torch.zeros_like(a), torch.zeros(4, dtype=torch.bool))
    assert float(none.detach()) == 0.0 and math.isfinite(float(none.detach()))
    none.backward()
    assert torch.isfinite(feats[5].grad).all() and float(feats[5].grad.abs().sum()) == 0.0


def test_several_layers_average_their_terms():
    feats = {4: torch.rand(3, 6, 8, 8), 5: torch.rand(3, 6, 4, 4)}
    a = _blob_maps(3, 16)
    valid = torch.ones(3, dtype=torch.bool)
    r = alignment_terms(feats, a, (5, 4))
    assert r.shape == (3, 2)
    both = au_alignment_loss(feats, a, valid, (5, 4))
    l5 = au_alignment_loss(feats, a, valid, (5,))
    l4 = au_alignment_loss(feats, a, valid, (4,))
    assert torch.allclose(both, (l5 + l4) / 2, atol=1e-6)
    tot, al = total_loss(torch.tensor(1.0), feats, a, valid, (5, 4), lam=2.0)
    assert torch.allclose(tot, 1.0 + 2.0 * al)


def test_optimising_the_alignment_loss_raises_R_on_a_fixed_batch():
    """1 - R of a real (tiny) model decreases when the loss is minimised on one batch."""
    from fer_models.config import DataConfig, TrainConfig
    from fer_models.methods import build_model

    torch.manual_seed(0)
    model = build_model(TrainConfig(method="cam", backbone="resnet-tiny", data=DataConfig(image_size=32)))
    x = torch.randn(8, 3, 32, 32)
    a = _blob_maps(8, 16, seed=1)
    valid = torch.ones(8, dtype=torch.bool)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    losses = []
    for _ in range(20):
        loss = au_alignment_loss(model(x).features, a, valid, (5,))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert losses[-1] < 0.5 * losses[0], losses
