"""A synthetic stand-in takes its real dataset's ``dataset_overrides`` unless it has its own
(docs/reproducing-seed-papers.md, "Synthetic stand-ins")."""

from __future__ import annotations

from click.testing import CliRunner

from orchestrator import presets, studies
from orchestrator.cli import main
from orchestrator.config import GridConfig


def _settings(*datasets: str) -> dict[str, list[str]]:
    res = CliRunner().invoke(main, ["grid", "--preset", "khorrami2015", "--datasets", ",".join(datasets),
                                    "--print-config"])
    assert res.exit_code == 0, res.output
    rows = [[c.strip() for c in line.split("|")[1:-1]] for line in res.output.splitlines() if line.startswith("| S")]
    return {r[2]: r for r in rows}


def test_print_config_of_khorrami2015_on_synthetic_tfd_shows_tfds_epochs():
    """`fer-orch grid --preset khorrami2015 --datasets synthetic-tfd --print-config` (the docs'
    command): TFD's 700 epochs at 96 px; the CK+ stand-in keeps CK+'s 1,900."""
    tfd = _settings("synthetic-tfd")["synthetic-tfd"]
    assert "700 ep" in tfd[7] and tfd[4] == "96"
    assert "1900 ep" in _settings("synthetic-ckplus")["synthetic-ckplus"][7]


def test_stand_in_takes_the_real_overrides_unless_it_has_its_own():
    g = presets.get("khorrami2015", datasets=("synthetic-tfd",))
    cfgs = [t.cfg for t in studies.expand(g, "grid")]
    assert cfgs and {c.epochs for c in cfgs} == {700}
    assert {c.data.options["resolution"] for c in cfgs} == {96}
    own = GridConfig(dataset_overrides={"tfd": {"epochs": 700}, "synthetic-tfd": {"epochs": 3}})
    assert own.train_config("cam", "synthetic-tfd").epochs == 3
    assert own.train_config("cam", "tfd").epochs == 700
    assert own.train_config("cam", "synthetic-ckplus").epochs == GridConfig().base.epochs
