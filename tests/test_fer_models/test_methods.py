"""Every registered method: shapes, finite losses with and without AU, maps in [0, 1]; method specifics."""

from __future__ import annotations

import math

import pytest
import torch

from fer_models.config import DataConfig, TrainConfig
from fer_models.errors import ConfigError, MissingWeightsError, UnknownNameError
from fer_models.losses import au_alignment_loss
from fer_models.methods import build_model, resolve_backbone
from fer_models.registry import BACKBONES, METHODS
from fer_models.torch_utils import hook_count

torch.set_num_threads(1)
S = 32  # image size
K = 7


def _cfg(method: str, **kw) -> TrainConfig:
    kw.setdefault("backbone", "resnet-tiny")
    return TrainConfig(method=method, data=DataConfig(image_size=S, map_size=16), **kw)


def _batch(b: int = 4, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    maps = torch.rand(b, 1, 16, 16, generator=g)
    return {
        "image": torch.randn(b, 3, S, S, generator=g),
        "label": torch.arange(b) % K,
        "au_map": maps,
        "au_valid": torch.tensor([True, True, False, True])[:b],
        "gt_au_map": maps.clone(),
        "gt_valid": torch.ones(b, dtype=torch.bool),
    }


def test_all_paper_002_methods_and_seed_networks_are_registered():
    names = set(METHODS.names())
    paper = {"cam", "wildcat", "gradcam", "gradcampp", "acol", "prm", "adl", "cutmix", "layercam", "tscam", "apvit"}
    assert paper <= names
    assert {"zerobias-cnn", "tiny-vgg", "light-cnn"} <= names
    assert {"resnet50", "resnet50-s8", "resnet18", "resnet18-small", "resnet-tiny", "deit-small", "vit-tiny-small",
            "ir50-vit", "ir-tiny-vit"} <= set(BACKBONES.names())


def test_paper_methods_come_in_the_order_of_paper_002_table_1():
    from fer_models.methods import paper_methods

    assert paper_methods() == ("cam", "wildcat", "gradcam", "gradcampp", "acol", "prm", "adl", "cutmix",
                               "layercam", "tscam", "apvit")
    assert {METHODS.meta(m)["family"] for m in paper_methods()[-2:]} == {"Transformer-based"}
    assert [METHODS.meta(m)["backbone"] for m in paper_methods()[-2:]] == ["vit", "hybrid"]  # APViT: IR-50 + ViT


@pytest.mark.parametrize("au", [False, True], ids=["no-au", "au"])
@pytest.mark.parametrize("method", METHODS.names())
def test_method_trains_a_few_steps_and_gives_maps(method, au):
    torch.manual_seed(0)
    model = build_model(_cfg(method), K)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    before = [p.detach().clone() for p in model.parameters()]
    model.train()
    for step in range(2):
        batch = model.transform_batch(_batch(seed=step))
        out = model(batch["image"], labels=batch["label"])
        assert out.logits.shape == (4, K)
        assert set(out.features) == {1, 2, 3, 4, 5}
        assert all(f.ndim == 4 and f.shape[0] == 4 for f in out.features.values())
        loss = model.classification_loss(out, batch)
        if au:
            align = au_alignment_loss(out.features, batch["au_map"], batch["au_valid"], (5,))
            assert 0.0 <= float(align) <= 2.0
            loss = loss + align
        assert math.isfinite(float(loss.detach()))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters()))
    model.eval()
    x, y = _batch()["image"], torch.tensor([0, 3, 5, 1])
    maps = model.class_maps(x, y)
    assert maps.ndim == 3 and maps.shape[0] == 4
    assert float(maps.min()) >= 0.0 and float(maps.max()) <= 1.0
    assert torch.isfinite(maps).all()
    assert not model.training  # class_maps kept the mode
    assert hook_count(model) == 0  # pytorch-grad-cam hooks released
    taps = model.tap_layers()
    assert taps and all(isinstance(m, torch.nn.Module) for m in taps.values())


