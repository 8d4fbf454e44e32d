"""Paper 002 as released, model side: the ``released`` metric definition against hand
computations, CAM-COS of the true class, the released heads and placements (ACoL, ADL, APViT,
WILDCAT, PRM), the optimiser's groups and schedule, and the weights tags."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fer_models.config import DataConfig, TrainConfig
from fer_models.errors import ConfigError, MissingWeightsError
from fer_models.labels import NEUTRAL
from fer_models.methods import build_model, resolve_weights
from fer_models.methods._base import FERModel, ModelOutput
from fer_models.metrics import evaluate, full_resolution_maps, released_attention

torch.set_num_threads(1)
K = 7


# --------------------------------------------------------------------------------------
# metrics: a fake model whose maps are read from its input
# --------------------------------------------------------------------------------------


class Planted(FERModel):
    """Channel 0 of the image, average-pooled to 2x2, is every layer's single feature map;
    class k's CAM (2x2) is 1 at cell k of the 2x2 grid (k < 4); channel 1's corner holds the
    predicted class."""

    name = "planted"

    def __init__(self):
        super().__init__(K)
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x, labels=None):
        f = F.adaptive_avg_pool2d(x[:, :1], 2)  # (B, 1, 2, 2)
        pred = x[:, 1, 0, 0].round().long()
        cams = torch.zeros(x.shape[0], K, 2, 2)
        for k in range(4):
            cams[:, k].view(-1, 4)[:, k] = 1.0
        return ModelOutput(logits=F.one_hot(pred, K).float() + self.dummy, features={l: f for l in range(1, 6)},
                           cams=cams)


def _batch(feature_maps, au_maps, labels, preds=None, size=2):
    """``size`` px images whose channel 0 holds each 2x2 feature map (nearest up-sampled)."""
    f = torch.tensor(feature_maps, dtype=torch.float32).view(-1, 1, 2, 2)
    b = f.shape[0]
    x = torch.zeros(b, 3, size, size)
    x[:, :1] = F.interpolate(f, size=(size, size), mode="nearest")
    x[:, 1] = torch.tensor(preds if preds is not None else labels, dtype=torch.float32)[:, None, None]
    a = torch.tensor(au_maps, dtype=torch.float32).view(b, 1, *torch.tensor(au_maps[0]).shape)
    y = torch.tensor(labels)
    return {"image": x, "label": y, "au_map": a, "au_valid": y != NEUTRAL}


def test_released_attention_shifts_only_negative_maps_and_never_divides():
    pos = torch.tensor([[[1.0, 2.0], [2.0, 3.0]]])  # min 1 > 0: kept as is (no min-max)
    assert torch.equal(released_attention(pos, (2, 2)), pos)
    neg = torch.tensor([[[-1.0, 1.0], [1.0, 3.0]]])  # min -1 < 0: shifted by +1, not scaled
    assert torch.equal(released_attention(neg, (2, 2)), torch.tensor([[[0.0, 2.0], [2.0, 4.0]]]))


def test_released_and_project_att_cos_by_hand():
    """AU map = the top-left corner. Attention [1 2; 2 3] (min > 0): released keeps the offset,
    cos = 1/sqrt(1+4+4+9) = 0.2357; project min-max normalises to [0 .5; .5 1], cos = 0."""
    corner = [[1.0, 0.0], [0.0, 0.0]]
    batch = _batch([[1.0, 2.0, 2.0, 3.0]], [corner], [0])
    rel = evaluate(Planted(), [batch], num_classes=K, metric_def="released")
    proj = evaluate(Planted(), [batch], num_classes=K, metric_def="project")
    assert rel.metrics["att_cos"] == pytest.approx(1 / math.sqrt(18), abs=1e-6)
    assert proj.metrics["att_cos"] == pytest.approx(0.0, abs=1e-6)
    # a negative map: shift and min-max differ by a scale only, which the cosine ignores
    batch = _batch([[-1.0, 1.0, 1.0, 3.0]], [[[0.0, 0.0], [0.0, 1.0]]], [0])
    rel = evaluate(Planted(), [batch], num_classes=K, metric_def="released").metrics["att_cos"]
    proj = evaluate(Planted(), [batch], num_classes=K, metric_def="project").metrics["att_cos"]
    assert rel == pytest.approx(4 / math.sqrt(24), abs=1e-6) and proj == pytest.approx(rel, abs=1e-6)


def test_released_cosine_is_taken_at_the_input_resolution():
    """Attention [1 0; 0 0] against an AU map lighting the top-left pixel of the 4x4 input.

    Released: the attention up-sampled to 4x4 as the released code does (bilinear, corners
    aligned, antialiased: PyTorch's antialiased kernel gives the outer product of
    v = [1, 1, 2/3, 1/3] with itself, not plain bilinear's [1, 2/3, 1/3, 0]), so
    cos = 1 / |v|^2 = 9/23. Project: the AU map pooled to the 2x2 attention is
    [1/4 0; 0 0], cos = 1.
    """
    a = torch.zeros(4, 4)
    a[0, 0] = 1.0
    batch = _batch([[1.0, 0.0, 0.0, 0.0]], [a.tolist()], [0], size=4)
    proj_batch = dict(batch, au_map=F.avg_pool2d(batch["au_map"], 2))  # the stored map at 2x2
    rel = evaluate(Planted(), [batch], num_classes=K, metric_def="released").metrics["att_cos"]
    proj = evaluate(Planted(), [proj_batch], num_classes=K, metric_def="project").metrics["att_cos"]
    assert rel == pytest.approx(9 / 23, abs=1e-5)
    assert proj == pytest.approx(1.0, abs=1e-6)


def test_class_mean_average_row_versus_per_sample_mean():
    """Class 0: two samples with ATT-COS 1 and 0 (mean 0.5); class 1: one sample with 1.
    Per sample: 2/3; paper 002's "Average" row (mean of class means): 0.75. Neutral: skipped."""
    tl, br = [[1.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 1.0]]
    feats = [[1.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]]
    batch = _batch(feats, [tl, br, tl, tl], [0, 0, 1, NEUTRAL])
    # released: the 4 other non-neutral classes have no sample and count as -1 in the Average
    for definition, avg in (("project", 0.75), ("released", (0.5 + 1.0 - 4) / 6)):
        m = evaluate(Planted(), [batch], num_classes=K, metric_def=definition)
        assert m.metrics["att_cos"] == pytest.approx(2 / 3, abs=1e-6), definition
        assert m.metrics["att_cos_avg"] == pytest.approx(avg, abs=1e-6), definition
        assert m.cosine_matrix[0, 4] == pytest.approx(0.5) and m.cosine_matrix[1, 4] == pytest.approx(1.0)
        assert math.isnan(m.cosine_matrix[NEUTRAL, 4])


def test_cam_cos_uses_the_true_class_map_even_when_the_prediction_differs():
    """Class k's CAM lights cell k; each AU map lights its true class's cell; every prediction
    is wrong. CAM-COS is 1 with the true class's map and would be 0 with the predicted one."""
    cells = [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]]
    labels, preds = [0, 1, 2, 3], [1, 2, 3, 0]
    batch = _batch(cells, [[c[:2], c[2:]] for c in cells], labels, preds)
    for definition, avg in (("project", 1.0), ("released", (4 - 2) / 6)):  # released: classes 4, 5 count -1
        m = evaluate(Planted(), [batch], num_classes=K, metric_def=definition).metrics
        assert m["cl"] == 0.0
        assert m["cam_cos"] == pytest.approx(1.0, abs=1e-5), definition
        assert m["cam_cos_avg"] == pytest.approx(avg, abs=1e-5), definition


