"""Every registry family keeps its contract, and a new entry is one new file.

The contract test iterates over the families of `fer-orch list` (``orchestrator.cli._families``),
so a new family is picked up; a family without a contract check below fails until one is
written. The throw-away tests add one module to a package with the ``entry_module`` fixture
(conftest.py) and show that the CLI and the grid find it with no other file edited.
"""

from __future__ import annotations

import inspect

import pytest
import torch
from click.testing import CliRunner

from fer_models.config import DataConfig, TrainConfig
from fer_models.errors import ConfigError, MissingWeightsError, UnknownNameError
from fer_models.registry import BACKBONES, METHODS
from orchestrator.cli import _families, main
from orchestrator.registry import PRESETS, STUDIES

FAMILIES = _families()
ENTRIES = [(fam, name) for fam, reg in FAMILIES.items() for name in reg.names()]


def _params(fn) -> dict[str, inspect.Parameter]:
    return dict(inspect.signature(fn).parameters)


def _takes(fn, *names: str) -> None:
    params = _params(fn)
    missing = [n for n in names if n not in params]
    assert not missing, f"{fn.__qualname__} lacks parameter(s) {missing}; it has {list(params)}"


def _dataset(name, cls, meta):
    from fer_models.data.manifest import Manifest

    _takes(cls.read, "root", "val_fraction", "seed")
    assert any(p.kind is p.VAR_KEYWORD for p in _params(cls.read).values())
    assert inspect.signature(cls.read).return_annotation in (Manifest, "Manifest")
    cls()


def _landmarks(name, cls, meta):
    assert cls.name == name and isinstance(cls.version, str) and cls.version
    assert isinstance(cls.uses_gpu, bool)
    _takes(cls.__init__, "device")
    _takes(cls.detect, "images", "samples")
    try:
        backend = cls(device="cpu")
    except MissingWeightsError:  # the documented offline outcome (face-alignment's weights)
        return
    assert backend.detect([], []) == []


def _au_detector(name, cls, meta):
    from fer_models.data.au import AU_IDS
    from fer_models.data.au_detectors import AUDetector, weights_dir

    assert issubclass(cls, AUDetector) and cls.name == name and cls.version
    assert cls.au_ids and set(AU_IDS) & set(cls.au_ids) and 0 < cls.threshold <= 1
    assert cls.weights_files, f"AU detector '{name}' names no weights file"
    _takes(cls.__init__, "device")
    _takes(cls.scores, "images", "landmarks")
    if meta.get("published"):  # offline, with no file in place: one sentence naming each file
        with pytest.raises(MissingWeightsError) as err:
            cls(device="cpu")
        for f in cls.weights_files:
            assert str(weights_dir() / f) in str(err.value)


def _codebook(name, cb, meta):
    from fer_models.data.au import AU_IDS, Codebook

    assert isinstance(cb, Codebook) and cb.name == name
    aus = {a for v in cb.aus_per_label.values() for a in v}
    assert aus and aus <= set(AU_IDS)


def _backbone(name, fn, meta):
    from fer_models.backbones import Backbone

    _takes(fn, "pretrained", "image_size")
    assert meta["family"] in ("cnn", "vit", "hybrid")
    for other in ("vit", "hybrid"):  # a counterpart of another family is a registered backbone of it
        if meta.get(other):
            assert meta["family"] != other and BACKBONES.meta(meta[other])["family"] == other
    net = fn(pretrained=False, image_size=32)
    assert isinstance(net, Backbone) and net.family == meta["family"]
    assert all(isinstance(net.stage(layer), torch.nn.Module) for layer in range(1, 6))


def _method(name, cls, meta):
    from fer_models.methods import FERModel, build_model

    assert issubclass(cls, FERModel)
    assert meta["backbone"] in ("cnn", "vit", "hybrid", None)
    assert list(_params(cls.__init__))[1:3] == ["backbone", "num_classes"]
    _takes(cls.__init__, "image_size")
    model = build_model(TrainConfig(method=name, backbone="resnet-tiny", data=DataConfig(image_size=32, map_size=16)), 7)
    assert isinstance(model, FERModel) and isinstance(model.cam_layer(), torch.nn.Module)


def _explainer(name, cls, meta):
    from fer_analysis.explainers._base import Explainer

    assert issubclass(cls, Explainer) and cls.attribute is not Explainer.attribute
    assert meta["output"] in ("input", "map")
    _takes(cls.__init__, "model")


def _probe(name, fn, meta):
    params = _params(fn)
    assert list(params)[:2] == ["emb", "out_dir"]
    assert params["control"].kind is inspect.Parameter.KEYWORD_ONLY and params["control"].default is None
    assert "seed" in params and any(p.kind is p.VAR_KEYWORD for p in params.values())