def test_grad_cam_restores_train_mode_and_leaves_no_hook():
    model = build_model(_cfg("gradcam"), K)
    model.train()
    maps = model.class_maps(_batch()["image"], torch.tensor([0, 1, 2, 3]))
    assert model.training and hook_count(model) == 0
    assert maps.shape == (4, S, S)
    # the map depends on the class asked for
    other = model.class_maps(_batch()["image"], torch.tensor([4, 5, 6, 0]))
    assert not torch.allclose(maps, other)


def test_gradient_cam_methods_are_one_template_differing_by_the_cam_class():
    """gradcam / gradcampp / layercam: the same classifier whose class_maps is the named
    pytorch-grad-cam class at layer 5."""
    from pytorch_grad_cam import GradCAM, GradCAMPlusPlus, LayerCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from fer_models.torch_utils import LogitsOnly

    x, y = _batch()["image"], torch.tensor([0, 3, 5, 1])
    torch.manual_seed(0)
    weights = build_model(_cfg("gradcam"), K).state_dict()
    maps = {}
    for method, cls in (("gradcam", GradCAM), ("gradcampp", GradCAMPlusPlus), ("layercam", LayerCAM)):
        model = build_model(_cfg(method), K)
        model.load_state_dict(weights)
        model.eval()
        with cls(model=LogitsOnly(model), target_layers=[model.cam_layer()]) as cam:
            want = torch.from_numpy(cam(input_tensor=x, targets=[ClassifierOutputTarget(int(t)) for t in y]))
        maps[method] = model.class_maps(x, y)
        assert torch.allclose(maps[method], want.clamp(0, 1), atol=1e-6), method
        assert hook_count(model) == 0
    assert not torch.allclose(maps["gradcam"], maps["gradcampp"], atol=1e-3)
    assert not torch.allclose(maps["gradcam"], maps["layercam"], atol=1e-3)


def test_wildcat_kmin_term_contributes():
    from fer_models.methods.wildcat import wildcat_pool

    torch.manual_seed(0)
    maps = torch.randn(2, 3, 4, 4)
    with_min = wildcat_pool(maps, 0.5, 0.1, 0.6)
    without = wildcat_pool(maps, 0.5, 0.1, 0.0)
    srt = maps.flatten(2).sort(-1, descending=True).values
    bottom = srt[..., -2:].mean(-1)  # 10 % of 16 regions -> 2
    assert torch.allclose(with_min - without, 0.6 * bottom, atol=1e-6)
    # in the model, the lowest region receives gradient only through the kmin term
    model = build_model(_cfg("wildcat"), K)
    assert (model.kmax, model.kmin, model.alpha, model.modalities) == (0.5, 0.1, 0.6, 5)
    cams = torch.randn(1, K, 4, 4, requires_grad=True)
    wildcat_pool(cams, model.kmax, model.kmin, model.alpha)[0, 0].backward()
    lowest = cams[0, 0].flatten().argmin()
    assert float(cams.grad[0, 0].flatten()[lowest]) == pytest.approx(0.6 / 2)


def test_cutmix_mixes_image_and_au_map_with_the_same_box():
    from fer_models.methods.cutmix import cutmix_batch

    torch.manual_seed(3)
    b = 6
    ids = torch.arange(b, dtype=torch.float32).view(b, 1, 1, 1)
    batch = {
        "image": ids.expand(b, 3, 32, 32).clone(),
        "au_map": ids.expand(b, 1, 16, 16).clone(),
        "gt_au_map": ids.expand(b, 1, 16, 16).clone(),
        "au_valid": torch.tensor([True, True, True, False, True, True]),
        "label": torch.arange(b),
    }
    for _ in range(5):
        out = cutmix_batch(batch, beta=1.0, prob=1.0)
        perm = out["mix_perm"]
        img_box = out["image"][:, 0] != ids.view(b, 1, 1)
        map_box = out["au_map"][:, 0] != ids.view(b, 1, 1)
        moved = perm != torch.arange(b)
        if not moved.any() or not img_box.any():
            continue
        i = int(moved.nonzero()[0])
        # pasted content comes from the same partner in image and map
        assert torch.all(out["image"][i, 0][img_box[i]] == perm[i].float())
        assert torch.all(out["au_map"][i, 0][map_box[i]] == perm[i].float())
        # same normalised box: the 32 px image box down-sampled by 2 is the 16 px map box
        down = torch.nn.functional.avg_pool2d(img_box[i].float()[None, None], 2)[0, 0] > 0.5
        assert torch.equal(down, map_box[i])
        assert out["mix_lam"] == pytest.approx(1 - img_box[i].float().mean().item(), abs=1e-6)
        assert torch.equal(out["label_b"], batch["label"][perm])
        assert torch.equal(out["au_valid"], batch["au_valid"] & batch["au_valid"][perm])
        return
    pytest.fail("no non-trivial CutMix box in 5 draws")


