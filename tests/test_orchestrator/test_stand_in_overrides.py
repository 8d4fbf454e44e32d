"""A synthetic stand-in takes its real dataset's ``dataset_overrides`` unless it has its own
(docs/reproducing-seed-papers.md, "Synthetic stand-ins")."""

from __future__ import annotations

from click.testing import CliRunner

from orchestrator import presets, studies
from orchestrator.cli import main
from orchestrator.config import GridConfig


def test_print_config_of_khorrami2015_on_synthetic_tfd_shows_tfds_epochs(tmp_path, monkeypatch):
    monkeypatch.setenv("FER_ORCH_HOME", str(tmp_path))
    res = CliRunner().invoke(main, ["grid", "--preset", "khorrami2015", "--datasets", "synthetic-tfd,synthetic-ckplus",
                                    "--print-config"])
    assert res.exit_code == 0, res.output
    rows = {line.split("|")[3].strip(): line for line in res.output.splitlines() if line.startswith("| S")}
    assert "700 ep" in rows["synthetic-tfd"] and "1900 ep" in rows["synthetic-ckplus"]


def test_stand_in_takes_the_real_overrides_unless_it_has_its_own():
    g = presets.get("khorrami2015", datasets=("synthetic-tfd",))
    cfgs = [t.cfg for t in studies.expand(g, "grid")]
    assert cfgs and {c.epochs for c in cfgs} == {700}
    assert {c.data.options["resolution"] for c in cfgs} == {96}
    own = GridConfig(dataset_overrides={"tfd": {"epochs": 700}, "synthetic-tfd": {"epochs": 3}})
    assert own.train_config("cam", "synthetic-tfd").epochs == 3
    assert own.train_config("cam", "tfd").epochs == 700
    assert own.train_config("cam", "synthetic-ckplus").epochs == GridConfig().base.epochs