def test_released_average_counts_an_empty_class_as_minus_one_and_a_nan_cam_as_zero():
    """The released evaluation: a class without samples is -1 in the per-class matrix and
    in its Average (neutral dropped); a NaN cosine (here: class 4's CAM is NaN) counts as 0."""

    class NanCam(Planted):
        def forward(self, x, labels=None):
            out = super().forward(x, labels)
            out.cams[:, 4] = float("nan")
            return out

    cells = [[1.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]]
    batch = _batch(cells, [[[1.0, 0.0], [0.0, 0.0]]] * 2, [0, 4])
    m = evaluate(NanCam(), [batch], num_classes=K, metric_def="released")
    assert m.metrics["cam_cos"] == pytest.approx(0.5, abs=1e-5)  # cosines 1 and 0
    assert m.cosine_matrix[[0, 4], -1] == pytest.approx([1.0, 0.0], abs=1e-5)
    assert (m.cosine_matrix[[1, 2, 3, 5], -1] == -1.0).all() and math.isnan(m.cosine_matrix[NEUTRAL, -1])
    assert m.metrics["cam_cos_avg"] == pytest.approx((1.0 + 0.0 - 4) / 6, abs=1e-5)


def test_full_resolution_map_is_rendered_from_the_batch_landmarks():
    import numpy as np

    from fer_models.data.au import expression_au_maps
    from fer_models.data.synth.face import identity_params, neutral_landmarks

    faces = [neutral_landmarks(identity_params(np.random.default_rng(i))) * 40 + 32 for i in range(2)]
    lm = torch.tensor(np.stack(faces), dtype=torch.float32)  # two faces in a 64 px input
    y = torch.tensor([1, 3])  # disgust, happiness
    batch = {"label": y, "au_valid": torch.ones(2, dtype=torch.bool), "au_map": torch.zeros(2, 1, 16, 16),
             "landmarks": lm}
    maps, valid = full_resolution_maps(batch, "paper002", (64, 64))
    want, ok = expression_au_maps(lm.numpy(), y.numpy(), "paper002", (64, 64), 64)
    assert maps.shape == (2, 64, 64) and torch.allclose(maps, torch.from_numpy(want))
    assert valid.tolist() == ok.tolist() == [True, True]
    released = full_resolution_maps(batch, "paper002-released", (64, 64))[0]
    from fer_models.data.au_released import released_au_maps

    drawn = released_au_maps(lm.numpy(), [(5, 9, 16, 17, 25, 26), (6, 12, 25)], (64, 64), 64)[0]
    assert torch.allclose(released, torch.from_numpy(drawn))  # the released AUs, drawn the released way
    assert not torch.allclose(maps[1], released[1])  # happiness: the same AUs, another drawing
    # no landmarks in the batch: the stored map, up-sampled
    stored = full_resolution_maps({k: v for k, v in batch.items() if k != "landmarks"}, "paper002", (64, 64))[0]
    assert stored.shape == (2, 64, 64) and float(stored.abs().sum()) == 0.0