def _job(name, fn, meta):
    from fer_analysis.jobs import SPLITS, canonical_job

    assert meta["split"] in SPLITS and isinstance(meta["needs"], tuple)
    params = _params(fn)
    assert list(params)[:4] == ["model", "loader", "out_dir", "spec"]
    assert all(params[k].kind is inspect.Parameter.KEYWORD_ONLY for k in ("num_classes", "device", "progress"))
    if "context" in params:  # the run's RunContext (target, class names, AU loss, --compare-run), optional
        assert params["context"].kind is inspect.Parameter.KEYWORD_ONLY and params["context"].default is None
    if "alias_of" in meta:
        assert canonical_job(name) == meta["alias_of"] != name


def _preset(name, fn, meta):
    from orchestrator import presets
    from orchestrator.config import GridConfig

    assert not [p for p in _params(fn).values() if p.default is p.empty and p.kind is not p.VAR_KEYWORD]
    assert meta.get("default_for") in (None, "synthetic", "real")
    g = presets.get(name)
    assert isinstance(g, GridConfig) and g.preset == name


def _study(name, cls, meta):
    from orchestrator import presets, studies

    assert issubclass(cls, studies.Study) and cls.missing
    assert cls.report is not studies.Study.report
    trials = studies.expand(presets.get("cpu"), name)
    assert trials and {t.study for t in trials} == {name}
    assert len({t.hash for t in trials}) == len(trials)
    assert (name in studies.ablations()) == cls.ablation


def _model(name, cls, meta):
    from fer_models.zoo import InputSpec, ZooEntry, ZooModel, class_order, weights_dir

    assert issubclass(cls, ZooEntry) and cls.name == name and cls.weights
    if meta.get("byo"):  # bring your own: the options it needs are one sentence
        with pytest.raises(ConfigError, match="needs --"):
            cls().load()
        return
    assert isinstance(cls.input, InputSpec) and cls.input.crop and 5 in cls.layers
    assert len(class_order(cls.classes)) >= 6
    if meta.get("published"):  # offline, with no file in place: one sentence naming the file and its folder
        with pytest.raises(MissingWeightsError, match=str(weights_dir())):
            cls().load()
        return
    model = cls().load()
    assert isinstance(model, ZooModel)
    out = model(torch.rand(2, cls.input.channels, cls.input.size, cls.input.size))
    assert out.logits.shape == (2, len(class_order(cls.classes))) and sorted(out.features) == sorted(cls.layers)


CONTRACTS = {
    "models": _model,
    "datasets": _dataset,
    "landmarks": _landmarks,
    "codebooks": _codebook,
    "au-detectors": _au_detector,
    "backbones": _backbone,
    "methods": _method,
    "explainers": _explainer,
    "jobs": _job,
    "probes": _probe,
    "presets": _preset,
    "studies": _study,
}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_every_family_has_entries_and_a_contract(family):
    assert FAMILIES[family].names(), f"family '{family}' has no entry"
    assert family in CONTRACTS, f"family '{family}' has no contract check: add one to CONTRACTS in {__file__}"


@pytest.mark.parametrize("family, name", ENTRIES, ids=[f"{f}/{n}" for f, n in ENTRIES])
def test_entry_keeps_its_family_contract(family, name):
    reg = FAMILIES[family]
    meta = reg.meta(name)
    assert meta["description"].strip(), f"{family} '{name}' has no description (first docstring line)"
    if family in CONTRACTS:
        CONTRACTS[family](name, reg.get(name), meta)


def test_the_cli_lists_every_family():
    res = CliRunner().invoke(main, ["list"])
    assert res.exit_code == 0, res.output
    heads = [line for line in res.output.splitlines() if line and not line.startswith(" ")]
    assert heads == list(FAMILIES)
    assert {"presets", "studies"} <= set(heads)


def test_study_order_runs_lambda_first_and_reports_in_the_papers_order():
    from orchestrator import studies

    assert studies.run_order(["layers", "grid", "lambda"]) == ("lambda", "grid", "layers")
    assert studies.grid_studies() == ("lambda", "grid", "layers")
    assert studies.grid_studies(ablations=False) == ("grid",)
    assert studies.report_order() == ("grid", "layers", "au-source", "lambda")
    assert studies.ablations() == ["au-source", "lambda", "layers"]  # au-source: not in the default grid
    with pytest.raises(UnknownNameError, match="unknown study 'nope'; known studies: au-source, grid, lambda, layers"):
        studies.run_order(["grid", "nope"])


# --------------------------------------------------------------------------------------
# throw-away entries: one new file, nothing else
# --------------------------------------------------------------------------------------


