"""The explain jobs: registry and spec, in-process jobs with fakes, MLflow logging, a new job
added as one file, Ray end-to-end."""

from __future__ import annotations

import importlib
import json
import math
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from click.testing import CliRunner
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from fer_analysis.hooks import assert_no_hooks
from fer_analysis.jobs import ExplainSpec, job_names, run_job
from fer_analysis.registry import JOBS
from fer_models.config import TrainConfig
from fer_models.errors import ConfigError
from orchestrator.explain import explain_one

torch.set_num_threads(1)


def _cfg(**fields) -> TrainConfig:
    """A run's config as the jobs get it (a real TrainConfig: they read its fields)."""
    return TrainConfig(**{"method": "toy", "seed": 0, "au": False, "lam": 0.0, **fields})


def _dense_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(4 * 8 * 8, 16), nn.ReLU(), nn.Linear(16, 7)).eval()


def _gap_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(4, 7)).eval()


def _loader(n: int = 24):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, 16, 16, generator=g)
    y = torch.randint(0, 7, (n,), generator=g)
    return DataLoader(TensorDataset(x, y), batch_size=8)


def _pairable_loader(net, n: int = 24):
    """Labels = the net's predictions, except 4 images relabelled as the class of another image:
    4 misclassified images, each with a correctly classified partner (backtrack's pairs)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, 16, 16, generator=g)
    with torch.no_grad():
        y = net(x).argmax(1)
    for i in range(4):
        other = [int(v) for v in y[4:] if v != y[i]]
        assert other, "the toy net predicts one class only"
        y[i] = other[0]
    return DataLoader(TensorDataset(x, y), batch_size=8)


def _fakes(net):
    return dict(load_model=lambda r, u, d: (net, _cfg()), load_data=lambda c, s, j: (_loader(), 7))


def test_registry_holds_the_four_jobs_with_their_split_and_the_old_gradcam_name():
    assert job_names() == ["backtrack", "block-maps", "filter-au", "topn"]
    split = {j: JOBS.meta(j)["split"] for j in job_names()}
    assert split == {"topn": "train", "filter-au": "train", "backtrack": "test", "block-maps": "test"}
    assert "au-labels" in JOBS.meta("filter-au")["needs"] and "dense-head" in JOBS.meta("backtrack")["needs"]
    assert JOBS.meta("gradcam")["alias_of"] == "block-maps" and JOBS.get("gradcam") is JOBS.get("block-maps")


def test_spec_check_refuses_unknown_jobs_before_any_work():
    with pytest.raises(ConfigError, match=r"unknown explain job\(s\) saliency; known jobs: backtrack, block-maps, "
                                          r"filter-au, topn \(aliases: gradcam\)"):
        ExplainSpec(jobs=("topn", "saliency")).check()
    with pytest.raises(ConfigError, match="no explain job"):
        ExplainSpec(jobs=()).check()
    with pytest.raises(ConfigError, match=r"at least 1: --cases \(got 0\)"):
        ExplainSpec(cases=0).check()


def test_spec_check_resolves_aliases_and_drops_repeats():
    assert ExplainSpec(jobs=("gradcam", "topn", "block-maps", "TOPN")).check().jobs == ("block-maps", "topn")


def test_n_is_the_default_of_top_n_cases_and_images():
    assert (ExplainSpec().top_n, ExplainSpec().cases, ExplainSpec().images) == (10, 8, 8)  # paper 001: 10 per filter
    spec = ExplainSpec(n=3, cases=5)
    assert (spec.top_n, spec.cases, spec.images) == (3, 5, 3)
    assert ExplainSpec(n=3, cases=5).check() == spec  # check() keeps the counts


def test_each_job_reads_its_own_count(tmp_path):
    spec = ExplainSpec(top_n=2, cases=3, images=5, filters=2, device="cpu")
    run_job("topn", _dense_net(), _loader(), tmp_path / "topn", spec)
    rows = (tmp_path / "topn" / "topn_0.csv").read_text().splitlines()[1:]
    assert len(rows) == 2 * 2  # filters x top_n
    m = run_job("backtrack", _dense_net(), _pairable_loader(_dense_net()), tmp_path / "bt", spec)
    assert m["backtrack_cases"] == 4  # every misclassified image is tested; --cases: the ones shown
    assert "The first 3 pairs" in (tmp_path / "bt" / "suppression.md").read_text()
    run_job("gradcam", _dense_net(), _loader(), tmp_path / "maps", spec)
    assert json.loads((tmp_path / "maps" / "gradcam.json").read_text())["images"] == 5


@pytest.mark.parametrize("job", ["topn", "backtrack", "block-maps"])
def test_explain_one_in_process_with_fakes(job):
    net = _dense_net()
    res = explain_one("r1", job, ExplainSpec(jobs=(job,), n=3, filters=2, device="cpu"), log=False, **_fakes(net))
    assert res["status"] == "ok", res["reason"]
    assert any(f.endswith(".png") for f in res["files"])
    assert "summary.json" in res["files"] and res["metrics"]
    assert_no_hooks(net)


def test_backtrack_on_a_gap_head_is_skipped_with_the_reason():
    net = _gap_net()
    res = explain_one("r1", "backtrack", ExplainSpec(jobs=("backtrack",), device="cpu"), log=False, **_fakes(net))
    assert res["status"] == "skipped"
    assert "globally pooled" in res["reason"]
    assert res["files"] == ["skipped.txt", "summary.json"]
    assert_no_hooks(net)


def test_filter_au_without_au_labels_is_a_clear_error():
    from fer_models.errors import DatasetError

    with pytest.raises(DatasetError, match="needs AU labels"):
        explain_one("r1", "filter-au", ExplainSpec(jobs=("filter-au",), device="cpu"), log=False,
                    **_fakes(_dense_net()))


def test_results_are_logged_to_the_explained_run_under_the_jobs_own_name(mlflow_store):
    c = mlflow_store.client
    rid = c.create_run(mlflow_store.exp, tags={"fer_orch.kind": "trial"}).info.run_id
    res = explain_one(rid, "gradcam", ExplainSpec(jobs=("gradcam",), n=2, device="cpu"), mlflow_store.uri,
                      **_fakes(_dense_net()))
    assert res["job"] == "block-maps"
    files = {f.path for f in c.list_artifacts(rid, "explain/block-maps")}
    assert {"explain/block-maps/gradcam_blocks.png", "explain/block-maps/class_mean_maps.png",
            "explain/block-maps/summary.json"} <= files
    logged = c.get_run(rid).data.metrics
    assert logged["gradcam_blocks"] == res["metrics"]["gradcam_blocks"] == 1.0


def test_cli_unknown_job_and_unknown_run_are_one_red_sentence(tmp_path):
    from orchestrator.cli import main

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    r = CliRunner().invoke(main, ["explain", "--run", "x", "--job", "saliency", "--tracking-uri", uri])
    assert r.exit_code == 2 and "unknown explain job(s) saliency" in r.output
    r = CliRunner().invoke(main, ["explain", "--run", "nope", "--job", "topn", "--tracking-uri", uri])
    assert r.exit_code == 2 and "no MLflow run 'nope'" in r.output


def test_cli_keeps_n_and_the_gradcam_name_and_adds_a_count_per_job(monkeypatch):
    from orchestrator import explain as explain_mod
    from orchestrator.cli import main

    seen = {}

    def fake_runs(run_id, spec, **kw):
        seen["spec"], seen["kw"] = spec.check(), kw
        return [{"run_id": run_id, "job": j, "status": "ok", "metrics": {}} for j in seen["spec"].jobs]

    monkeypatch.setattr(explain_mod, "explain_runs", fake_runs)
    r = CliRunner().invoke(main, ["explain", "--run", "r1", "--job", "gradcam,topn", "--n", "3", "--cases", "5",
                                  "--num-actors", "0"])
    assert r.exit_code == 0, r.output
    spec = seen["spec"]
    assert spec.jobs == ("block-maps", "topn") and (spec.top_n, spec.cases, spec.images) == (3, 5, 3)
    assert seen["kw"]["num_actors"] == 0 and "explain/block-maps/" in r.output


def test_a_new_job_is_one_file_and_runs_through_the_runner_in_process(tmp_path, monkeypatch):
    """A throw-away job written as one module: registering it is all it takes for the spec, the
    runner (in-process), the split it asks for, the MLflow path and `fer-orch list jobs`."""
    from fer_models.config import DataConfig
    from orchestrator import tracking
    from orchestrator.cli import main
    from orchestrator.explain import explain_runs

    JOBS.names()  # load the registry, then let the test forget what it adds
    monkeypatch.setattr(JOBS, "_entries", dict(JOBS._entries))
    monkeypatch.setattr(JOBS, "_meta", dict(JOBS._meta))
    (tmp_path / "throwaway_job.py").write_text(textwrap.dedent('''
        from fer_analysis.jobs import register_job

        @register_job("throwaway", split="train", needs=("nothing",), paper="none")
        def throwaway(model, loader, out_dir, spec, *, num_classes=None, device="cpu", progress=False):
            """Counts the images of its split."""
            images = sum(len(x) for x, _ in loader)
            (out_dir / "count.txt").write_text(str(images))
            return {"throwaway_images": float(images), "throwaway_top_n": float(spec.top_n)}
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.import_module("throwaway_job")

    train, test = _loader(24), _loader(8)
    monkeypatch.setattr("fer_models.data.dataset.build_loaders",
                        lambda *a, **k: SimpleNamespace(train=train, val=None, test=test, num_classes=7))
    cfg = _cfg(method="toy", seed=0, data=DataConfig())
    logged = {}
    monkeypatch.setattr(tracking, "resolve_uri", lambda uri=None: "fake://store")
    monkeypatch.setattr(tracking, "resolve_runs", lambda run_id, uri=None: ["run-a", "run-b"])
    monkeypatch.setattr("orchestrator.actors.run_states",  # every run FINISHED with weights
                        lambda runs, uri=None: {r: ("FINISHED", True) for r in runs})
    monkeypatch.setattr(tracking, "load_trained_model", lambda run_id, uri, device: (_dense_net(), cfg))
    monkeypatch.setattr(tracking, "load_run_config", lambda run_id, uri=None: cfg)
    monkeypatch.setattr(tracking, "log_to_run", lambda run_id, folder, path, metrics, uri=None: logged.update(
        {(run_id, path): sorted(p.name for p in Path(folder).iterdir())}))

    out = explain_runs("parent", ExplainSpec(jobs=("throwaway",), top_n=3, device="cpu"), num_actors=0,
                       progress=False)
    assert [(r["run_id"], r["status"]) for r in out] == [("run-a", "ok"), ("run-b", "ok")]
    assert out[0]["metrics"] == {"throwaway_images": 24.0, "throwaway_top_n": 3.0}  # its split: train
    assert logged == {(r, "explain/throwaway"): ["count.txt", "summary.json"] for r in ("run-a", "run-b")}
    listed = CliRunner().invoke(main, ["list", "jobs"]).output
    assert "throwaway" in listed and "Counts the images of its split." in listed


@pytest.mark.slow  # generates the synthetic faces (~15 s), trains a few steps, starts Ray actors
@pytest.mark.ray
def test_grid_parent_end_to_end_on_ray(tmp_path, ray_local, log_trial, mlflow_store):
    """A grid parent with a Tiny VGG (dense head) and a CAM ResNet (GAP head) trial: every job
    runs on Ray actors, results land in MLflow, backtrack on the CAM ResNet is skipped, the old
    job name ``gradcam`` runs ``block-maps``."""
    from fer_models.config import DataConfig, TrainConfig
    from fer_models.data.dataset import build_loaders
    from fer_models.methods import build_model
    from orchestrator import tracking
    from orchestrator.explain import explain_runs

    uri, c, exp = mlflow_store.uri, mlflow_store.client, mlflow_store.exp
    parent = c.create_run(exp, tags={tracking.KIND_TAG: "grid"}).info.run_id
    data = DataConfig(image_size=32, augment=False)
    loaders = build_loaders(data, 32, 0, progress=False)
    runs = {}
    for method, backbone in (("tiny-vgg", "resnet18"), ("cam", "resnet-tiny")):
        cfg = TrainConfig(method=method, backbone=backbone, data=data, epochs=1)
        torch.manual_seed(0)
        model = build_model(cfg)
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        for i, batch in enumerate(loaders.train):  # a few real steps: a "tiny trained model"
            loss = nn.functional.cross_entropy(model(batch["image"]).logits, batch["label"])
            opt.zero_grad()
            loss.backward()
            opt.step()
            if i == 4:
                break
        runs[method] = log_trial(c, exp, parent, cfg, model.state_dict(), method)

    spec = ExplainSpec(jobs=("filter-au", "backtrack", "gradcam"), n=3, filters=3, max_images=128, device="cpu")
    out = explain_runs(parent, spec, uri=uri, num_actors=2, progress=False)
    status = {(r["run_id"], r["job"]): r for r in out}
    assert len(out) == 6 and not [r for r in out if r["status"] == "failed"], out
    assert status[(runs["cam"], "backtrack")]["status"] == "skipped"
    assert "does not apply" in status[(runs["cam"], "backtrack")]["reason"]
    tv = runs["tiny-vgg"]
    assert status[(tv, "backtrack")]["status"] == "ok" and status[(tv, "block-maps")]["status"] == "ok"
    files = {f.path for f in c.list_artifacts(tv, "explain/filter-au")}
    assert "explain/filter-au/filter_au_conv3_2.md" in files
    assert "explain/filter-au/topn_conv3_2.png" in files
    metrics = c.get_run(tv).data.metrics
    assert metrics["filter_au_samples"] == 128 and "backtrack_kept_pixel_fraction" in metrics
    skipped = c.download_artifacts(runs["cam"], "explain/backtrack/summary.json", str(tmp_path / "dl"))
    assert json.loads(Path(skipped).read_text())["status"] == "skipped"


# --------------------------------------------------------------------------- identity runs, --compare-run, AU warning
def _faces_with_ids(n: int = 32, n_ids: int = 4, size: int = 16):
    """Identity templates + noise; label = expression (i % 7), identity = i % n_ids."""
    g = torch.Generator().manual_seed(3)
    templates = torch.randn(n_ids, 3, size, size, generator=g)
    ids = torch.arange(n) % n_ids
    x = templates[ids] + 0.3 * torch.randn(n, 3, size, size, generator=g)
    items = [{"image": x[i], "label": torch.tensor(i % 7), "identity": ids[i], "index": torch.tensor(i)}
             for i in range(n)]

    class _Items(torch.utils.data.Dataset):
        def __len__(self):
            return n

        def __getitem__(self, i):
            return items[i]

    return DataLoader(_Items(), batch_size=8)


def _tiny_vgg(num_classes: int, seed: int):
    from fer_models.config import DataConfig, TrainConfig
    from fer_models.methods import build_model

    torch.manual_seed(seed)
    return build_model(TrainConfig(method="tiny-vgg", data=DataConfig(image_size=16)), num_classes).eval()


def test_every_job_runs_on_an_identity_run_and_says_what_does_not_apply():
    """An identity run (4 identities): its classes are the identity column; the per-class
    expression maps of block-maps are 'not applicable' with a sentence, the rest runs."""
    net = _tiny_vgg(4, 0)
    cfg = _cfg(method="tiny-vgg", seed=0, target="identity", au=False, lam=0.0)
    fakes = dict(load_model=lambda r, u, d: (net, cfg), load_data=lambda c, s, j: (_faces_with_ids(), 7))
    spec = ExplainSpec(jobs=("backtrack", "block-maps", "topn"), n=2, filters=2, max_images=16, device="cpu")
    res = {job: explain_one("id-run", job, spec, log=False, **fakes) for job in spec.jobs}
    for r in res.values():
        assert r["status"] == "ok", r["reason"]
        assert r["target"] == "identity" and r["warnings"] == []
    assert "class_mean_maps_skipped.txt" in res["block-maps"]["files"]
    assert "class_mean_maps.png" not in res["block-maps"]["files"]
    assert res["block-maps"]["metrics"]["class_maps_samples"] == 0
    assert res["backtrack"]["metrics"]["backtrack_scanned"] == 16
    assert_no_hooks(net)


def test_backtrack_compares_an_expression_run_with_an_identity_run_on_the_same_images():
    """`--compare-run`: the explained (expression) run's test images backtracked through both
    networks; same architecture, so the kept pixel sets overlay (paper 003, Fig. 7)."""
    expr, ident = _tiny_vgg(7, 1), _tiny_vgg(4, 2)
    # configs without data: the compared run is read on the explained run's images only
    cfgs = {"expr-run": SimpleNamespace(method="tiny-vgg", seed=0, target="expression", au=False, lam=0.0),
            "id-run": SimpleNamespace(method="tiny-vgg", seed=0, target="identity", au=False, lam=0.0)}
    models = {"expr-run": expr, "id-run": ident}
    fakes = dict(load_model=lambda r, u, d: (models[r], cfgs[r]), load_data=lambda c, s, j: (_faces_with_ids(), 7))
    spec = ExplainSpec(jobs=("backtrack",), cases=2, compare_run="id-run", compare_images=20, device="cpu").check()
    res = explain_one("expr-run", "backtrack", spec, log=False, **fakes)
    assert res["status"] == "ok", res["reason"]
    assert res["compare_run"] == "id-run"
    m = res["metrics"]
    assert m["backtrack_compare_images"] == 20
    assert 0 < m["backtrack_compare_kept_a"] <= 32 * 2 * 2 and 0 < m["backtrack_compare_kept_b"] <= 32 * 2 * 2
    assert m["backtrack_compare_common"] <= min(m["backtrack_compare_kept_a"], m["backtrack_compare_kept_b"])
    assert 0 <= m["backtrack_compare_jaccard"] <= 1
    assert {"compare.csv", "compare.md", "compare.png"} <= set(res["files"])
    assert_no_hooks(expr)
    assert_no_hooks(ident)


def test_compare_run_needs_the_backtrack_job():
    with pytest.raises(ConfigError, match="--compare-run compares the backtracking"):
        ExplainSpec(jobs=("topn",), compare_run="x").check()


def test_compare_backtracking_counts_and_common_pixels_by_hand(tmp_path):
    """Two copies of the hand network of the backtrack tests: identical networks keep identical
    pixel sets (Jaccard 1); zeroing them all drops both to the same confidence."""
    from fer_analysis.backtrack_compare import compare_backtracking

    net = nn.Sequential(nn.Conv2d(1, 1, 1, bias=False), nn.ReLU(), nn.Flatten(), nn.Linear(4, 2, bias=False),
                        nn.ReLU(), nn.Linear(2, 2, bias=False)).eval()
    with torch.no_grad():
        net[0].weight.fill_(1.0)
        net[3].weight.copy_(torch.tensor([[1.0, 0, 1, 1], [0, 1, 0, 1]]))
        net[5].weight.copy_(torch.eye(2))
    x = torch.tensor([[1.0, 1.0, 1.5, 0.5], [0.0, 2.0, 0.0, 1.0]]).reshape(2, 1, 2, 2)
    loader = DataLoader(TensorDataset(x, torch.tensor([0, 1])), batch_size=2)
    m = compare_backtracking(net, net, loader, tmp_path, target_a="expression", target_b="expression")
    rows = list(__import__("csv").DictReader(open(tmp_path / "compare.csv")))
    assert [(r["kept_a"], r["kept_b"], r["common"]) for r in rows] == [("3", "3", "3"), ("2", "2", "2")]
    assert m["backtrack_compare_jaccard"] == 1.0 and m["backtrack_compare_accuracy_a"] == 1.0
    # all kept pixels zeroed: image 1 keeps a0 = [0, 1, 0, 0] (P(class 0) = softmax([0, 1])[0]), image 2 none (0.5)
    assert m["backtrack_compare_a_after_common"] == pytest.approx((1 / (1 + math.e) + 0.5) / 2)
    assert m["backtrack_compare_a_after_unique"] == pytest.approx(m["backtrack_compare_a_pred_prob"])  # nothing unique


def test_a_run_trained_with_the_au_loss_is_warned_about_before_the_jobs_and_in_each_summary(monkeypatch):
    from fer_models.config import DataConfig
    from orchestrator import tracking
    from orchestrator.cli import main
    from orchestrator.explain import run_warnings

    au_cfg = _cfg(method="toy", seed=0, au=True, lam=1.0, layers=(5,), data=DataConfig())
    plain = _cfg(method="toy", seed=0, au=False, lam=1.0, layers=(5,), data=DataConfig())
    assert run_warnings(plain) == [] and run_warnings(_cfg(au=True, lam=0.0)) == []
    assert "AU alignment loss" in run_warnings(au_cfg)[0]
    cfgs = {"au-run": au_cfg, "plain-run": plain}
    monkeypatch.setattr(tracking, "resolve_uri", lambda uri=None: "fake://store")
    monkeypatch.setattr(tracking, "resolve_runs", lambda run_id, uri=None: ["au-run", "plain-run"])
    monkeypatch.setattr("orchestrator.actors.run_states",  # every run FINISHED with weights
                        lambda runs, uri=None: {r: ("FINISHED", True) for r in runs})
    monkeypatch.setattr(tracking, "load_run_config", lambda run_id, uri=None: cfgs[run_id])
    monkeypatch.setattr(tracking, "load_trained_model", lambda run_id, uri, device: (_dense_net(), cfgs[run_id]))
    monkeypatch.setattr(tracking, "log_to_run", lambda *a, **k: None)
    monkeypatch.setattr("fer_models.data.dataset.build_loaders",
                        lambda *a, **k: SimpleNamespace(train=_loader(), val=None, test=_loader(), num_classes=7))
    r = CliRunner().invoke(main, ["explain", "--run", "parent", "--job", "block-maps", "--n", "2",
                                  "--num-actors", "0", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert r.output.count("warning:") == 1 and "run au-run: trained with the AU alignment loss" in r.output
    assert r.output.index("warning:") < r.output.index("explain/block-maps/")  # before the results
    from orchestrator.explain import explain_runs

    out = explain_runs("parent", ExplainSpec(jobs=("block-maps",), n=2, device="cpu"), num_actors=0, progress=False)
    assert [bool(o["warnings"]) for o in out] == [True, False]


def test_block_maps_default_to_paper_004_fig2_blocks_on_the_light_cnn_and_take_gradcam_layers(tmp_path):
    from fer_models.config import DataConfig, TrainConfig
    from fer_models.errors import UnknownNameError
    from fer_models.methods import build_model

    from fer_analysis.jobs.block_maps import default_blocks

    torch.manual_seed(0)
    net = build_model(TrainConfig(method="light-cnn", data=DataConfig(image_size=16))).eval()
    assert default_blocks(net) == ["batchnorm_1", "conv2d_4", "conv2d_6"]
    run_job("block-maps", net, _loader(8), tmp_path / "b", ExplainSpec(images=2, gradcam_layers=("conv2d_2",)))
    com = json.loads((tmp_path / "b" / "gradcam.json").read_text())["block_map_centre_of_mass"]
    assert list(com) == ["conv2d_2"]
    with pytest.raises(UnknownNameError, match="unknown layer 'conv9'"):
        run_job("block-maps", net, _loader(8), tmp_path / "c", ExplainSpec(images=2, gradcam_layers=("conv9",)))
    assert not (tmp_path / "c" / "gradcam_blocks.png").exists()
    assert_no_hooks(net)


@pytest.mark.slow  # generates the synthetic faces (~15 s) and trains two Tiny VGGs for a few steps
def test_expression_and_identity_tiny_vggs_on_synthetic_faces_backtrack_and_compare(tmp_path):
    """Paper 003's two networks on the synthetic faces: a Tiny VGG trained a few steps for
    expressions, one for identities (the synthetic faces carry them); each is backtracked with
    its own pixel sets (unique / common) and the expression run is compared with the identity
    run on the same test images. Models are handed to the runner directly (no MLflow):
    ``TrainConfig.target`` arrives with the data-protocol branch."""
    from fer_models.config import DataConfig, TrainConfig
    from fer_models.data.dataset import build_loaders
    from fer_models.methods import build_model

    data = DataConfig(image_size=32, augment=False)
    loaders = build_loaders(data, 32, 0, progress=False)
    n_ids = len(loaders.info.meta["identities"])
    assert n_ids > 5
    models, cfgs = {}, {}
    for target, k in (("expression", loaders.num_classes), ("identity", n_ids)):
        cfg = TrainConfig(method="tiny-vgg", data=data, au=False)
        torch.manual_seed(0)
        model = build_model(cfg, k)
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        for i, batch in enumerate(loaders.train):
            y = batch["identity"] if target == "identity" else batch["label"]
            loss = nn.functional.cross_entropy(model(batch["image"]).logits, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if i == 5:
                break
        models[target] = model.eval()
        cfgs[target] = _cfg(method="tiny-vgg", seed=0, target=target, au=False, lam=0.0, data=data)
    fakes = dict(load_model=lambda r, u, d: (models[r], cfgs[r]),
                 load_data=lambda c, s, j: (loaders.test, loaders.num_classes))
    spec = ExplainSpec(jobs=("backtrack",), cases=4, compare_run="identity", compare_images=64, device="cpu").check()
    res = explain_one("expression", "backtrack", spec, log=False, **fakes)
    assert res["status"] == "ok", res["reason"]
    m = res["metrics"]
    assert m["backtrack_compare_images"] == 64 and 0 <= m["backtrack_compare_jaccard"] <= 1
    assert m["backtrack_scanned"] == len(loaders.test.dataset)
    ident = explain_one("identity", "backtrack", ExplainSpec(jobs=("backtrack",), cases=4, device="cpu"), log=False,
                        **fakes)
    assert ident["status"] == "ok", ident["reason"]
    assert ident["target"] == "identity"
    for model in models.values():
        assert_no_hooks(model)