def test_apvit_has_no_cam_cos():
    model = build_model(TrainConfig(method="apvit", backbone="resnet-tiny", data=DataConfig(image_size=32)), K)
    g = torch.Generator().manual_seed(0)
    batch = {"image": torch.randn(4, 3, 32, 32, generator=g), "label": torch.tensor([0, 1, 2, 3]),
             "au_map": torch.rand(4, 1, 16, 16, generator=g), "au_valid": torch.ones(4, dtype=torch.bool)}
    for definition in ("project", "released"):
        m = evaluate(model, [batch], num_classes=K, metric_def=definition).metrics
        assert math.isnan(m["cam_cos"]) and math.isnan(m["cam_cos_avg"])
        assert 0.0 <= m["att_cos"] <= 1.0 and math.isfinite(m["att_cos_avg"])


def test_unknown_metric_definition_is_one_sentence():
    with pytest.raises(ConfigError, match="metric_def must be one of project, released"):
        evaluate(Planted(), [], num_classes=K, metric_def="paper")


# --------------------------------------------------------------------------------------
# methods: released heads, placements, shapes
# --------------------------------------------------------------------------------------


def _cfg(method, backbone="resnet-tiny", size=32, **kw):
    return TrainConfig(method=method, backbone=backbone, data=DataConfig(image_size=size, map_size=16), **kw)