def test_a_new_preset_file_is_listed_and_usable_from_the_cli(entry_module):
    res = CliRunner().invoke(main, ["grid", "--preset", "tiny-test", "--print-config"])
    assert res.exit_code == 2 and "tiny-test" in res.output  # not there yet
    entry_module(PRESETS, "tiny_test", '''
        from orchestrator.presets import get
        from orchestrator.registry import PRESETS


        @PRESETS.register("tiny-test")
        def tiny():
            """CAM on synthetic RAF-DB for one epoch: a throw-away preset."""
            return get("cpu", methods=("cam",), datasets=("synthetic-rafdb",), base={"epochs": 1})
    ''')
    res = CliRunner().invoke(main, ["list", "presets"])
    assert "tiny-test" in res.output and "a throw-away preset" in res.output
    res = CliRunner().invoke(main, ["grid", "--preset", "tiny-test", "--print-config", "--no-ablations"])
    assert res.exit_code == 0, res.output
    assert "preset: tiny-test" in res.output and "epochs: 1" in res.output and "# grid: 6 trials" in res.output  # x 3 seeds


def test_a_new_study_file_is_expanded_run_by_grid_offered_by_ablate_and_reported(entry_module, mlflow_uri, tmp_path):
    from orchestrator import presets, studies
    from orchestrator.report import build_report
    from orchestrator.tracking import ensure_experiment

    entry_module(STUDIES, "deep_test", '''
        from orchestrator.registry import STUDIES
        from orchestrator.studies import Ablation


        @STUDIES.register("deep-test")
        class DeepAlignment(Ablation):
            """Align layers 5+4+3 at λ 1 and 10: a throw-away study."""

            order = 4
            missing = "No finished deep-test trials."

            def variants(self, g, lam):
                return [{"lam": value, "layers": [5, 4, 3]} for value in (1.0, 10.0)]

            def report(self, parent, df, out):
                return [f"### deep-test: {len(df)} runs"]
    ''')
    g = presets.get("cpu")
    trials = studies.expand(g, "deep-test")
    assert [(t.cfg.au, t.cfg.lam, t.cfg.layers) for t in trials] == [
        (False, 0.0, (5,)), (True, 1.0, (5, 4, 3)), (True, 10.0, (5, 4, 3))]
    assert {t.study for t in trials} == {"deep-test"}
    # the vanilla model is the one every other study shares (trained once)
    assert trials[0].hash == studies.expand(g, "lambda")[0].hash
    assert studies.grid_studies() == ("lambda", "grid", "layers", "deep-test")
    res = CliRunner().invoke(main, ["grid", "--print-config"])
    assert res.exit_code == 0 and res.output.rstrip().endswith("# deep-test: 3 trials"), res.output
    res = CliRunner().invoke(main, ["ablate", "deep-test", "--print-config"])
    assert res.exit_code == 0 and "# deep-test: 3 trials" in res.output, res.output
    ensure_experiment("empty", mlflow_uri)
    md = build_report("empty", mlflow_uri, tmp_path / "out", log=False).markdown
    assert md.index("No finished layer-ablation") < md.index("No finished deep-test trials.") < md.index("No finished λ")


def test_a_new_method_file_is_built_and_gridded_by_name(entry_module):
    from fer_models.methods import build_model, paper_methods

    entry_module(METHODS, "cam_test", '''
        from fer_models.methods.cam import CAM
        from fer_models.registry import METHODS


        @METHODS.register("cam-test", backbone="cnn", family="CNN-based")
        class CAMTest(CAM):
            """CAM under another name: a throw-away method."""

            name = "cam-test"
    ''')
    assert "a throw-away method" in CliRunner().invoke(main, ["list", "methods"]).output
    model = build_model(TrainConfig(method="cam-test", backbone="resnet-tiny", data=DataConfig(image_size=32)), 7)
    assert model.method_name == "cam-test" and model(torch.zeros(2, 3, 32, 32)).logits.shape == (2, 7)
    assert "cam-test" not in paper_methods()  # no `table1` metadata: not in the default grid
    res = CliRunner().invoke(main, ["grid", "--methods", "cam-test", "--print-config", "--no-ablations"])
    assert res.exit_code == 0 and "# grid: 12 trials" in res.output, res.output  # 2 datasets x 2 AU x 3 seeds


def test_a_new_backbone_file_serves_cnn_and_transformer_methods(entry_module):
    from fer_models.methods import build_model, resolve_backbone

    entry_module(BACKBONES, "tiny_test", '''
        from fer_models.backbones.resnet import resnet_tiny
        from fer_models.registry import BACKBONES


        @BACKBONES.register("resnet-tiny-test", family="cnn", vit="vit-tiny-small")
        def resnet_tiny_test(pretrained=False, image_size=48):
            """resnet-tiny under another name: a throw-away backbone."""
            return resnet_tiny(pretrained, image_size)
    ''')
    assert "a throw-away backbone" in CliRunner().invoke(main, ["list", "backbones"]).output
    model = build_model(TrainConfig(method="cam", backbone="resnet-tiny-test", data=DataConfig(image_size=32)), 7)
    assert model.backbone_name == "resnet-tiny-test"
    assert resolve_backbone("tscam", "resnet-tiny-test") == "vit-tiny-small"  # from its own metadata
