"""`grid --plan`: list scheduling computed by hand, FLOPs counted on the meta device, the CLI."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from orchestrator import plan


def test_makespan_is_list_scheduling_longest_first():
    # by hand, 2 GPUs, longest first: 5 -> A (5), 4 -> B (4), 3 -> B (7), 3 -> A (8), 3 -> B (10)
    assert plan.makespan([3, 5, 3, 4, 3], 2) == 10  # the optimum is 9 ({5, 4}, {3, 3, 3}): LPT is no oracle
    assert plan.makespan([2, 2, 2], 3) == 2
    # a 2-GPU job takes the two earliest free GPUs: 4 -> A,B (4); 3 -> C (3); 2 -> C (5); 1 -> A (5)
    assert plan.makespan([4, 3, 2, 1], 3, gpus_per_job=[2, 1, 1, 1]) == 5
    assert plan.slots(8, 0.5) == 16 and plan.slots(8, 1.0) == 8 and plan.slots(8, 2.0) == 4


def test_multi_gpu_what_if_splits_only_the_trials_longer_than_the_ideal():
    durations, ks = plan.multi_gpu([10.0, 1.0, 1.0, 1.0, 1.0], 4)  # ideal = 14 / 4 = 3.5
    assert ks == [3, 1, 1, 1, 1]
    assert durations[0] == pytest.approx(10 / (3 * 0.9)) and durations[1:] == [1.0] * 4


def test_flops_of_resnet50_s8_on_the_meta_device():
    from fer_models.config import DataConfig, TrainConfig

    cfg = TrainConfig(method="cam", backbone="resnet50-s8", data=DataConfig(dataset="rafdb", image_size=224))
    g = plan.gflop_per_img(cfg)
    assert 100 < g < 130  # ResNet-50 at stride 8: ~38 GFLOP forward, ~3x with the backward


def test_plan_cli_prints_hours_packing_and_makespan(tmp_path):
    from orchestrator.cli import main

    rows = {"rows": [{"method": "cam", "backbone": "tiny", "img_per_s": 1000.0, "gflop_per_img": 0.5}]}
    (tmp_path / "tp.json").write_text(json.dumps(rows))
    res = CliRunner().invoke(main, ["grid", "--methods", "cam,gradcam,gradcampp", "--datasets", "synthetic-rafdb",
                                    "--seeds", "1", "--no-ablations", "--plan", "--gpus", "2",
                                    "--gpus-per-trial", "0.5", "--throughput", str(tmp_path / "tp.json")])
    assert res.exit_code == 0, res.output
    assert "| gradcampp-synthetic-rafdb-noau-s0 |" in res.output and "borrowed" in res.output
    assert "packing: 0.5 GPU per trial, 4 trials at once on 2 GPUs" in res.output
    assert "makespan (list scheduling, longest first):" in res.output
    assert not (tmp_path / "fer-orch-out" / "ray").exists()
    bad = CliRunner().invoke(main, ["grid", "--plan", "--gpus", "2", "--methods", "cam", "--seeds", "1"])
    assert bad.exit_code == 2 and "--throughput FILE" in bad.output


@pytest.mark.slow
def test_readme_plan_command_for_paper_002():
    """The README's --plan line as written: paper 002's 44 runs on 8 GPUs (offline, ~30 s)."""
    import shlex
    from pathlib import Path

    from orchestrator.cli import main

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    line = next(l for l in readme.splitlines() if l.startswith("fer-orch grid") and "--plan" in l)
    res = CliRunner().invoke(main, shlex.split(line)[1:])
    assert res.exit_code == 0, res.output
    assert "44 trials (8 borrowed), 12.1 GPU-hours at 3000 img/s" in res.output
    assert "makespan (list scheduling, longest first): 1.53 h" in res.output


def _doc_plan_lines() -> list[str]:
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "cluster.md").read_text()
    return list(dict.fromkeys(l for l in text.splitlines() if l.startswith("fer-orch grid --preset paper") and "--plan" in l))


def test_a_trial_of_k_workers_holds_k_gpus_at_the_planned_scaling():
    durations, ks = plan.parallel_durations([9.0, 1.0, 1.0], [2, 1, 1])
    assert durations == [pytest.approx(9.0 / (2 * plan.EFFICIENCY)), 1.0, 1.0] and ks == [2, 1, 1]
    # 2 GPUs: the 2-worker job (5 h) takes both; the others follow one on each
    assert plan.makespan(durations, 2, ks) == pytest.approx(9.0 / 1.8 + 1.0)


@pytest.mark.slow
def test_docs_plan_table_for_paper_002_with_and_without_multi_gpu_trials():
    """docs/cluster.md's --plan lines as written, and the same at 5,000 img/s: each cell of its
    table (paper 002's 44 runs on 8 GPUs; offline, FLOPs counted on the meta device)."""
    import shlex

    from orchestrator.cli import main

    lines = _doc_plan_lines()
    assert len(lines) == 4
    expected = {3000: ["1.53", "1.57", "1.66", "1.68"], 5000: ["0.92", "0.94", "1.00", "1.01"]}
    hours = {3000: "12.1", 5000: "7.3"}
    for speed, spans in expected.items():
        for line, span in zip(lines, spans):
            res = CliRunner().invoke(main, shlex.split(line.replace("--img-per-s 3000", f"--img-per-s {speed}"))[1:])
            assert res.exit_code == 0, res.output
            assert f"44 trials (8 borrowed), {hours[speed]} GPU-hours at {speed} img/s" in res.output
            assert f"makespan (list scheduling, longest first): {span} h" in res.output, (line, res.output[-400:])
    assert "data-parallel workers" in res.output


def test_docs_cluster_command_for_multi_gpu_trials_resolves_its_workers(tmp_path):
    """docs/cluster.md's cluster command with --print-config (offline): the AffectNet trials on 4 workers."""
    import shlex
    from pathlib import Path

    from orchestrator.cli import main

    text = (Path(__file__).resolve().parents[2] / "docs" / "cluster.md").read_text()
    line = next(l for l in text.splitlines() if l.startswith("fer-orch grid --address auto") and "--workers-per-trial" in l)
    args = shlex.split(line.replace('"http://$(hostname -I | cut -d\' \' -f1):5000"', "http://10.0.0.1:5000"))[1:]
    res = CliRunner().invoke(main, [*args, "--print-config"])
    assert res.exit_code == 0, res.output
    assert "workers_per_trial:\n    affectnet: 4" in res.output
    bad = CliRunner().invoke(main, [*args, "--workers-per-trial", "afectnet=4", "--print-config"])
    assert bad.exit_code == 2 and "--workers-per-trial afectnet=4 is not usable" in bad.output
