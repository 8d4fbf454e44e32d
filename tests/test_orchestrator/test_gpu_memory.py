"""The paper presets size each trial's GPU share from its computed peak memory, and
``--print-config`` shows the table; ``--gpus-per-trial`` overrides it; a finished trial
hands its cached GPU blocks back."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

from orchestrator import gpu_memory, presets
from orchestrator.cli import main
from orchestrator.commands.grid import build_grid_config
from orchestrator.tuning import resources_per_trial


def test_the_table_is_what_the_cost_model_computes():
    from fer_models.cost import step_cost

    g = presets.get("paper")
    for key in (("cam", "rafdb"), ("acol", "affectnet")):
        cfg = g.train_config(*key, au=True, lam=g.default_lam, layers=[5])
        assert gpu_memory.PAPER_PEAK_GIB[key] == pytest.approx(step_cost(cfg)["peak_gib"], abs=0.05)
    assert set(gpu_memory.PAPER_PEAK_GIB) == {(m, d) for m in g.methods for d in g.datasets}


@pytest.mark.parametrize("preset", ["paper", "paper-released"])
def test_rafdb_trials_share_a_gpu_and_affectnet_s8_trials_get_one(preset):
    g = presets.get(preset)
    r = g.resources
    for m in g.methods:
        assert r.gpus_for(m, "affectnet") == (1.0 if gpu_memory.PAPER_PEAK_GIB[(m, "affectnet")] > 16 else 0.5)
        assert r.gpus_for(m, "rafdb") == 0.5
    assert r.gpus_for("cam", "affectnet") == 1.0 and r.gpus_for("acol", "affectnet") == 1.0
    of = resources_per_trial(g)
    spec = {"trial": {"cfg": {"method": "cam", "data": {"dataset": "rafdb"}}}}
    assert of(spec).bundles == [{"CPU": 4, "GPU": 0.5}]
    # the user's --gpus-per-trial is every trial's
    user = build_grid_config(preset=preset, datasets="rafdb,affectnet", gpus_per_trial=0.25)
    assert user.resources.gpus_for("cam", "affectnet") == 0.25 and resources_per_trial(user)["gpu"] == 0.25


def test_print_config_shows_each_trials_memory_and_gpus():
    res = CliRunner().invoke(main, ["grid", "--preset", "paper", "--datasets", "rafdb,affectnet", "--methods",
                                    "cam,acol", "--print-config"])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    cam_aff = gpu_memory.PAPER_PEAK_GIB[("cam", "affectnet")]
    assert any(l.split() == ["#", "cam", "affectnet", "224", f"{cam_aff:.1f}", "1"] for l in lines), res.output
    assert any(l.split()[:3] == ["#", "cam", "rafdb"] and l.split()[-1] == "0.5" for l in lines)


def test_a_finished_trial_empties_the_cuda_cache(monkeypatch):
    from orchestrator import trial

    calls = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # no GPU here: the edge is faked
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: calls.append("empty_cache"))
    trial.release_gpu_memory()
    assert calls == ["empty_cache"]
