"""scripts/method_ties.py: the statistics it prints, and (slow) a real run on synthetic-rafdb."""

from __future__ import annotations

import importlib.util
import json
from math import sqrt, pi
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "method_ties.py"


@pytest.fixture(scope="module")
def ties():
    spec = importlib.util.spec_from_file_location("method_ties", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_fair_coin_tie(ties):
    assert ties.fair_coin_tie(0) == 1.0
    assert ties.fair_coin_tie(2) == 0.5  # HT or TH out of four
    assert ties.fair_coin_tie(4) == 6 / 16
    assert ties.fair_coin_tie(7) == 0.0  # an odd number of discordant faces cannot split evenly
    assert ties.fair_coin_tie(70) == pytest.approx(sqrt(2 / (pi * 70)), rel=0.01)  # the normal limit


def test_pair_stats_split_the_discordant_faces(ties):
    labels = np.array([0, 1, 2, 3, 4, 5, 6, 0])
    a = np.array([0, 1, 2, 0, 0, 5, 0, 1])  # right on 0, 1, 2, 5
    b = np.array([0, 1, 0, 3, 4, 0, 0, 1])  # right on 0, 1, 3, 4
    s = ties.pair_stats(a, b, labels)
    assert (s["correct_a"], s["correct_b"], s["only_a"], s["only_b"]) == (4, 4, 2, 2)
    assert s["agree"] == 4 / 8  # faces 0, 1, 6, 7
    assert s["p_tie_fair_coin"] == 6 / 16


def test_cross_tie_rate(ties):
    assert ties.cross_tie_rate([126, 133], [126, 126, 121]) == 2 / 6
    assert ties.cross_tie_rate([1], [2]) == 0.0


@pytest.mark.slow
def test_a_real_run_prints_both_counts(ties, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FER_ORCH_HOME", str(tmp_path))
    ties.main(["--methods", "adl,cutmix", "--seeds", "0", "--epochs", "1"])
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert row["methods"] == ["adl", "cutmix"]
    assert row["correct_a"] - row["correct_b"] == row["only_a"] - row["only_b"]
    assert 0 < row["agree"] <= 1
