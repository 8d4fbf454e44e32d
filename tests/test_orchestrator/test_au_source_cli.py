"""`--au-source labels` end to end on the AU-labelled trees (CK+ FACS files, DISFA intensity files)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from fer_models.data.synth.frames import write_ckplus, write_disfa
from orchestrator.cli import main


@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["ckplus", "disfa"])
def test_ckplus_and_disfa_trees_train_with_labelled_aus(tmp_path, dataset):
    """The real readers on trees in the official layouts; every training row gets its map from
    its own labels (DISFA has no expression, so the codebook would give it no map at all)."""
    if dataset == "ckplus":
        root = write_ckplus(tmp_path / "CK+", n_identities=4, n_sequences=2, image_size=48, frame="160x120",
                            seed=3, progress=False)
        extra = ["--val-fraction", "0.34"]  # 3 training subjects: 0.1 would leave validation empty
    else:
        root = write_disfa(tmp_path / "DISFA", n_identities=3, n_frames=8, image_size=48, frame="160x120",
                           seed=3, progress=False)
        extra = ["--data-opt", "split=train"]
    out = tmp_path / "run"
    res = CliRunner().invoke(main, ["train", "--dataset", dataset, "--root", str(root), "--method", "cam",
                                    "--backbone", "resnet-tiny", "--au", "--au-source", "labels", "--epochs", "1",
                                    "--image-size", "32", "--batch-size", "8", "--out", str(out), *extra])
    assert res.exit_code == 0, res.output
    cfg_caches = list((tmp_path / "fer-orch-out").rglob("meta.json"))
    metas = [json.loads(p.read_text()) for p in cfg_caches if p.parent.parent.name == dataset]
    assert len(metas) == 1 and metas[0]["inputs"]["au_source"] == "labels"
    counts = metas[0]["au_source"]["rows"]["train"]
    assert counts.get("map", 0) > 0 and counts.get("fallback", 0) == 0
    hist = json.loads((out / "history.json").read_text())
    assert hist and hist[0]["train_align"] > 0  # the labels' maps were aligned to
