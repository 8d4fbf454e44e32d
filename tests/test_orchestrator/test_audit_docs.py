"""docs/audit.md: every command it shows runs through the real CLI (the long ones: slow-marked)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from orchestrator.cli import main

DOC = Path(__file__).resolve().parents[2] / "docs" / "audit.md"
CLASSES = "anger,disgust,fear,happiness,sadness,surprise,neutral"
DOCUMENTED = [
    "fer-orch list models",
    "fer-orch audit --model fer-mini-xception --dataset synthetic-rafdb",
    "fer-orch audit --model fer-mini-xception --images photos",
    "fer-orch grid --datasets synthetic-rafdb --methods cam --seeds 3 --no-ablations",
    "fer-orch audit --run PARENT_RUN_ID --dataset synthetic-rafdb",
    "fer-orch report",
    "fer-orch audit --model fer-mini-xception --dataset synthetic-rafdb --job topn --probe silhouette",
    f"fer-orch audit --model timm --arch resnet18 --weights my_resnet18.pth --classes {CLASSES} "
    "--input 112,rgb,imagenet --dataset synthetic-rafdb",
]


def doc_commands() -> list[str]:
    cmds, shell = [], False
    for line in DOC.read_text().splitlines():
        if line.startswith("```"):
            shell = line.strip() == "```bash"
            continue
        if shell and line.startswith("fer-orch "):
            cmds.append(line.strip())
    return cmds


def test_the_documented_commands_are_the_tested_ones():
    assert doc_commands() == DOCUMENTED


def test_list_models_as_documented():
    res = CliRunner().invoke(main, DOCUMENTED[0].split()[1:])
    assert res.exit_code == 0, res.output
    listed = [line.split()[0] for line in res.output.splitlines()[1:]]
    assert listed == ["emofan", "fer-mini-xception", "resmasknet", "timm", "torchscript"]


def _run(cmd: str, **subst: str):
    for k, v in subst.items():
        cmd = cmd.replace(k, v)
    res = CliRunner().invoke(main, cmd.split()[1:], catch_exceptions=False)
    assert res.exit_code == 0, f"{cmd}\n{res.output}"
    return res.output


@pytest.mark.slow
def test_every_documented_audit_command_runs_as_written(tmp_path, monkeypatch):
    """The doc's commands in its order, in a fresh FER_ORCH_HOME (about 15 min on 2 CPU cores)."""
    import matplotlib.cbook
    import skimage.data
    import timm
    import torch
    from PIL import Image

    monkeypatch.chdir(tmp_path)
    (tmp_path / "photos").mkdir()
    Image.fromarray(skimage.data.astronaut()).save("photos/astronaut.png")
    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
        Path("photos/grace_hopper.jpg").write_bytes(f.read())
    torch.save(timm.create_model("resnet18", num_classes=7).state_dict(), "my_resnet18.pth")
    out = _run(DOCUMENTED[1])
    assert re.search(r"fer-mini-xception on synthetic-rafdb \(run \w+\): CL=[\d.]+% \[[\d.]+, [\d.]+\]  CAM-COS=", out)
    out = _run(DOCUMENTED[2])
    assert re.search(r"astronaut.png\s+happiness\s+p=0\.9\d\d  CAM-COS=0\.\d+", out)
    assert "grace_hopper.jpg" in out and "overlays:" in out
    out = _run(DOCUMENTED[3])
    parent = re.search(r"parent run ([0-9a-f]{32})", out).group(1)
    out = _run(DOCUMENTED[4], PARENT_RUN_ID=parent)
    assert out.count("cam (run ") == 6
    out = _run(DOCUMENTED[5])
    assert "## Audited models" in out and "| synthetic-rafdb | cam w/ AU (grid) | 3 seeds |" in out
    assert "| synthetic-rafdb | fer-mini-xception | 350 faces |" in out
    out = _run(DOCUMENTED[6])
    assert "job topn: ok" in out and "job probe silhouette: ok" in out
    out = _run(DOCUMENTED[7])
    assert re.search(r"timm on synthetic-rafdb \(run \w+\): CL=", out)
