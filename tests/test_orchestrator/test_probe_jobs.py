"""Probe jobs: one run in-process with fakes, and end to end over MLflow + Ray actors."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from fer_models.config import TrainConfig
from fer_models.errors import ConfigError, UnknownNameError
from orchestrator.probe import ProbeSpec, compare_and_log, probe_one

torch.set_num_threads(1)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.fc = nn.Linear(64, 16)
        self.out = nn.Linear(16, 7)

    def forward(self, x):
        return self.out(torch.relu(self.fc(self.pool(torch.relu(self.conv(x))).flatten(1))))

    def tap_layers(self):
        return {"conv": self.conv, "pool": self.pool, "fc": self.fc}


def _probe_set(n=48, bs=16, n_ids=4, seed=0):
    """Images = an identity template + small noise; valence is a brightness ramp."""
    g = torch.Generator().manual_seed(seed)
    templates = torch.randn(n_ids, 3, 32, 32, generator=g)
    ids = torch.arange(n) % n_ids
    val = torch.linspace(-1, 1, n)
    x = templates[ids] + 0.1 * torch.randn(n, 3, 32, 32, generator=g) + val[:, None, None, None]
    return [{"image": x[i:i + bs], "label": (torch.arange(n) % 7)[i:i + bs], "identity": ids[i:i + bs],
             "valence": val[i:i + bs], "arousal": torch.full((min(bs, n - i),), float("nan"))}
            for i in range(0, n, bs)]


def _fakes(model):
    cfg = TrainConfig(seed=0)
    return dict(
        load_model=lambda run_id, uri, device: (model, cfg),
        load_probe_set=lambda cfg, spec: _probe_set(),
        build_control=lambda cfg, device: (torch.manual_seed(0), Net().eval())[1],
    )


def test_probe_one_in_process_with_control(tmp_path):
    torch.manual_seed(1)
    model = Net().eval()
    spec = ProbeSpec(probes=("silhouette", "valence-arousal", "maps"), umap=False, untrained_control=True,
                     n_samples=40, n_pcs=5)
    res = probe_one("fake-run", spec, log=False, **_fakes(model))
    assert res["n_samples"] == 40
    assert res["layers"] == ["conv", "pool", "fc", "logits"]
    m = res["metrics"]
    for layer in res["layers"]:
        assert f"silhouette_identity_{layer}" in m and f"silhouette_identity_{layer}_untrained" in m
    # identity templates dominate the input: the first layer clusters by identity
    assert m["silhouette_identity_conv"] > 0.3
    assert m["silhouette_identity_conv"] > m["silhouette_expression_conv"]
    assert np.isfinite(m["va_PC1_valence_r"])
    assert m["va_skipped_arousal"] == 40.0
    assert {r["network"] for r in res["tables"]["silhouette"]} == {"trained", "untrained"}
    json.dumps({k: v for k, v in res.items() if k != "tables"}, default=str)  # the summary is JSON-able


def test_compare_and_log_without_mlflow():
    torch.manual_seed(1)
    a = probe_one("aaaaaaaa-1", ProbeSpec(probes=("silhouette",), n_samples=32), log=False, **_fakes(Net().eval()))
    torch.manual_seed(2)
    b = probe_one("bbbbbbbb-2", ProbeSpec(probes=("silhouette",), n_samples=32), log=False, **_fakes(Net().eval()))
    out = compare_and_log(a, b, log=False)
    assert [r["layer"] for r in out["table"]] == ["conv", "pool", "fc", "logits"]
    assert {c["run"] for c in out["crossover"]} == {"aaaaaaaa", "bbbbbbbb"}


def test_spec_check_rejects_mistakes_before_work():
    with pytest.raises(UnknownNameError, match="unknown probe 'nope'"):
        ProbeSpec(probes=("nope",)).check()
    with pytest.raises(ConfigError, match="split"):
        ProbeSpec(split="dev").check()
    with pytest.raises(ConfigError, match="n-samples"):
        ProbeSpec(n_samples=1).check()


def test_probe_runs_in_process_with_a_failing_run_and_a_comparison(monkeypatch):
    """The same runner as explain, in this process: one run fails, the others and the
    comparison with the --compare run go on."""
    from orchestrator import tracking
    from orchestrator.probe import probe_runs

    def load(run_id, uri, device):
        if run_id == "bad-run":
            raise ConfigError("the run's weights are gone")
        torch.manual_seed(len(run_id))
        return Net().eval(), TrainConfig(seed=0)

    logged = []
    monkeypatch.setattr(tracking, "resolve_uri", lambda uri=None: "fake://store")
    monkeypatch.setattr(tracking, "resolve_runs",
                        lambda run_id, uri=None: [run_id] if run_id == "other-run" else ["run-a", "bad-run"])
    monkeypatch.setattr("orchestrator.actors.run_states",  # every run FINISHED with weights
                        lambda runs, uri=None: {r: ("FINISHED", True) for r in runs})
    monkeypatch.setattr(tracking, "load_trained_model", load)
    monkeypatch.setattr(tracking, "log_to_run", lambda run_id, folder, path, metrics, uri=None: logged.append(
        (run_id, path)))
    monkeypatch.setattr("fer_models.data.dataset.build_loaders",
                        lambda *a, **k: SimpleNamespace(test=_probe_set(), num_classes=7))
    spec = ProbeSpec(probes=("valence-arousal",), n_samples=32, umap=False, device="cpu")
    out = probe_runs("parent", spec, compare="other-run", num_actors=0, progress=False)
    assert list(out["results"]) == ["run-a", "other-run"]
    assert out["failed"] == {"bad-run": "the run's weights are gone"}
    assert "silhouette_identity_conv" in out["results"]["run-a"]["metrics"]  # --compare adds silhouette
    assert list(out["compare"]) == ["run-a"] and out["compare"]["run-a"]["other"] == "other-run"
    assert logged == [("run-a", "probe"), ("other-run", "probe"), ("run-a", "probe/compare_other-ru")]


@pytest.mark.slow  # creating the SQLite store (MLflow migrations) alone takes ~10 s
def test_cli_probe_unknown_run_is_one_red_sentence(tmp_path):
    from click.testing import CliRunner

    from orchestrator.cli import main

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    r = CliRunner().invoke(main, ["probe", "--run", "nope", "--tracking-uri", uri])
    assert r.exit_code == 2
    assert "no MLflow run 'nope'" in r.output


@pytest.mark.slow  # generates the synthetic faces (~15 s), starts Ray actors and an MLflow store
@pytest.mark.ray
def test_probe_grid_parent_end_to_end_on_ray(ray_local, log_trial, mlflow_store):
    """A grid parent with two paper-004 CNN trials -> both probed by Ray actors, results in MLflow."""
    from fer_models.config import DataConfig, TrainConfig
    from fer_models.methods import build_model
    from orchestrator import tracking
    from orchestrator.probe import probe_runs

    uri, c, exp = mlflow_store.uri, mlflow_store.client, mlflow_store.exp
    parent = c.create_run(exp, tags={tracking.KIND_TAG: "grid"}).info.run_id
    cfg = TrainConfig(method="light-cnn", data=DataConfig(image_size=32, augment=False), epochs=1)
    runs = []
    for seed in (0, 1):
        torch.manual_seed(seed + 10)
        runs.append(log_trial(c, exp, parent, cfg, build_model(cfg).state_dict(), f"t{seed}"))
    assert sorted(tracking.resolve_runs(parent, uri)) == sorted(runs)

    spec = ProbeSpec(layers=("batchnorm_1", "flatten", "dropout_4"), n_samples=80, untrained_control=True,
                     umap=False, probes=("silhouette", "valence-arousal", "maps"))
    out = probe_runs(parent, spec, compare=runs[1], uri=uri, num_actors=2, progress=False)
    assert out["failed"] == {}
    assert set(out["results"]) == set(runs)
    for rid in runs:
        r = c.get_run(rid)
        assert "silhouette_identity_batchnorm_1" in r.data.metrics
        assert "silhouette_expression_dropout_4_untrained" in r.data.metrics
        assert "va_PC1_valence_r" in r.data.metrics
        files = {f.path for f in c.list_artifacts(rid, "probe/silhouette")}
        assert {"probe/silhouette/silhouette.png", "probe/silhouette/silhouette.csv"} <= files
        assert out["results"][rid]["n_identities"] > 5  # synthetic faces carry identities
    cmp_files = {f.path for f in c.list_artifacts(runs[0], f"probe/compare_{runs[1][:8]}")}
    assert f"probe/compare_{runs[1][:8]}/compare_silhouette.csv" in cmp_files
    assert list(out["compare"]) == [runs[0]]
