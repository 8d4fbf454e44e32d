"""The AU-source study: its trials, its place outside the default grid, its tables."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from click.testing import CliRunner

from orchestrator import presets, studies
from orchestrator.cli import main
from orchestrator.studies.au_source import SHORTCUT, faithfulness_table, source_tables


def test_trials_cover_sources_seeds_and_the_shortcut_variant():
    g = presets.get("cpu", seeds=(0, 1, 2))
    trials = studies.expand(g, "au-source")
    cfgs = [t.cfg for t in trials]
    assert len(trials) == 2 * 3 * 4 and {t.study for t in trials} == {"au-source"}
    assert {c.data.dataset for c in cfgs} == {"synthetic-rafdb", SHORTCUT}
    assert {c.method for c in cfgs} == {"cam"}
    with_au = {(c.data.dataset, c.seed, c.data.au_source) for c in cfgs if c.au}
    assert len(with_au) == 18 and {s for _, _, s in with_au} == {"codebook", "labels", "codebook+labels"}
    assert all(c.data.au_source == "codebook" for c in cfgs if not c.au)
    assert "au-source" not in studies.grid_studies() and "au-source" in studies.ablations()
    # the codebook and w/o-AU trials on synthetic-rafdb are the main grid's (one hash, trained once)
    grid_hashes = {t.hash for t in studies.expand(g, "grid")}
    shared = [t for t in trials if t.hash in grid_hashes]
    assert {(t.cfg.au, t.cfg.data.au_source) for t in shared} == {(False, "codebook"), (True, "codebook")}


def test_cli_sources_and_methods():
    res = CliRunner().invoke(main, ["ablate", "au-source", "--au-source", "labels", "--methods", "cam,acol",
                                    "--seeds", "2", "--print-config"])
    assert res.exit_code == 0, res.output
    assert "# au-source: 24 trials" in res.output  # 2 datasets x 2 methods x 2 seeds x {w/o, codebook, labels}
    res = CliRunner().invoke(main, ["grid", "--au-source", "labels,codebook", "--print-config"])
    assert res.exit_code != 0 and "one source" in res.output
    res = CliRunner().invoke(main, ["grid", "--au-source", "codebook+labels", "--datasets", "synthetic-rafdb",
                                    "--methods", "cam", "--no-ablations", "--print-config"])
    assert res.exit_code == 0 and "au_source: codebook+labels" in res.output


def _frame(labels_gain: float, noise: tuple[float, ...] = (0.0, 0.3, -0.2)) -> pd.DataFrame:
    rows = []
    for seed, e in enumerate(noise):
        for au, src, cl in ((False, "codebook", 40.0), (True, "codebook", 45.0), (True, "labels", 45.0 + labels_gain)):
            rows.append({"method": "cam", "dataset": "synthetic-rafdb", "au": au, "au_source": src, "seed": seed,
                         "cl": cl + e * (1 + (src == "labels")), "cam_cos": 0.5, "att_cos": 0.5, "gt_cam_cos": 0.4,
                         "gt_att_cos": 0.4, "deletion_cam": 0.3 - 0.01 * au, "insertion_cam": 0.6,
                         "deletion_att": math.nan, "insertion_att": 0.5})
    return pd.DataFrame(rows)


def test_the_table_gives_paired_cis_against_the_codebook(tmp_path):
    md = "\n".join(source_tables(_frame(5.0), tmp_path))
    assert "| labels − codebook | 3 | +5.03 [" in md and "| w/o AU − codebook | 3 | -5.00 [" in md
    labels_row = next(line for line in md.splitlines() if line.startswith("| labels − codebook"))
    assert "n.s." not in labels_row.split("|")[3]  # the CL gain is significant
    small = "\n".join(source_tables(_frame(0.05), tmp_path))
    row = next(line for line in small.splitlines() if line.startswith("| labels − codebook"))
    assert row.split("|")[3].strip().endswith("n.s.")
    csv = pd.read_csv(tmp_path / "au_source.csv")
    assert set(csv["source"]) == {"w/o AU", "codebook", "labels"}
    assert csv.loc[csv["source"] == "labels", "cl_delta"].iloc[0] == pytest.approx(0.05 + 0.1 / 3)


def test_faithfulness_table_beside_table_1(tmp_path):
    md = "\n".join(faithfulness_table(_frame(0.0), tmp_path))
    assert "Faithfulness beside Table 1" in md and "Del CAM ↓ w/o" in md and "-0.01 [" in md
    assert faithfulness_table(_frame(0.0).drop(columns=["deletion_cam", "insertion_cam", "deletion_att",
                                                        "insertion_att"]), tmp_path) == []
