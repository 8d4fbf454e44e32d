"""The config schema (fer_models.schema) on every field: a grid YAML giving any field a
value of the wrong type, or misspelling any key, at any depth (``base``, ``base.data``,
``resources``, the entries of ``method_overrides`` and ``dataset_overrides``), is one
sentence naming the key's path. The cases are generated from the dataclasses, so a new
field is covered without editing this file; a few go through the real CLI (exit 2)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import yaml

from fer_models.config import DataConfig, TrainConfig, from_dict
from fer_models.schema import ConfigSchemaError, fields, hints, wrong_value
from orchestrator.config import GridConfig, Resources
from tests.test_orchestrator.test_bad_input_data import _cli, _one_sentence


def _paths(cls: type, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], type, str]]:
    """``(path, owning class, field)`` of every field reachable from ``cls``; the override
    mappings are entered under one method / dataset name."""
    out = []
    for name, f in fields(cls).items():
        path = (*prefix, name)
        out.append((path, cls, name))
        tp = hints(cls)[name]
        if dataclasses.is_dataclass(tp):
            out += _paths(tp, path)
        entries = f.metadata.get("entries")
        if entries is not None:
            key = "cam" if name == "method_overrides" else "synthetic-rafdb"
            out += _paths(entries, (*path, key))
    return out


GRID_PATHS = _paths(GridConfig)
TRAIN_PATHS = _paths(TrainConfig)


def _nest(path: tuple[str, ...], value) -> dict:
    d = value
    for key in reversed(path):
        d = {key: d}
    return d


def _wrong(cls: type, name: str):
    return wrong_value(hints(cls)[name], fields(cls)[name].metadata.get("also", ()))


def _misspelt(name: str) -> str:
    return name[:-1] + ("x" if name[-1] != "x" else "y") + "q"


def _sentence(msg: str) -> None:
    assert "\n" not in msg and "Traceback" not in msg
    assert len(re.findall(r"[.;:!?]\s+[A-Z]", msg)) == 0, msg  # no second sentence


def test_the_cases_cover_every_field_of_every_config():
    names = {(c, n) for _, c, n in GRID_PATHS}
    for cls in (GridConfig, TrainConfig, DataConfig, Resources):
        assert {(cls, f.name) for f in dataclasses.fields(cls)} <= names
    # TrainConfig and DataConfig fields are reached three ways: base, method and dataset overrides
    assert len(GRID_PATHS) == len(fields(GridConfig)) + len(fields(Resources)) + 3 * len(TRAIN_PATHS)
    assert len(GRID_PATHS) > 150


def _load(tmp_path: Path, d: dict) -> GridConfig:
    p = tmp_path / "g.yaml"
    p.write_text(yaml.safe_dump(d))
    return GridConfig.from_yaml(p)


@pytest.mark.parametrize("path,cls,name", GRID_PATHS, ids=[".".join(p) for p, _, _ in GRID_PATHS])
def test_a_wrong_type_anywhere_in_a_grid_yaml_names_its_path(tmp_path, path, cls, name):
    bad = _wrong(cls, name)
    with pytest.raises(ConfigSchemaError) as e:
        _load(tmp_path, _nest(path, bad))
    msg = str(e.value)
    assert msg.startswith(f"{'.'.join(path)}: expected "), msg
    assert msg.endswith(f"got {bad!r}" if isinstance(bad, str) else f"got {bad}"), msg
    _sentence(msg)


@pytest.mark.parametrize("path,cls,name", GRID_PATHS, ids=[".".join(p) for p, _, _ in GRID_PATHS])
def test_a_misspelt_key_anywhere_in_a_grid_yaml_names_its_path_and_the_field(tmp_path, path, cls, name):
    wrong = (*path[:-1], _misspelt(name))
    with pytest.raises(ConfigSchemaError) as e:
        _load(tmp_path, _nest(wrong, 1))
    msg = str(e.value)
    assert msg.startswith(f"{'.'.join(wrong)}: unknown {cls.__name__} field"), msg
    _sentence(msg)


@pytest.mark.parametrize("path,cls,name", TRAIN_PATHS, ids=[".".join(p) for p, _, _ in TRAIN_PATHS])
def test_a_train_config_dict_is_checked_the_same_way(path, cls, name):
    with pytest.raises(ConfigSchemaError, match=rf"^{re.escape('.'.join(path))}: expected "):
        from_dict(TrainConfig, _nest(path, _wrong(cls, name)))
    with pytest.raises(ConfigSchemaError, match=r"unknown .* field"):
        from_dict(TrainConfig, _nest((*path[:-1], _misspelt(name)), 1))


def test_the_valid_forms_a_yaml_may_use_still_load(tmp_path):
    g = _load(tmp_path, {"seeds": [0, 1], "layers": "5+4", "layer_sets": [5, "5+4"], "folds": None,
                         "base": {"lam": 2, "layers": 4, "data": {"augment": True, "options": {"classes": 6}}},
                         "method_overrides": {"cam": {"epochs": 2}}, "resources": {"cpus": 2, "custom": {"w": 1}}})
    assert g.base.lam == 2 and g.base.data.augment and g.seeds == (0, 1)


@pytest.mark.parametrize("text,fragment", [
    ("seeds: 3", "seeds: expected a list of integers, got 3"),
    ("base: 5", "base: expected a mapping of TrainConfig fields, got 5"),
    ("resources: {cpus: two}", "resources.cpus: expected a number, got 'two'"),
    ("method_overrides: [1, 2]", "method_overrides: expected a mapping of names to TrainConfig fields, got [1, 2]"),
    ("base: {lam: x}", "base.lam: expected a number, got 'x'"),
    ("method_overrides: {cam: {lamb: 2}}", "method_overrides.cam.lamb: unknown TrainConfig field (did you mean 'lam'?)"),
    ("dataset_overrides: {synthetic-rafdb: {data: {image_sise: 3}}}",
     "dataset_overrides.synthetic-rafdb.data.image_sise: unknown DataConfig field (did you mean 'image_size'?)"),
    ("method_overrides: {camm: {lam: 2}}", "method_overrides.camm: unknown method 'camm'"),
    ("dataset_overrides: {rafbd: {epochs: 2}}", "dataset_overrides.rafbd: unknown dataset 'rafbd'"),
])
def test_the_cli_prints_one_sentence_and_exits_2(tmp_path, monkeypatch, text, fragment):
    monkeypatch.setenv("FER_ORCH_HOME", str(tmp_path / "home"))
    (tmp_path / "g.yaml").write_text(text + "\n")
    _one_sentence(_cli("grid", "--config", str(tmp_path / "g.yaml"), "--print-config"), fragment)


def test_lambda_is_one_option_on_every_command_that_takes_it(tmp_path, monkeypatch):
    """``--lambda`` everywhere, ``--lam`` kept as its alias; the same bound (λ >= 0) from the
    schema, and on the grid the w/-AU rule (λ = 0 is the model without the AU loss)."""
    monkeypatch.setenv("FER_ORCH_HOME", str(tmp_path / "home"))
    for flag in ("--lambda", "--lam"):
        r = _cli("grid", "--datasets", "synthetic-rafdb", "--methods", "cam", flag, "3", "--no-ablations",
                 "--print-config")
        assert r.exit_code == 0, r.output
        assert "lam: 3.0" in r.output and "| w/ | 3 |" in r.output, r.output
        _one_sentence(_cli("train", "--dataset", "synthetic-rafdb", "--method", "cam", flag, "-1"),
                      "lam (--lambda/--lam) must be >= 0")
    _one_sentence(_cli("ablate", "layers", "--lambda", "0", "--print-config"), "λ must be > 0")
    _one_sentence(_cli("ablate", "lambda", "--lambda", "2", "--print-config"), "does not use --lam")


def test_one_lambda_precedence_cli_over_yaml_over_preset_over_validation_over_default(tmp_path):
    from orchestrator.commands.grid import build_grid_config
    from orchestrator.config import resolve_lambda

    p = tmp_path / "g.yaml"
    p.write_text("lam: 3\n")
    base = dict(datasets="synthetic-rafdb", methods="cam")
    assert resolve_lambda(build_grid_config(**base, config_path=str(p), lam=4.0), 7.0) == (4.0, "configured")
    assert resolve_lambda(build_grid_config(**base, config_path=str(p)), 7.0) == (3.0, "configured")
    g = build_grid_config(**base)  # the cpu preset leaves λ to the validation choice
    assert g.lam is None and resolve_lambda(g, 7.0, "validation") == (7.0, "validation")
    assert resolve_lambda(g) == (g.default_lam, "default (no λ ablation yet)")


def test_lambda_zero_is_the_model_without_the_au_loss_everywhere():
    from fer_models.config import au_loss_on, au_loss_weight
    from fer_analysis.run_labels import au_loss_used

    g = GridConfig(datasets=("synthetic-rafdb",), methods=("cam",))
    off = g.train_config("cam", "synthetic-rafdb", au=False)
    assert g.train_config("cam", "synthetic-rafdb", au=True, lam=0.0) == off
    assert not au_loss_on(True, 0.0) and au_loss_on(True, 0.5) and not au_loss_on(False, 2.0)
    on = TrainConfig(lam=2.0)
    assert au_loss_weight(on) == 2.0 and au_loss_weight(TrainConfig(lam=0.0)) == 0.0 == au_loss_weight(off)
    assert au_loss_used(on) and not au_loss_used(TrainConfig(lam=0.0))
