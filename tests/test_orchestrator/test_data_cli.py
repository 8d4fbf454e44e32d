"""`fer-orch data synth` and `fer-orch data show`."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from orchestrator.cli import main


def test_synth_writes_layout_and_refuses_to_clobber(tmp_path):
    out = tmp_path / "raf"
    args = ["data", "synth", "--layout", "rafdb", "--out", str(out), "--n-train", "14",
            "--n-test", "7", "--size", "32", "--identities", "3"]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    assert "14 train + 7 test" in r.output
    assert (out / "EmoLabel" / "list_patition_label.txt").is_file()
    assert len(list((out / "Image" / "aligned").glob("*_aligned.jpg"))) == 21
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 2 and "--overwrite" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(main, args + ["--overwrite", "--n-train", "7"])
    assert r.exit_code == 0 and len(list((out / "Image" / "aligned").glob("*.jpg"))) == 14


def test_show_writes_png_with_true_au_panels(tmp_path):
    src = tmp_path / "raf"
    r = CliRunner().invoke(main, ["data", "synth", "--layout", "affectnet", "--out", str(src),
                                  "--n-train", "14", "--n-test", "14", "--size", "32"])
    assert r.exit_code == 0, r.output
    png = tmp_path / "show.png"
    r = CliRunner().invoke(main, ["data", "show", "--dataset", "affectnet", "--root", str(src),
                                  "--out", str(png), "--n", "4", "--landmarks", "dataset"])
    assert r.exit_code == 0, r.output
    im = np.asarray(Image.open(png))
    assert im.ndim == 3 and im.shape[1] > 4 * im.shape[0] / 2  # one row of 4 faces x 2 panels
    # synthetic dataset: a third "true AUs" panel per face -> a wider image
    png2 = tmp_path / "show2.png"
    raf = tmp_path / "synth-raf"
    r = CliRunner().invoke(main, ["data", "synth", "--layout", "rafdb", "--out", str(raf),
                                  "--n-train", "14", "--n-test", "7", "--size", "32"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["data", "show", "--dataset", "synthetic-rafdb", "--root", str(raf),
                                  "--out", str(png2), "--n", "4", "--split", "train"])
    assert r.exit_code == 0, r.output
    im2 = np.asarray(Image.open(png2))
    assert im2.shape[1] / im2.shape[0] > im.shape[1] / im.shape[0] * 1.2


def test_codebooks_listed_by_cli():
    r = CliRunner().invoke(main, ["list", "codebooks"])
    assert r.exit_code == 0 and "paper002-released" in r.output


def test_show_unknown_dataset_is_one_sentence():
    r = CliRunner().invoke(main, ["data", "show", "--dataset", "nope"])
    assert r.exit_code == 2 and "known datasets" in r.output and "Traceback" not in r.output


def test_show_draws_each_au_source_side_by_side(tmp_path):
    raf = tmp_path / "synth-raf"
    r = CliRunner().invoke(main, ["data", "synth", "--layout", "rafdb", "--out", str(raf),
                                  "--n-train", "14", "--n-test", "7", "--size", "32"])
    assert r.exit_code == 0, r.output
    widths = {}
    for name, extra in (("default", []), ("two", ["--au-source", "codebook,labels"]),
                        ("one", ["--au-source", "codebook+labels"])):
        png = tmp_path / f"{name}.png"
        r = CliRunner().invoke(main, ["data", "show", "--dataset", "synthetic-rafdb", "--root", str(raf),
                                      "--out", str(png), "--n", "2", "--split", "train", *extra])
        assert r.exit_code == 0, r.output
        im = np.asarray(Image.open(png))
        widths[name] = im.shape[1] / im.shape[0]
    # per face: the image + 3 sources (codebook, labels = true AUs, codebook+labels), + 2, + 1 and true AUs
    assert widths["default"] > widths["two"] * 1.15 and widths["two"] == pytest.approx(widths["one"], rel=0.1)
    bad = CliRunner().invoke(main, ["data", "show", "--dataset", "synthetic-rafdb", "--root", str(raf),
                                    "--au-source", "nope"])
    assert bad.exit_code != 0 and "unknown AU source 'nope'" in bad.output