def test_cutmix_model_only_mixes_in_training():
    model = build_model(_cfg("cutmix"), K)
    batch = _batch()
    model.eval()
    assert model.transform_batch(batch) is batch
    model.train()
    assert "label_b" in model.transform_batch(batch)


def test_acol_branch_b_sees_erased_features():
    model = build_model(_cfg("acol"), K)
    assert model.threshold == 0.1
    model.train()
    out = model(_batch()["image"], labels=torch.tensor([0, 1, 2, 3]))
    assert len(out.aux["extra_logits"]) == 1 and out.aux["extra_logits"][0].shape == (4, K)
    batch = {"label": torch.tensor([0, 1, 2, 3])}
    total = model.classification_loss(out, batch)
    ce_a = torch.nn.functional.cross_entropy(out.logits, batch["label"])
    assert float(total) > float(ce_a)  # branch B's CE is added


def test_adl_is_active_in_training_only_and_keeps_the_backbone_keys():
    torch.manual_seed(0)
    adl = build_model(_cfg("adl"), K)
    cam = build_model(_cfg("cam"), K)
    assert set(adl.state_dict()) == set(cam.state_dict())  # no parameter added: weights load strictly
    adl.load_state_dict(cam.state_dict(), strict=True)
    x = _batch()["image"]
    adl.eval()
    cam.eval()
    assert torch.allclose(adl(x).logits, cam(x).logits, atol=1e-5)
    adl.train()
    cam.train()
    assert not torch.allclose(adl(x).logits, cam(x).logits, atol=1e-5)


def test_transformer_methods_use_the_vit_counterpart_and_cnn_methods_refuse_a_vit():
    assert resolve_backbone("tscam", "resnet-tiny") == "vit-tiny-small"
    assert resolve_backbone("apvit", "resnet50") == "ir50-vit"
    assert resolve_backbone("apvit", "resnet-tiny") == "ir-tiny-vit"
    assert resolve_backbone("zerobias-cnn", "resnet50") is None
    with pytest.raises(ConfigError, match="CNN backbone"):
        resolve_backbone("cam", "vit-tiny-small")


def test_user_mistakes_raise_one_sentence_errors(tmp_path):
    with pytest.raises(UnknownNameError, match="known methods"):
        build_model(_cfg("nope"))
    with pytest.raises(ConfigError, match="kmax"):
        build_model(_cfg("cam", method_kwargs={"kmax": 0.3}))
    with pytest.raises(MissingWeightsError, match="no published pretrained weights"):
        build_model(_cfg("cam", pretrained=True))
    with pytest.raises(MissingWeightsError, match="does not exist"):
        build_model(_cfg("cam", pretrained=str(tmp_path / "missing.pth")))


def test_local_pretrained_weights_load_strictly(tmp_path):
    torch.manual_seed(1)
    src = BACKBONES.get("resnet-tiny")()
    path = tmp_path / "w.pth"
    torch.save(src.net.state_dict(), path)
    model = build_model(_cfg("cam", pretrained=str(path)), K)
    for k, v in src.net.state_dict().items():
        assert torch.equal(model.backbone.net.state_dict()[k], v)
    bad = tmp_path / "bad.pth"
    torch.save({"conv1.weight": torch.zeros(1)}, bad)
    with pytest.raises(MissingWeightsError, match="does not match"):
        build_model(_cfg("cam", pretrained=str(bad)), K)