def test_acol_released_head_and_erasing_by_the_label_at_evaluation():
    model = build_model(_cfg("acol", method_kwargs={"hidden": 24, "eval_erase": "label"}), K)
    convs = [m for m in model.head if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [
        (128, 24, (3, 3)), (24, 24, (3, 3)), (24, K, (1, 1))]  # released: 3x3, 3x3, 1x1 (N = 1024 on ResNet50)
    model.eval()
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        pred = model(x).logits.argmax(1)
        other = (pred + 1) % K
        by_label = model(x, labels=other)
        by_pred = model(x, labels=pred)
    assert torch.equal(by_label.logits, by_pred.logits)  # branch A does not depend on the erasing
    assert not torch.allclose(by_label.cams, by_pred.cams)  # branch B sees the label's regions erased
    default = build_model(_cfg("acol"), K)
    default.eval()
    with torch.no_grad():  # default: the prediction erases at evaluation, whatever label is passed
        assert torch.equal(default(x, labels=(default(x).logits.argmax(1) + 1) % K).cams, default(x).cams)


def test_acol_released_head_on_resnet50_s8():
    model = build_model(_cfg("acol", "resnet50-s8", 64, method_kwargs={"hidden": 1024}), K)
    assert model.head[0].in_channels == 2048 and model.head[0].out_channels == 1024
    out = model(torch.randn(2, 3, 64, 64), labels=torch.tensor([0, 1]))
    assert out.features[5].shape == (2, 2048, 8, 8)  # layer 5 at 1/8: 28x28 at 224 px
    assert out.cams.shape == (2, K, 8, 8) and out.aux["extra_logits"][0].shape == (2, K)


def test_adl_released_placement_aligns_the_post_adl_layer5():
    torch.manual_seed(0)
    kw = {"drop_rate": 1.0, "threshold": 0.5}  # always the drop mask
    released = build_model(_cfg("adl", method_kwargs={**kw, "placement": "released"}), K)
    stages = build_model(_cfg("adl", method_kwargs=kw), K)
    stages.load_state_dict(released.state_dict())
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    for model, post in ((released, True), (stages, False)):
        model.train()
        f5 = model(x).features[5].detach()
        att = f5.mean(1)  # an ADL drop mask zeroes the most attended position of its input
        if post:  # the AU loss sees layer 5 after ADL: its peaks are dropped
            assert float(f5.abs().amax(1).flatten(1).min(1).values.max()) == 0.0
        else:
            assert float(att.flatten(1).amax(1).min()) > 0.0
    released.eval()
    stages.eval()
    assert torch.allclose(released(x).logits, stages(x).logits, atol=1e-5)  # ADL is the identity at test


def test_adl_released_indexing_shifts_pretrained_blocks_and_takes_the_cam_from_layer4s_second_block():
    torch.manual_seed(0)
    cam = build_model(_cfg("cam", "resnet50-s8", 64), K)
    torch.manual_seed(0)
    adl = build_model(_cfg("adl", "resnet50-s8", 64, method_kwargs={"placement": "released", "released_indexing": True}), K)
    a, c = adl.backbone.net, cam.backbone.net
    w = lambda blk: blk.conv1.weight  # noqa: E731
    assert torch.equal(w(a.layer3[0]), w(c.layer3[0]))
    for i in range(1, 5):  # block i holds the weights of block i + 1
        assert torch.equal(w(a.layer3[i]), w(c.layer3[i + 1]))
    assert not any(torch.equal(w(a.layer3[5]), w(b)) for b in c.layer3)  # left at a random init
    assert torch.equal(w(a.layer4[1]), w(c.layer4[2]))
    assert not any(torch.equal(w(a.layer4[2]), w(b)) for b in c.layer4)
    adl.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        out = adl(x)
        f4 = out.features[4]
        second = a.layer4[1](a.layer4[0](f4))
        assert torch.allclose(out.cams, adl.head(second), atol=1e-5)
        assert torch.allclose(out.logits, adl.head(out.features[5]).mean((2, 3)), atol=1e-5)


def test_adl_options_are_checked():
    with pytest.raises(ConfigError, match="released_indexing needs placement='released'"):
        build_model(_cfg("adl", method_kwargs={"released_indexing": True}), K)


def test_apvit_released_shapes_at_112_px():
    model = build_model(_cfg("apvit", "resnet50", 112), K)
    assert model.backbone_name == "ir50-vit"
    assert model.backbone.embed_dim == 768 and len(model.backbone.blocks) == 8
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 112, 112))
    assert out.logits.shape == (2, K)
    assert out.features[5].shape == (2, 256, 14, 14)  # layer 5: the IR-50 map the ViT reads
    # APP keeps 160 of 196 tokens; ATP in blocks 5-8 keeps int(0.9 n): 144, 129, 116, 104
    assert out.aux["kept_tokens"] == [160, 160, 160, 160, 160, 144, 129, 116, 104]
    assert out.aux["app_map"].shape == (2, 14, 14)


