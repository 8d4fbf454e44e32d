"""The shared plumbing: registries, configs, manifest, tracking URIs, the CLI shell."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from fer_models.config import DataConfig, TrainConfig, flatten, from_dict, parse_layers, to_dict
from fer_models.data.manifest import Manifest, Sample, carve_validation
from fer_models.errors import ConfigError, FerOrchError, UnknownNameError
from fer_models.registry import Registry


def test_registry_lookup_and_clear_error():
    reg: Registry = Registry("widget")

    @reg.register("Alpha")
    class Alpha:
        """The first widget."""

    assert reg.get("alpha") is Alpha and reg.get("ALPHA") is Alpha
    assert reg.names() == ["alpha"]
    assert reg.meta("alpha")["description"] == "The first widget."
    with pytest.raises(UnknownNameError, match=r"unknown widget 'beta'; known widgets: alpha"):
        reg.get("beta")
    with pytest.raises(ValueError, match="registered twice"):
        reg.register("alpha")(object)


def test_registry_metadata_order_plural_and_unregister():
    reg: Registry = Registry("study", plural="studies")
    for name, row in (("c", 2), ("a", 3), ("b", None), ("d", 1)):
        reg.register(name, **({"row": row} if row else {}))(type(name, (), {"__doc__": f"study {name}"}))
    assert reg.ordered_by("row") == ["d", "c", "a"]  # by value; entries without it left out
    with pytest.raises(UnknownNameError, match="known studies: a, b, c, d"):
        reg.get("e")
    reg.unregister("C")
    assert reg.names() == ["a", "b", "d"] and reg.cli_name == "studies"


def test_registry_imports_its_package(tmp_path, monkeypatch):
    pkg = tmp_path / "plugs"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "one.py").write_text(
        "from tests_plug_registry import REG\n@REG.register('one')\ndef one():\n    return 1\n"
    )
    (pkg / "_private.py").write_text("raise RuntimeError('private modules are not imported')\n")
    reg = Registry("plug", "plugs")
    mod = type(__import__("sys"))("tests_plug_registry")
    mod.REG = reg
    monkeypatch.setitem(__import__("sys").modules, "tests_plug_registry", mod)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "one" in reg and reg.get("one")() == 1


def test_config_round_trip_and_flatten():
    cfg = TrainConfig(method="gradcam", layers=(5, 4), data=DataConfig(dataset="rafdb", image_size=96))
    d = to_dict(cfg)
    assert d["layers"] == [5, 4]
    back = from_dict(TrainConfig, d)
    assert back == cfg and isinstance(back.data, DataConfig) and back.layers == (5, 4)
    flat = flatten(d)
    assert flat["data.dataset"] == "rafdb" and flat["data.image_size"] == 96
    with pytest.raises(ConfigError, match="unknown TrainConfig field"):
        from_dict(TrainConfig, {"methd": "cam"})


@pytest.mark.parametrize(
    "spec, expected", [("5", (5,)), ("5+4+3", (5, 4, 3)), ("3-4-5", (3, 4, 5)), (2, (2,)), ([5, 1], (5, 1))]
)
def test_parse_layers(spec, expected):
    assert parse_layers(spec) == expected


@pytest.mark.parametrize("spec", ["6", "", "a+b", "0"])
def test_parse_layers_rejects(spec):
    with pytest.raises(ConfigError):
        parse_layers(spec)


def _samples(n_per_class: int, classes: int = 3) -> list[Sample]:
    return [
        Sample(path=f"/x/{c}_{i}.jpg", split="train", label=c)
        for c in range(classes)
        for i in range(n_per_class)
    ] + [Sample(path="/x/t.jpg", split="test", label=0)]


def test_carve_validation_is_stratified_seeded_and_never_touches_test():
    a = carve_validation(_samples(10), 0.2, seed=1)
    b = carve_validation(_samples(10), 0.2, seed=1)
    c = carve_validation(_samples(10), 0.2, seed=2)
    val = Counter(s.label for s in a if s.split == "val")
    assert val == {0: 2, 1: 2, 2: 2}
    assert [s.split for s in a] == [s.split for s in b]
    assert [s.split for s in a] != [s.split for s in c]
    assert a[-1].split == "test"


def test_carve_validation_keeps_one_training_row_per_class():
    out = carve_validation(_samples(1), 0.9, seed=0)
    assert all(s.split == "train" for s in out if s.path != "/x/t.jpg")


def test_manifest_counts_skips_and_hash():
    m = Manifest("toy", Path("/x"), carve_validation(_samples(5), 0.2, 0))
    m.skip("missing image", "a.jpg")
    m.skip("missing image", "b.jpg")
    assert m.counts() == {"train": 12, "val": 3, "test": 1}
    assert "skipped 2 missing image" in m.summary()
    assert m.skipped_examples["missing image"] == ["a.jpg", "b.jpg"]
    h = m.content_hash()
    m.samples[0].label = 2
    assert m.content_hash() != h
    assert math.isnan(m.samples[0].valence)


def test_tracking_uri_checks(tmp_path):
    from orchestrator.tracking import default_tracking_uri, resolve_uri

    assert default_tracking_uri().startswith("sqlite:///") and str(tmp_path) in default_tracking_uri()
    uri = resolve_uri(f"sqlite:///{tmp_path}/deep/er/mlflow.db")
    assert (tmp_path / "deep" / "er").is_dir() and uri.endswith("mlflow.db")
    with pytest.raises(FerOrchError, match="unreachable"):
        resolve_uri("http://127.0.0.1:9")  # discard port: nothing listens
    with pytest.raises(FerOrchError, match="file store"):
        resolve_uri(str(tmp_path / "mlruns"))


def test_cli_lists_families_and_rejects_unknown():
    from orchestrator.cli import main

    r = CliRunner().invoke(main, ["list", "nosuch"])
    assert r.exit_code != 0 and "known: datasets" in r.output
    r = CliRunner().invoke(main, ["--help"])
    assert r.exit_code == 0 and "list" in r.output


def test_codebook_registry_loads_without_importing_au_first():
    import subprocess
    import sys

    code = "from fer_models.registry import CODEBOOKS; print(','.join(CODEBOOKS.names()))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "paper002" in out.stdout.split(",")[0] and "paper002-released" in out.stdout


def test_a_broken_entry_module_keeps_raising_its_own_error(tmp_path, monkeypatch):
    pkg = tmp_path / "brokenplugs"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "bad.py").write_text("from nowhere_at_all import thing\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = Registry("plug", "brokenplugs")
    for _ in range(2):  # the second lookup must not report 'unknown plug' with a partial list
        with pytest.raises(ImportError, match="nowhere_at_all"):
            reg.get("bad")


def test_parse_list_reads_a_string_or_the_values_of_a_repeated_option():
    from orchestrator.options import parse_list

    assert parse_list("cam, gradcam,") == ("cam", "gradcam")
    assert parse_list(("topn,filter-au", "gradcam")) == ("topn", "filter-au", "gradcam")
    assert parse_list(()) == () and parse_list(None) is None
    assert parse_list("0,4", int) == (0, 4)
    with pytest.raises(ConfigError, match="comma-separated list of int"):
        parse_list("0,x", int)