def test_apvit_pools_tokens_with_k_scaled_to_the_grid():
    model = build_model(_cfg("apvit"), K)  # ir-tiny-vit: 4x4 grid at 32 px, 4 blocks
    assert (model.k, model.r, model.keep_rates) == (160, 0.9, [1.0, 1.0, 0.9, 0.9])
    out = model(_batch()["image"])
    assert out.features[5].shape == (4, 64, 4, 4) and out.cams is None
    # APP keeps ceil(160/196*16) = 14 tokens; ATP after blocks 3 and 4: int(14*0.9) = 12, int(12*0.9) = 10
    assert out.aux["kept_tokens"] == [14, 14, 14, 12, 10]


def test_local_weights_for_a_timm_model_load_through_timm(tmp_path):
    """A timm-named backbone (resnet18) takes an ImageNet-style file: head dropped, the rest strict."""
    import timm

    torch.manual_seed(2)
    src = timm.create_model("resnet18", pretrained=False, num_classes=1000)
    path = tmp_path / "r18.pth"
    torch.save(src.state_dict(), path)
    bb = BACKBONES.get("resnet18")(pretrained=str(path))
    assert torch.equal(bb.net.conv1.weight, src.conv1.weight)
    assert torch.equal(bb.net.layer4[1].conv2.weight, src.layer4[1].conv2.weight)
    truncated = tmp_path / "bad.pth"
    torch.save({k: v for k, v in src.state_dict().items() if not k.startswith("layer4")}, truncated)
    with pytest.raises(MissingWeightsError, match="does not match"):
        BACKBONES.get("resnet18")(pretrained=str(truncated))


def test_vit_weights_for_another_input_size_get_their_position_grid_resampled(tmp_path):
    src = BACKBONES.get("vit-tiny-small")(image_size=64)  # 8x8 grid
    path = tmp_path / "vit.pth"
    torch.save(src.net.state_dict(), path)
    bb = BACKBONES.get("vit-tiny-small")(pretrained=str(path), image_size=32)  # 4x4 grid
    assert bb.net.pos_embed.shape[1] == 1 + 16
    assert torch.equal(bb.net.blocks[0].attn.qkv.weight, src.net.blocks[0].attn.qkv.weight)


def test_resnet_tiny_stem_and_block_init():
    """CPU encoder: full-resolution stem, layer 5 at 1/8, residual branches live at init.

    Both were measured to matter on the CPU preset (3 epochs): a stride-2 8-channel stem and
    timm's zero-init of each block's last BatchNorm kept CAM near chance.
    """
    bb = BACKBONES.get("resnet-tiny")()
    feats = bb(torch.zeros(2, 3, S, S))
    assert feats[1].shape[-1] == S and feats[5].shape[-1] == S // 8
    last_bns = [blk.bn2 for layer in (bb.net.layer1, bb.net.layer2, bb.net.layer3, bb.net.layer4) for blk in layer]
    assert last_bns and all(float(bn.weight.abs().min()) > 0 for bn in last_bns)


def test_convstem_vit_keeps_the_token_grid_and_learns_through_its_stem():
    """``vit-tiny-convstem``: the 8x8 patch projection replaced by a stride-8 conv stem (Xiao et
    al. 2021) gives TS-CAM the same 4x4 layer maps at 32 px, and gradients reach the stem."""
    from fer_models.backbones.vit import conv_stem

    cfg = TrainConfig(method="tscam", backbone="vit-tiny-convstem", data=DataConfig(image_size=32))
    model = build_model(cfg, 7)
    stem = model.backbone.net.patch_embed.proj
    assert isinstance(stem, torch.nn.Sequential) and sum(isinstance(m, torch.nn.Conv2d) for m in stem) == 4
    out = model(torch.rand(2, 3, 32, 32))
    assert out.logits.shape == (2, 7) and all(f.shape == (2, 64, 4, 4) for f in out.features.values())
    out.logits.sum().backward()
    assert stem[0].weight.grad is not None and stem[0].weight.grad.abs().sum() > 0
    assert conv_stem((8, 16), 32)(torch.zeros(1, 3, 32, 32)).shape == (1, 32, 8, 8)  # stride 2 per entry
