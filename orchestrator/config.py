"""The grid's configuration: frozen dataclasses <-> YAML, overridden from the CLI.

A :class:`GridConfig` holds everything a grid invocation varies; the studies of
``orchestrator/studies/`` (registered in :data:`orchestrator.registry.STUDIES`) expand it
into the :class:`Trial` list they need with :func:`orchestrator.studies.expand`:

- ``grid``   (Table 1 and 2): method x dataset x {w/o AU, w/ AU} x seed;
- ``lambda`` (Fig. 5): CAM, layer 5, one dataset, λ in ``lambdas`` plus the w/o-AU model;
- ``layers`` (Table 3): CAM, one dataset, each set in ``layer_sets`` plus the w/o-AU model.

A w/o-AU trial has no λ and no aligned layers, so :meth:`GridConfig.train_config`
normalises it to ``lam=0``, ``layers=(5,)``: the same vanilla model is then one config (one
hash) shared by all studies and trained once.

λ of the main grid is chosen on *validation*, never on test (paper 002, Sec. 4.1: "λ is
estimated using validation ... hyper-parameters are transferred from RAF-DB to AffectNet"):
see :func:`orchestrator.lambda_choice.choose_lambda`. ``lam`` set explicitly wins over that choice.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import yaml

from fer_models.config import TrainConfig, au_loss_on, from_dict, parse_layers, to_dict
from fer_models.errors import ConfigError
from fer_models.schema import check, hashed, meta
from orchestrator.options import parse_folds

#: Paper 002, Fig. 5: "values that range from less than 1 to 20".
PAPER_LAMBDAS: tuple[float, ...] = (0.1, 0.5, 1.0, 2.0, 4.0, 8.0, 20.0)
#: Paper 002, Table 3 (layer 1 is the input layer).
PAPER_LAYER_SETS: tuple[str, ...] = ("1", "2", "3", "4", "5", "5+4", "5+4+3", "5+4+3+2", "5+4+3+2+1")


def _paper_methods() -> tuple[str, ...]:
    """The 11 methods of paper 002's Table 1 (METHODS metadata ``table1``), imported on use
    so that reading a config does not import torch."""
    from fer_models.methods import paper_methods

    return paper_methods()


@dataclass(frozen=True)
class Resources:
    """Per-trial resources; fractional GPUs (e.g. 0.25) pack several trials on one GPU.

    ``custom``: Ray custom resources each trial also asks for (``--trial-resources
    worker=1``), so trials run only on the nodes started with ``ray start --resources
    '{"worker": N}'`` (N trials at once per node).

    ``gpu_share``: GPUs per trial of one ``"<method>/<dataset>"`` (or every method's on
    ``"<dataset>"``) instead of ``gpus``; the paper presets fill it from the computed peak
    memory of each trial (``orchestrator.gpu_memory``); ``--gpus-per-trial`` empties it.

    ``workers_per_trial``: data-parallel workers of a trial (``orchestrator.ddp``), keyed like
    ``gpu_share`` or ``"*"`` (every trial); 1 when unlisted. Not in the config hash.
    """

    cpus: float = 1.0
    gpus: float = 0.0
    custom: dict[str, float] = field(default_factory=dict)
    gpu_share: dict[str, float] = field(default_factory=dict)
    workers_per_trial: dict[str, int] = field(default_factory=dict)

    def workers_for(self, method: str, dataset: str) -> int:
        from orchestrator.workers import workers_for  # 1 for a twin: it mostly evaluates

        return workers_for(self.workers_per_trial, method, dataset)

    def gpus_for(self, method: str, dataset: str) -> float:
        """The GPUs a trial of ``method`` on ``dataset`` asks for."""
        share = self.gpu_share
        return float(share.get(f"{method}/{dataset}", share.get(dataset, self.gpus)))


def _no_twice(option: str, values: list) -> None:
    """A list option names each entry once: ``--methods cam,CAM`` trained one network twice
    under two names (names are case-insensitive)."""
    seen: set = set()
    for v in values:
        if v in seen:
            raise ConfigError(f"{option} lists {v!r} twice (names are case-insensitive); give each once")
        seen.add(v)


def check_experiment_name(name: Any) -> str:
    """An MLflow experiment name that is also a safe folder name (the report's default
    folder, Tune's experiment folder, the grid's state file): not empty, no path separator,
    not ``.`` / ``..``, no control character, at most 200 characters. ``--experiment
    ../../x`` wrote the report outside FER_ORCH_HOME."""
    text = name if isinstance(name, str) else ""
    bad = (not text.strip() or "/" in text or "\\" in text or text in (".", "..") or len(text) > 200
           or any(ord(ch) < 32 or ord(ch) == 127 for ch in text))
    if bad:
        raise ConfigError(f"experiment name (--experiment) {name!r} is not usable: it names a folder too, so it must be "
                          "1-200 characters without '/', '\\' or control characters and not '.' or '..'")
    return text


@dataclass(frozen=True)
class GridConfig:
    datasets: tuple[str, ...] = ("synthetic-rafdb", "synthetic-affectnet")
    methods: tuple[str, ...] = field(default_factory=_paper_methods)
    seeds: tuple[int, ...] = (0,)
    # seeds of the λ and layer ablations (None: ``seeds``); the main grid makes w/o-vs-w/ AU
    # claims that need a CI over seeds, the ablations' curves may stay at one seed on a CPU
    ablation_seeds: tuple[int, ...] | None = None
    au: tuple[bool, ...] = (False, True)  # the Table-1 columns w/o AU, w/ AU
    lam: float | None = meta(None, cli="--lambda/--lam")  # None: chosen on validation (λ ablation), else default_lam
    default_lam: float = 1.0  # used when no λ ablation has been run yet
    layers: tuple[int, ...] = meta((5,), also=(str, int))  # aligned layers in the main grid (paper: top layer)
    lambdas: tuple[float, ...] = PAPER_LAMBDAS
    layer_sets: tuple[str, ...] = meta(PAPER_LAYER_SETS, also=(tuple[int | str, ...],))
    ablation_method: str = "cam"
    ablation_dataset: str | None = None  # None: the first of ``datasets``
    base: TrainConfig = field(default_factory=TrainConfig)
    # partial TrainConfig dicts applied over ``base``: per method, then per dataset
    method_overrides: dict[str, Any] = meta(factory=dict, entries=TrainConfig)
    dataset_overrides: dict[str, Any] = meta(factory=dict, entries=TrainConfig)
    resources: Resources = field(default_factory=Resources)
    tracking_uri: str | None = None  # None: $MLFLOW_TRACKING_URI or SQLite in FER_ORCH_HOME
    experiment: str = "fer-orch"
    storage_path: str | None = None  # None: FER_ORCH_HOME/ray; shared storage on a cluster
    max_concurrent: int = 0  # 0: as many as resources allow
    max_failures: int = 2  # retries of a trial whose worker died, from its last checkpoint
    address: str | None = None  # Ray address; None: $RAY_ADDRESS or a local instance
    preset: str = "custom"  # informational: which preset this started from
    # cross-validation (papers 001, 003): None = the fold the data options name (one run);
    # N = folds 0..N-1 of N subject-wise folds; "all" = every fold the dataset has
    folds: int | str | None = None
    # whether `fer-orch grid` also runs the ablation studies (λ, layers); the seed-paper
    # presets turn them off (their AU loss is off); `--ablations/--no-ablations` overrides
    ablations: bool = True
    # the AU sources the `au-source` study compares (DataConfig.au_source), each a
    # w/-AU model beside the w/o-AU one; the codebook (paper 002) is always among them
    au_sources: tuple[str, ...] = ("codebook", "labels", "codebook+labels")
    # the methods of the `au-source` study (None: ``ablation_method``); `ablate au-source --methods`
    au_source_methods: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if not self.datasets:
            raise ConfigError("the grid has no datasets; pass --datasets name[,name] (see `fer-orch list datasets`)")
        if not self.methods:
            raise ConfigError("the grid has no methods; pass --methods name[,name] (see `fer-orch list methods`)")
        if not self.seeds:
            raise ConfigError("the grid has no seeds; pass --seeds N or --seeds 0,1,2")
        if self.ablation_seeds is not None and not self.ablation_seeds:
            raise ConfigError("ablation_seeds is empty; give at least one seed (or leave it unset to use `seeds`)")
        if not (math.isfinite(self.resources.cpus) and math.isfinite(self.resources.gpus)) \
                or self.resources.cpus <= 0 or self.resources.gpus < 0:
            raise ConfigError(
                f"per-trial resources must be cpus > 0 and gpus >= 0, got cpus={self.resources.cpus} "
                f"gpus={self.resources.gpus}; fix --cpus-per-trial/--gpus-per-trial"
            )
        bad = {k: v for k, v in self.resources.custom.items() if k in ("CPU", "GPU", "memory") or not float(v) > 0}
        if bad:
            raise ConfigError(
                f"custom trial resources must be positive amounts of resources other than CPU/GPU/memory, got {bad}; "
                f"fix --trial-resources (e.g. worker=1)"
            )
        from orchestrator.workers import check_workers_table

        check_workers_table(self.resources.workers_per_trial)
        lams = [*self.lambdas, self.default_lam] + ([] if self.lam is None else [self.lam])
        if any(not isinstance(x, (int, float)) or not math.isfinite(x) or not au_loss_on(True, x) for x in lams):
            # these weigh w/-AU trials, and λ = 0 is the model without the AU loss (au_loss_on)
            raise ConfigError(f"λ must be > 0 and finite (paper 002, Eq. 3), got {lams}; "
                              f"fix --lambda, default_lam or the lambdas list")
        for name in ("max_concurrent", "max_failures"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                raise ConfigError(f"{name} must be an integer >= 0, got {getattr(self, name)!r}; "
                                  f"fix --{name.replace('_', '-')}")
        for s in self.layer_sets:
            parse_layers(s)
        parse_layers(self.layers)
        object.__setattr__(self, "folds", parse_folds(self.folds))
        from fer_models.data.au import CODEBOOK, parse_au_source

        sources = tuple(dict.fromkeys((CODEBOOK, *(parse_au_source(s) for s in self.au_sources))))
        object.__setattr__(self, "au_sources", sources)

    # -- YAML ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    def to_yaml(self) -> str:
        """The YAML of this config (logged as the grid's ``grid.yaml``), a password in
        ``tracking_uri`` shown as ``***``."""
        from orchestrator.tracking.store import redact

        d = self.to_dict()
        if d.get("tracking_uri"):
            d["tracking_uri"] = redact(d["tracking_uri"])
        return yaml.safe_dump(d, sort_keys=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "GridConfig":
        return from_dict(cls, d)

    @classmethod
    def from_yaml(cls, path: str | Path, base: "GridConfig | None" = None) -> "GridConfig":
        """Load a (possibly partial) YAML file over ``base`` (default: the dataclass defaults)."""
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"grid config file '{p}' does not exist; pass an existing YAML file to --config")
        try:
            d = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"grid config file '{p}' is not valid YAML ({str(e).splitlines()[0]})") from None
        if not isinstance(d, dict):
            raise ConfigError(f"grid config file '{p}' must hold a mapping of GridConfig fields")
        check(cls, d)  # a wrong type or unknown key, at any depth: one sentence naming its path
        return (base or cls()).override(**d)

    def override(self, **changes: Any) -> "GridConfig":
        """A copy with ``changes`` applied; nested dicts (``base``, ``resources``) merge."""
        merged = _deep_merge(self.to_dict(), {k: v for k, v in changes.items() if v is not None})
        return GridConfig.from_dict(merged)

    # -- trials ----------------------------------------------------------------------
    def ablation_on(self) -> str:
        return self.ablation_dataset or self.datasets[0]

    def validate(self, configs: Iterable[TrainConfig] | None = None) -> "GridConfig":
        """:func:`fer_models.config.validate` of ``configs`` (default: the main grid's method x
        dataset, w/ and w/o AU), plus the grid's own fields and the reader options: one
        sentence before any Ray start or cache build (``grid --epochs 0`` must never reach a
        trial). The configs a set of studies will train: :func:`orchestrator.studies.validate`.
        Returns ``self``."""
        from fer_models.config import validate

        check_experiment_name(self.experiment)
        _no_twice("--methods", [str(m).lower() for m in self.methods])
        _no_twice("--datasets", [str(d).lower() for d in self.datasets])
        _no_twice("--seeds", list(self.seeds))
        _no_twice("lambdas", [float(x) for x in self.lambdas])
        _no_twice("layer_sets", [tuple(sorted(parse_layers(x))) for x in self.layer_sets])
        self.check_data_options()
        self.check_override_names()
        if configs is None:
            configs = [self.train_config(m, d, au=au) for m in self.methods for d in self.datasets for au in self.au]
        for cfg in configs:
            validate(cfg)
        return self

    def check_override_names(self) -> None:
        """Each ``method_overrides`` / ``dataset_overrides`` entry names a known method / dataset
        (a misspelt one was kept and never applied): one sentence naming its path."""
        from fer_models.errors import UnknownNameError
        from fer_models.registry import DATASETS, METHODS
        from fer_models.schema import ConfigSchemaError

        for what, overrides, registry in (("method_overrides", self.method_overrides, METHODS),
                                          ("dataset_overrides", self.dataset_overrides, DATASETS)):
            for name in overrides:
                try:
                    registry.get(name)
                except UnknownNameError as e:
                    raise ConfigSchemaError(f"{what}.{name}: {e}") from None

    def seeds_of_ablations(self) -> tuple[int, ...]:
        """The seeds the λ and layer ablations run: ``ablation_seeds``, else ``seeds``."""
        return tuple(self.ablation_seeds) if self.ablation_seeds is not None else tuple(self.seeds)

    def check_data_options(self) -> None:
        """Every dataset's reader options (with its overrides) and ``folds`` suit its reader:
        one sentence listing the valid options, before any work."""
        from fer_models.data.readers import check_options

        for dataset in self.datasets:
            check_options(dataset, self.train_config(self.methods[0], dataset, au=False).data.options)
            self.fold_options(self.methods[0], dataset)

    def fold_options(self, method: str, dataset: str) -> list[dict[str, Any]]:
        """The data options of each cross-validation trial of ``dataset`` (``[{}]`` without
        ``folds``): ``{"fold": k}`` plus ``n_folds`` where the reader takes it. An unknown
        fold count or a dataset without folds is one sentence (before any work)."""
        if self.folds is None:
            return [{}]
        from fer_models.data.readers import fold_options

        options = self.train_config(method, dataset, au=False).data.options
        return fold_options(dataset, options, self.folds)

    def dataset_override(self, dataset: str) -> dict[str, Any]:
        """``dataset``'s entry of ``dataset_overrides``; a synthetic stand-in without one of its
        own (``synthetic-tfd``) takes its real dataset's (``tfd``), so that a preset's recipe
        (paper 001's 700 TFD epochs, the 96 px file) is what the offline command rehearses."""
        if dataset in self.dataset_overrides:
            return self.dataset_overrides[dataset]
        real = dataset.removeprefix("synthetic-")
        return self.dataset_overrides.get(real, {}) if real != dataset else {}

    def train_config(self, method: str, dataset: str, **fields: Any) -> TrainConfig:
        """``base`` + method override + dataset override + ``fields`` (the grid's variables;
        ``data={"options": {...}}`` merges into the data options)."""
        d = to_dict(self.base)
        d = _deep_merge(d, self.method_overrides.get(method, {}))
        d = _deep_merge(d, self.dataset_override(dataset))
        d = _deep_merge(d, {"method": method, "data": {"dataset": dataset}})
        d = _deep_merge(d, fields)
        if not au_loss_on(d["au"], d["lam"]):  # one vanilla config for every study (no loss: the map's source is moot)
            d["au"], d["lam"], d["layers"] = False, 0.0, [5]
            d["data"]["au_source"] = "codebook"
        else:
            d["layers"] = list(parse_layers(d["layers"]))
        return from_dict(TrainConfig, d)


def resolve_lambda(g: GridConfig, chosen: float | None = None, source: str = "validation") -> tuple[float, str]:
    """The λ of the w/-AU trials that do not vary it, and where it came from: the one λ
    precedence. ``g.lam`` already holds CLI > YAML > preset (``build_grid_config`` applies the
    preset, then ``--config``, then ``--lambda``/``--lam``); set, it wins ("configured"); else
    ``chosen`` (on validation from the λ ablation, ``orchestrator.lambda_choice.choose_lambda``); else
    ``default_lam``."""
    if g.lam is not None:
        return float(g.lam), "configured"
    if chosen is not None:
        return float(chosen), source
    return float(g.default_lam), "default (no λ ablation yet)"


@dataclass(frozen=True)
class Trial:
    cfg: TrainConfig
    study: str = "grid"

    @property
    def hash(self) -> str:
        return config_hash(self.cfg)

    @property
    def name(self) -> str:
        c = self.cfg
        au = f"au-l{c.lam:g}-L{'+'.join(map(str, c.layers))}" if c.au else "noau"
        fold = f"-f{c.data.options['fold']}" if "fold" in c.data.options else ""
        target = "-identity" if c.target != "expression" else ""
        src = f"-{c.data.au_source.replace(':', '-')}" if c.au and c.data.au_source != "codebook" else ""
        return f"{c.method}-{c.data.dataset}{target}-{au}{src}{fold}-s{c.seed}"

    def tags(self) -> dict[str, str]:
        """The grid variables' tags (:data:`orchestrator.variables.GRID_VARIABLES`), the hash and the study."""
        from orchestrator.variables import tags_of

        return {**tags_of(self.cfg), "fer_orch.config_hash": self.hash, "fer_orch.study": self.study}


def config_hash(cfg: TrainConfig) -> str:
    """12 hex digits identifying what a trial learns (used to skip finished trials).

    ``data.augment`` was a flag before it became a step list: the CPU recipe hashes as the
    old ``true`` and no steps as ``false``.
    """
    from fer_models.data.steps import CPU_RECIPE

    d = hashed(TrainConfig, to_dict(cfg))  # the fields the schema marks (fer_models.schema.hashed)
    steps = d["data"].get("augment")
    if steps == list(CPU_RECIPE) or steps == []:
        d["data"]["augment"] = steps == list(CPU_RECIPE)
    return hashlib.sha1(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _deep_merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and k not in ("method_kwargs",):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out