def test_apvit_weights_load_strictly_from_the_released_files(tmp_path, monkeypatch):
    from fer_models.backbones import irvit

    src = irvit.ir_tiny_vit(image_size=32)
    ir = {k: v for k, v in src.state_dict().items() if k.startswith(("input_layer.", "body."))}
    ir["body.99.res_layer.0.weight"] = torch.zeros(1)  # stage 4 of IR-50: not built, set aside
    ir["output_layer.1.weight"] = torch.zeros(1)
    vit = {k: v for k, v in src.state_dict().items() if k.startswith(("blocks.", "norm.", "cls_token"))}
    vit["pos_embed"] = torch.cat([src.cls_pos_embed, src.patch_pos_embed], 1)
    vit["patch_embed.proj.weight"] = torch.zeros(1)
    vit["head.weight"] = torch.zeros(1)
    torch.save(ir, tmp_path / irvit.IR50_FILE)
    torch.save(vit, tmp_path / irvit.VIT_FILE)
    net = irvit.IRViT("ir-tiny-vit", (16, 32, 64), (1, 1, 2), 64, 4, 2, 2.0, 32)
    irvit.load_released_weights(net, tmp_path)
    for k, v in {**ir, **vit}.items():
        if k in net.state_dict():
            assert torch.equal(net.state_dict()[k], v), k
    assert torch.equal(net.patch_pos_embed, src.patch_pos_embed)
    del vit["norm.weight"]
    torch.save(vit, tmp_path / irvit.VIT_FILE)
    with pytest.raises(MissingWeightsError, match="first mismatch: norm.weight"):
        irvit.load_released_weights(net, tmp_path)
    monkeypatch.setenv("FER_ORCH_HOME", str(tmp_path / "home"))
    with pytest.raises(MissingWeightsError, match=irvit.IR50_FILE):
        irvit.ir50_vit(pretrained=True, image_size=32)


def test_wildcat_released_scores_drop_the_kmin_term():
    from fer_models.methods.wildcat import wildcat_pool

    maps = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    top = maps.flatten(2).sort(-1, descending=True).values[..., :8].mean(-1)
    assert torch.allclose(wildcat_pool(maps, 0.5, 0.1, 0.6, kmin_term=False), top)
    assert not torch.allclose(wildcat_pool(maps, 0.5, 0.1, 0.6, kmin_term=True), top)
    model = build_model(_cfg("wildcat", method_kwargs={"kmin_term": False}), K)
    assert model.kmin_term is False


def test_prm_released_pooling_is_maxpool_then_average():
    from fer_models.methods.prm import PRM

    model = build_model(_cfg("prm", method_kwargs={"pooling": "maxpool"}), K)
    assert isinstance(model, PRM)
    crm = torch.arange(16.0).view(1, 1, 4, 4).expand(1, K, 4, 4)
    model.head = nn.Identity()
    model.backbone = type("B", (nn.Module,), {"forward": lambda self, x: {l: crm for l in range(1, 6)}})()
    # 3x3 max of stride 1 on 0..15 row-major: [[10, 11], [14, 15]], mean 12.5
    assert torch.allclose(model(torch.zeros(1, 3, 4, 4)).logits, torch.full((1, K), 12.5))


# --------------------------------------------------------------------------------------
# optimiser, schedule, weights
# --------------------------------------------------------------------------------------


