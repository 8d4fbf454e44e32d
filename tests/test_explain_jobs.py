"""The explain job runner: spec checks, in-process jobs with fakes, MLflow logging, Ray end-to-end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from fer_analysis.hooks import assert_no_hooks
from fer_models.errors import ConfigError
from orchestrator.explain import ExplainSpec, explain_one

torch.set_num_threads(1)


class _Cfg:
    method = "toy"
    seed = 0


def _dense_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(4 * 8 * 8, 16), nn.ReLU(), nn.Linear(16, 7)).eval()


def _gap_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(4, 7)).eval()


def _loader():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(24, 3, 16, 16, generator=g)
    y = torch.randint(0, 7, (24,), generator=g)
    return DataLoader(TensorDataset(x, y), batch_size=8)


def test_spec_check_refuses_unknown_jobs_before_any_work():
    with pytest.raises(ConfigError, match="unknown explain job.*known jobs: topn, filter-au, backtrack, gradcam"):
        ExplainSpec(jobs=("topn", "saliency")).check()
    with pytest.raises(ConfigError, match="no explain job"):
        ExplainSpec(jobs=()).check()


@pytest.mark.parametrize("job", ["topn", "backtrack", "gradcam"])
def test_explain_one_in_process_with_fakes(job):
    net = _dense_net()
    res = explain_one("r1", job, ExplainSpec(jobs=(job,), n=3, filters=2, device="cpu"),
                      load_model=lambda r, u, d: (net, _Cfg()), load_data=lambda c, s, j: (_loader(), 7),
                      log=False)
    assert res["status"] == "ok", res["reason"]
    assert any(f.endswith(".png") for f in res["files"])
    assert "summary.json" in res["files"] and res["metrics"]
    assert_no_hooks(net)


def test_backtrack_on_a_gap_head_is_skipped_with_the_reason():
    net = _gap_net()
    res = explain_one("r1", "backtrack", ExplainSpec(jobs=("backtrack",), device="cpu"),
                      load_model=lambda r, u, d: (net, _Cfg()), load_data=lambda c, s, j: (_loader(), 7),
                      log=False)
    assert res["status"] == "skipped"
    assert "globally pooled" in res["reason"]
    assert res["files"] == ["skipped.txt", "summary.json"]
    assert_no_hooks(net)


def test_filter_au_without_au_labels_is_a_clear_error():
    from fer_models.errors import DatasetError

    with pytest.raises(DatasetError, match="needs AU labels"):
        explain_one("r1", "filter-au", ExplainSpec(jobs=("filter-au",), device="cpu"),
                    load_model=lambda r, u, d: (_dense_net(), _Cfg()),
                    load_data=lambda c, s, j: (_loader(), 7), log=False)


def test_results_are_logged_to_the_explained_run(tmp_path):
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    c = mlflow.MlflowClient(tracking_uri=uri)
    exp = c.create_experiment("explain-test", artifact_location=(tmp_path / "artifacts").as_uri())
    rid = c.create_run(exp, tags={"fer_orch.kind": "trial"}).info.run_id
    res = explain_one(rid, "gradcam", ExplainSpec(jobs=("gradcam",), n=2, device="cpu"), uri,
                      load_model=lambda r, u, d: (_dense_net(), _Cfg()),
                      load_data=lambda c_, s, j: (_loader(), 7))
    files = {f.path for f in c.list_artifacts(rid, "explain/gradcam")}
    assert {"explain/gradcam/gradcam_blocks.png", "explain/gradcam/class_mean_maps.png",
            "explain/gradcam/summary.json"} <= files
    logged = c.get_run(rid).data.metrics
    assert logged["gradcam_blocks"] == res["metrics"]["gradcam_blocks"] == 1.0


def test_cli_unknown_job_and_unknown_run_are_one_red_sentence(tmp_path):
    from orchestrator.cli import main

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    r = CliRunner().invoke(main, ["explain", "--run", "x", "--job", "saliency", "--tracking-uri", uri])
    assert r.exit_code == 2 and "unknown explain job(s) saliency" in r.output
    r = CliRunner().invoke(main, ["explain", "--run", "nope", "--job", "topn", "--tracking-uri", uri])
    assert r.exit_code == 2 and "no MLflow run 'nope'" in r.output


@pytest.mark.slow  # generates the synthetic faces (~15 s), trains a few steps, starts Ray actors
@pytest.mark.ray
def test_grid_parent_end_to_end_on_ray(tmp_path, ray_local, log_trial):
    """A grid parent with a Tiny VGG (dense head) and a CAM ResNet (GAP head) trial: every job
    runs on Ray actors, results land in MLflow, backtrack on the CAM ResNet is skipped."""
    import mlflow

    from fer_models.config import DataConfig, TrainConfig
    from fer_models.data.dataset import build_loaders
    from fer_models.methods import build_model
    from orchestrator import tracking
    from orchestrator.explain import explain_runs

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    c = mlflow.MlflowClient(tracking_uri=uri)
    exp = c.create_experiment("explain-e2e", artifact_location=(tmp_path / "artifacts").as_uri())
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
    assert status[(tv, "backtrack")]["status"] == "ok"
    files = {f.path for f in c.list_artifacts(tv, "explain/filter-au")}
    assert "explain/filter-au/filter_au_conv3_2.md" in files
    assert "explain/filter-au/topn_conv3_2.png" in files
    metrics = c.get_run(tv).data.metrics
    assert metrics["filter_au_samples"] == 128 and "backtrack_pred_prob_after" in metrics
    skipped = c.download_artifacts(runs["cam"], "explain/backtrack/summary.json", str(tmp_path / "dl"))
    assert json.loads(Path(skipped).read_text())["status"] == "skipped"