def test_param_groups_put_the_new_head_and_head_layers_at_head_lr():
    from fer_models.train import make_optimizer, param_groups

    model = build_model(_cfg("acol"), K)
    one = param_groups(_cfg("acol", lr=0.1), model)
    assert len(one) == 1 and one[0]["lr"] == 0.1
    cfg = _cfg("acol", lr=0.1, head_lr=1.0, head_layers=(5,), nesterov=True)
    groups = {g["name"]: g for g in param_groups(cfg, model)}
    head_ids = {id(p) for m in (model.head, model.head_b, model.backbone.stage(5)) for p in m.parameters()}
    assert {id(p) for p in groups["head"]["params"]} == head_ids
    assert groups["head"]["lr"] == 1.0 and groups["backbone"]["lr"] == 0.1
    assert len(groups["backbone"]["params"]) + len(groups["head"]["params"]) == len(list(model.parameters()))
    opt = make_optimizer(cfg, model)
    assert all(g["nesterov"] for g in opt.param_groups)
    with pytest.raises(ConfigError, match="nesterov applies to SGD only"):
        make_optimizer(_cfg("acol", optimizer="adamw", nesterov=True), model)


def test_released_step_schedule_decays_once_per_epoch_with_a_floor():
    from fer_models.train import make_optimizer, make_scheduler

    model = build_model(_cfg("cam"), K)
    cfg = _cfg("cam", lr=0.1, head_lr=1.0, scheduler="step", lr_step=2, lr_gamma=0.5, min_lr=0.02, epochs=8)
    opt = make_optimizer(cfg, model)
    sched = make_scheduler(cfg, opt, steps_per_epoch=3)
    seen = []
    for _ in range(8 * 3):
        seen.append([round(g["lr"], 6) for g in opt.param_groups])
        opt.step()
        sched.step()
    per_epoch = [seen[3 * e] for e in range(8)]
    assert all(seen[3 * e] == seen[3 * e + 2] for e in range(8))  # constant within an epoch
    assert [lr[0] for lr in per_epoch] == [0.1, 0.1, 0.05, 0.05, 0.025, 0.025, 0.02, 0.02]  # floor 0.02
    assert [lr[1] for lr in per_epoch] == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25, 0.125, 0.125]


def test_weights_tag_resolves_to_torchvisions_resnet50_from_timms_config():
    """No download: timm's pretrained config of the tag, and the name the backbone asks timm for."""
    import timm

    cfg = timm.models.get_pretrained_cfg("resnet50.tv_in1k")
    assert cfg.url.startswith("https://download.pytorch.org/models/resnet50-")  # torchvision's file
    assert "pytorch/vision" in cfg.origin_url
    assert timm.models.get_pretrained_cfg("resnet50").tag == "a1_in1k"  # timm's default is another one
    paper = TrainConfig(method="cam", backbone="resnet50-s8", pretrained=True)
    assert resolve_weights(paper) == ("resnet50-s8", "hub:tv_in1k")
    assert resolve_weights(TrainConfig(method="tscam", backbone="resnet50-s8", pretrained=True)) == (
        "deit-small", "hub:fb_in1k")
    assert resolve_weights(TrainConfig(method="cam", backbone="resnet50", pretrained=True, weights_tag="a1_in1k")) == (
        "resnet50", "hub:a1_in1k")
    assert resolve_weights(TrainConfig(method="cam", backbone="resnet-tiny")) == ("resnet-tiny", "none")


def test_pretrained_hub_weights_ask_timm_for_the_tagged_name(monkeypatch):
    import timm

    from fer_models.backbones import _base

    asked = []
    real = timm.create_model

    def fake(name, pretrained=False, **kw):  # what the hub would give, without the download
        asked.append((name, pretrained))
        return real(name.split(".")[0], pretrained=False, **kw)

    monkeypatch.setattr(timm, "create_model", fake)
    monkeypatch.setattr(_base, "_hub_reachable", lambda *a, **k: False)
    model = build_model(TrainConfig(method="cam", backbone="resnet50-s8", pretrained=True,
                                    data=DataConfig(image_size=32)), K)
    assert asked == [("resnet50.tv_in1k", True)] and model.weights == "hub:tv_in1k"

    def offline(name, pretrained=False, **kw):
        raise OSError("no network")

    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(MissingWeightsError, match="'resnet50.tv_in1k' could not be fetched"):
        build_model(TrainConfig(method="cam", backbone="resnet50", pretrained=True), K)
