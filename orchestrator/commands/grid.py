"""`fer-orch` commands: grid, ablate."""

from __future__ import annotations

import dataclasses
import os
import sys

import click

from fer_models.config import METRIC_DEFS, TrainConfig
from orchestrator.commands import RegistryChoice, schema_option
from orchestrator.config import GridConfig


def _preset_names() -> list[str]:
    from orchestrator.registry import PRESETS

    return PRESETS.names()


def _ablation_names() -> list[str]:
    from orchestrator import studies

    return studies.ablations()


def _grid_options(fn):
    """Options shared by `grid` and `ablate`; they override the preset and --config."""
    opts = [
        click.option("--datasets", help="Comma-separated DATASETS names; default: the embedded synthetic ones (CPU preset)."),
        click.option("--methods", help="Comma-separated METHODS names; default: the 11 of paper 002, Table 1."),
        click.option("--seeds", help="A count (3 = seeds 0,1,2) or a list (0,4)."),
        click.option("--config", "config_path", type=click.Path(dir_okay=False), help="A GridConfig YAML file (partial is fine)."),
        click.option("--preset", type=RegistryChoice(_preset_names), help="Start from this preset (default: cpu for synthetic data, else paper)."),
        schema_option(TrainConfig, "epochs", "--epochs", default=None, help="Epochs per trial (overrides the preset)."),
        schema_option(GridConfig, "lam", "--lambda", "--lam", "lam", default=None,
                      help="Fix λ instead of choosing it on validation from the λ ablation (> 0: it weighs the w/ AU trials)."),
        click.option("--metric-def", type=click.Choice(METRIC_DEFS),
                     help="How CAM-/ATT-COS are computed: the project's definition (default) or the released code's."),
        click.option("--resume/--no-resume", default=True, show_default=True,
                     help="Resume an interrupted run of the same command and skip finished trials."),
        click.option("--tracking-uri", help="MLflow tracking URI (default: SQLite in FER_ORCH_HOME, or $MLFLOW_TRACKING_URI)."),
        click.option("--experiment", help="MLflow experiment name (default: fer-orch)."),
        click.option("--address", help="Ray cluster address (default: $RAY_ADDRESS or a local Ray)."),
        click.option("--storage", "storage_path", help="Tune storage (default FER_ORCH_HOME/ray; shared storage on a cluster)."),
        click.option("--cpus-per-trial", type=float, help="CPUs per trial."),
        click.option("--gpus-per-trial", type=float,
                     help="GPUs per trial; fractions (0.5) pack trials on one GPU [default: the preset's; the "
                          "paper presets size each trial from its computed memory, --print-config shows it]."),
        click.option("--workers-per-trial", help="Data-parallel workers per trial (Ray Train, one GPU each with "
                     "--gpus-per-trial 1): N for every trial, or DATASET=N / METHOD/DATASET=N[,...] (docs/cluster.md)."),
        click.option("--trial-resources", help="Ray custom resources per trial, NAME=AMOUNT[,...]: trials run only on the "
                     "nodes started with `ray start --resources '{\"NAME\": N}'`."),
        click.option("--max-concurrent", type=int, help="At most this many trials at once (0: resources decide)."),
        click.option("--max-failures", type=int, help="Retries of a trial whose worker died, from its last checkpoint."),
        click.option("--print-config", is_flag=True,
                     help="Print the resolved GridConfig YAML, every trial's settings as a table and the trial "
                          "counts; run nothing (offline: no dataset, cache or weights is touched)."),
        click.option("--data-opt", "data_opts", multiple=True, metavar="NAME=VALUE",
                     help="A dataset reader option, repeatable (e.g. --data-opt classes=6 --data-opt fold=3); "
                          "a wrong one is refused with the list of valid ones (docs/reproducing-seed-papers.md)."),
        click.option("--au-source", "au_source",
                     help="Source of the AU map of the w/-AU trials: codebook (paper 002, default), labels, "
                          "codebook+labels (= codebook∩labels) or detector:NAME; `ablate au-source` takes a "
                          "comma-separated list of the sources to compare."),
        click.option("--folds", help="Cross-validation of the main grid: N subject-wise folds (10) or 'all' (every fold "
                                     "the dataset has), each fold a trial; the report gives mean ± sd over folds."),
    ]
    for o in reversed(opts):
        fn = o(fn)
    return fn


def build_grid_config(datasets=None, methods=None, seeds=None, config_path=None, preset=None, epochs=None, lam=None,
                      tracking_uri=None, experiment=None, address=None, storage_path=None, cpus_per_trial=None,
                      gpus_per_trial=None, max_concurrent=None, max_failures=None, data_opts=(), folds=None,
                      trial_resources=None, au_source=None, metric_def=None, workers_per_trial=None,
                      **_ignored):
    from orchestrator import presets
    from orchestrator.config import GridConfig
    from orchestrator.options import parse_data_opts, parse_list, parse_resources, parse_seeds
    from orchestrator.workers import parse_workers

    ds = parse_list(datasets)
    g = presets.get(preset or presets.for_datasets(ds))
    if config_path:
        g = GridConfig.from_yaml(config_path, base=g)
    resources = {k: v for k, v in (("cpus", cpus_per_trial), ("gpus", gpus_per_trial),
                                   ("custom", parse_resources(trial_resources)),
                                   ("workers_per_trial", parse_workers(workers_per_trial))) if v is not None}
    base: dict = {k: v for k, v in (("epochs", epochs), ("metric_def", metric_def)) if v is not None}
    if data_opts:
        base["data"] = {"options": parse_data_opts(data_opts)}
    sources = parse_list(au_source)
    if sources and len(sources) == 1:  # the grid's source; the au-source study compares the listed ones
        base.setdefault("data", {})["au_source"] = sources[0]
    g = g.override(
        datasets=ds,
        methods=parse_list(methods),
        seeds=parse_seeds(seeds),
        lam=lam,
        tracking_uri=tracking_uri,
        experiment=experiment,
        address=address,
        storage_path=storage_path,
        max_concurrent=max_concurrent,
        max_failures=max_failures,
        resources=resources or None,
        base=base or None,
        folds=folds,
        au_sources=sources,
    )
    from orchestrator.tracking.store import strip_credentials

    if g.tracking_uri and strip_credentials(g.tracking_uri) != g.tracking_uri:  # never stored nor printed
        g = g.override(tracking_uri=strip_credentials(g.tracking_uri))
    if epochs is not None:  # the user's number beats the preset's per-dataset ones too
        g = _without_field(g, "epochs")
    if gpus_per_trial is not None and g.resources.gpu_share:  # the user's number, for every trial
        g = dataclasses.replace(g, resources=dataclasses.replace(g.resources, gpu_share={}))
    g.check_data_options()
    return g


def _without_field(g, name: str):
    """``g`` with ``name`` dropped from every ``dataset_overrides`` entry (a CLI flag set in ``base``
    wins over them: ``--epochs 1`` also trains AffectNet once). ``method_overrides`` keep theirs:
    a method's epochs go with its warm-up (the cpu preset's)."""
    return dataclasses.replace(g, dataset_overrides={k: {f: v for f, v in e.items() if f != name}
                                                     for k, e in g.dataset_overrides.items()})


SETTINGS_COLUMNS = ("id", "method", "dataset", "backbone (weights)", "input", "optimiser", "lr per group",
                    "schedule", "augmentation", "codebook", "metric", "method options")
TRIAL_COLUMNS = ("study", "settings", "AU", "λ", "layers", "seeds")


def _lr_groups(c) -> str:
    if c.head_lr is None and not c.head_layers:
        return f"all {c.lr:g}"
    head = "head" + "".join(f"+layer{l}" for l in c.head_layers)
    return f"backbone {c.lr:g}, {head} {c.lr if c.head_lr is None else c.head_lr:g}"


def _schedule(c) -> str:
    name = c.scheduler.lower()
    if name == "step" and c.lr_step > 0:
        floor = f", floor {c.min_lr:g}" if c.min_lr > 0 else ""
        return f"step x{c.lr_gamma:g} every {c.lr_step} ep{floor}; {c.epochs} ep, batch {c.batch_size}"
    if name == "step":
        return f"step x0.1 at 1/3, 2/3; {c.epochs} ep, batch {c.batch_size}"
    return f"{name}; {c.epochs} ep, batch {c.batch_size}"


def _steps(steps) -> str:
    if steps is True:
        return "cpu recipe"
    return " ".join(steps) if steps else "none"


def settings_row(c) -> list[str]:
    """A trial's resolved settings but its study variables (AU, λ, layers, seed), from the
    config and the registries only: nothing is built, downloaded or read from disk."""
    from fer_models.methods import resolve_weights

    built, weights = resolve_weights(c)
    d = c.data
    stored = f" (stored {d.stored_size})" if d.stored_size else ""
    if c.optimizer.lower() == "sgd":
        opt = f"sgd m{c.momentum:g}{' nesterov' if c.nesterov else ''} wd{c.weight_decay:g}"
    else:
        opt = f"{c.optimizer} wd{c.weight_decay:g}"
    aug = f"train: {_steps(d.augment)}" + (f"; eval: {_steps(d.eval_steps)}" if d.eval_steps else "")
    options = " ".join(f"{k}={v}" for k, v in sorted(c.method_kwargs.items())) or "–"
    backbone = "–" if built is None else f"{built} ({weights})"
    if built is not None and built != str(c.backbone).lower():
        backbone += f" for {c.backbone}"
    return [c.method, d.dataset, backbone, f"{d.image_size}{stored}", opt, _lr_groups(c), _schedule(c), aug,
            d.codebook, c.metric_def, options]


def trial_table(g, studies: tuple[str, ...], seeds_label: str | None = None) -> str:
    """Every trial of ``studies`` with its resolved settings, as two Markdown tables: the
    distinct settings (S1, S2, ...) and the trials (study, settings, AU, λ, layers), the
    seeds of otherwise equal trials on one row, in run order.

    The λ of the studies that do not vary it is chosen on validation from the λ ablation when
    the grid runs (``orchestrator.tuning.choose_lambda``); until then it is ``default_lam``,
    marked ``(val)``. ``seeds_label`` replaces the seeds column (a sampled grid, :func:`seed_sample`).
    """
    from orchestrator.studies import expand, get
    from orchestrator.tables import md_table

    settings: dict[tuple[str, ...], str] = {}
    trials: dict[tuple[str, ...], list[str]] = {}
    for s in studies:
        note = " (val)" if g.lam is None and not get(s).runs_first else ""
        for t in expand(g, s):
            c = t.cfg
            key = tuple(settings_row(c))
            sid = settings.setdefault(key, f"S{len(settings) + 1}")
            row = (s, sid, "w/" if c.au else "w/o", f"{c.lam:g}{note}" if c.au else "–",
                   "+".join(map(str, c.layers)) if c.au else "–")
            trials.setdefault(row, []).append(str(c.seed))
    parts = [md_table(list(SETTINGS_COLUMNS), [[sid, *key] for key, sid in settings.items()]),
             md_table(list(TRIAL_COLUMNS), [[*row, seeds_label or ",".join(seeds)] for row, seeds in trials.items()])]
    if any("(val)" in row[3] for row in trials):
        parts.append(f"λ (val): chosen on validation from the λ ablation when the grid runs; "
                     f"{g.default_lam:g} until it has run.")
    return "\n\n".join(parts)


#: Beyond this many seeds, --print-config and the checks work on the first two seeds and
#: count the rest: a seed changes no setting, and each adds the same trials.
MANY_SEEDS = 64


def seed_sample(g):
    """``g`` itself, or for a grid of more than :data:`MANY_SEEDS` distinct seeds the same
    grid on its first two (what the checks and the settings table need)."""
    if len(g.seeds) <= MANY_SEEDS or len(set(g.seeds)) != len(g.seeds):
        return g
    return g.override(seeds=list(g.seeds[:2]))


def count_trials(g, study: str, sample=None) -> int:
    """The number of trials of ``study``: expanded for a small grid; for a sampled one, each
    seed beyond the first adds as many trials as the second did (nothing is deduplicated
    across distinct seeds), so ``f(1) + (n - 1) * (f(2) - f(1))``."""
    from orchestrator.studies import expand

    if sample is None or sample is g:
        return len(expand(g, study))
    one = len(expand(sample.override(seeds=[g.seeds[0]]), study))
    two = len(expand(sample, study))
    return one + (len(g.seeds) - 1) * (two - one)


def _seed_range(seeds) -> str:
    if list(seeds) == list(range(seeds[0], seeds[0] + len(seeds))):
        return f"{seeds[0]}-{seeds[-1]} ({len(seeds)} seeds)"
    return f"{seeds[0]},{seeds[1]},…,{seeds[-1]} ({len(seeds)} seeds)"


def config_yaml(g) -> str:
    """``g`` as YAML; a long seed list as one flow-style line (valid YAML, written directly:
    PyYAML takes seconds per hundred thousand items)."""
    if len(g.seeds) <= MANY_SEEDS:
        return g.to_yaml()
    import yaml

    d = g.to_dict()
    d["seeds"] = "SEEDS-PLACEHOLDER"
    return yaml.safe_dump(d, sort_keys=False).replace(
        "seeds: SEEDS-PLACEHOLDER", "seeds: [" + ", ".join(map(str, g.seeds)) + "]", 1)


def check_stores(g) -> None:
    """Everything the grid writes can be written, and the stores and the cluster answer,
    before Ray starts: FER_ORCH_HOME (cache, trial folders), the Tune storage (a local folder,
    or a bucket that exists), the tracking store, the Ray head at ``--address``."""
    from fer_models import paths
    from orchestrator.tracking.store import resolve_uri

    from orchestrator import storage

    paths.check_home()
    if g.storage_path and not storage.is_uri(g.storage_path):
        paths.check_writable(g.storage_path.removeprefix("file://"), "the Tune storage (--storage)",
                             "pass --storage a writable folder (shared by every node on a cluster)")
    elif g.storage_path:
        storage.check(storage.resolve(g.storage_path, paths.home()))
    resolve_uri(g.tracking_uri)
    address = g.address or os.environ.get("RAY_ADDRESS")
    if address and address not in ("local", "auto"):
        from orchestrator.ray_utils import probe_address

        probe_address(address)  # before torch, Ray and the data are loaded


class _NoMetricFiles:
    """Drops Tune's "Failed to fetch metrics ... result.json" warning: the grid turns Tune's
    JSON/CSV result files off on purpose (MLflow holds every result), so Tune warns, after a
    successful grid, about files it was told not to write; a success must not look like a
    failure."""

    def filter(self, record) -> bool:
        return not str(record.msg).startswith("Failed to fetch metrics")


def quiet_tune_metrics_warning() -> None:
    import logging

    log = logging.getLogger("ray.tune.analysis.experiment_analysis")
    if not any(isinstance(f, _NoMetricFiles) for f in log.filters):
        log.addFilter(_NoMetricFiles())


def print_plan(g, studies: tuple[str, ...], gpus: int, throughput: str | None, img_per_s: float | None) -> None:
    """Each trial's GPU-hours, the packing and the predicted makespan (``orchestrator.plan``)."""
    from orchestrator import plan
    from orchestrator.tables import md_table
    from orchestrator.studies import expand

    if gpus < 1:
        raise click.UsageError("--plan needs --gpus G (the GPUs the grid will run on)")
    rows = plan.read_throughput(throughput) if throughput else None
    seen, trials = set(), []
    for s in studies:
        for t in expand(g, s):
            if t.hash not in seen:
                seen.add(t.hash)
                trials.append(t)
    planned = plan.plan_trials(trials, rows, img_per_s)
    workers = [g.resources.workers_for(t.cfg.method, t.cfg.data.dataset) for t in trials]
    f = float(g.resources.gpus) or 1.0
    table = [[p.name, f"{p.gflop_per_img:.1f}", f"{p.images:,}", "borrowed" if p.borrowed else f"{p.gpu_hours:.2f}"]
             for p in sorted(planned, key=lambda p: -p.gpu_hours)]
    click.echo(md_table(["trial", "GFLOP/img (fwd+bwd)", "train images", "GPU-hours"], table))
    total = sum(p.gpu_hours for p in planned)
    speed = f"{img_per_s:g} img/s per GPU (CAM-equivalent)" if rows is None else f"measured rates from {throughput}"
    click.echo(f"\n{len(planned)} trials ({sum(p.borrowed for p in planned)} borrowed), {total:.1f} GPU-hours at {speed}")
    if max(workers, default=1) > 1:
        _print_parallel_plan(planned, workers, gpus, total)
        return
    n = plan.slots(gpus, f)
    durations = [p.gpu_hours / min(f, 1.0) for p in planned if not p.borrowed]
    span = plan.makespan(durations, n)
    click.echo(f"packing: {f:g} GPU per trial, {n} trials at once on {gpus} GPUs")
    click.echo(f"makespan (list scheduling, longest first): {span:.2f} h; lower bound max(longest, total/G) = "
               f"{max(max(durations, default=0.0), total / gpus):.2f} h")
    if f >= 1:
        multi, ks = plan.multi_gpu(durations, gpus)
        if max(ks, default=1) > 1:
            click.echo(f"what-if, data-parallel trials (--workers-per-trial; 90% scaling): {sum(k > 1 for k in ks)} "
                       f"trials on 2-{max(ks)} GPUs, makespan {plan.makespan(multi, gpus, ks):.1f} h")
        else:
            click.echo("what-if, data-parallel trials: none is longer than total/G, so more GPUs per trial would "
                       "not shorten the makespan")


def _print_parallel_plan(planned, workers: list[int], gpus: int, total: float) -> None:
    """The packing and makespan of a grid with data-parallel trials: a trial of k workers holds
    k GPUs (one per worker) and runs ``plan.EFFICIENCY`` x k times as fast as on one."""
    from orchestrator import plan
    from fer_models.errors import ConfigError

    jobs = [(p, k) for p, k in zip(planned, workers) if not p.borrowed]
    if any(k > gpus for _, k in jobs):
        raise ConfigError(f"a trial has more workers ({max(k for _, k in jobs)}) than the {gpus} GPUs planned; "
                          "lower --workers-per-trial or plan more --gpus")
    durations, ks = plan.parallel_durations([p.gpu_hours for p, _ in jobs], [k for _, k in jobs])
    span = plan.makespan(durations, gpus, ks)
    multi = sorted({k for k in ks if k > 1})
    click.echo(f"packing: {sum(k > 1 for k in ks)} trials on {'/'.join(map(str, multi))} GPUs (data-parallel workers, "
               f"{plan.EFFICIENCY:.0%} scaling), the others on 1 GPU, on {gpus} GPUs")
    click.echo(f"makespan (list scheduling, longest first): {span:.2f} h; lower bound max(longest, GPU-hours/G) = "
               f"{max(max(durations, default=0.0), sum(d * k for d, k in zip(durations, ks)) / gpus):.2f} h")


def _run(studies: tuple[str, ...], resume: bool, print_config: bool, ablations: bool | None = None,
         plan: bool = False, gpus: int = 0, throughput: str | None = None, img_per_s: float | None = None, **kw) -> None:
    from fer_models.errors import ConfigError
    from orchestrator.options import parse_list
    from orchestrator.studies import expand, get, validate

    g = build_grid_config(**kw)
    if len(parse_list(kw.get("au_source")) or ()) > 1 and studies != ("au-source",):
        raise ConfigError("--au-source takes one source here (a list compares sources in `fer-orch ablate au-source`)")
    if studies == ("au-source",) and kw.get("methods"):  # the study's methods (default: CAM only)
        g = g.override(au_source_methods=parse_list(kw["methods"]))
    if ablations is None and not g.ablations:  # a preset without ablations (the seed papers')
        studies = tuple(s for s in studies if not get(s).ablation)
    sample = seed_sample(g)
    validate(sample, studies)  # every trial's config, before Ray starts (`--epochs 0` is one sentence)
    if print_config:
        click.echo(config_yaml(g))
        click.echo(trial_table(sample, studies, None if sample is g else _seed_range(g.seeds)))
        from orchestrator.gpu_memory import memory_table

        if memory_table(g):
            click.echo(memory_table(g))
        for s in studies:
            click.echo(f"# {s}: {count_trials(g, s, sample)} trials")
        return
    if plan:
        print_plan(g, studies, gpus, throughput, img_per_s)
        return
    check_stores(g)
    quiet_tune_metrics_warning()
    from orchestrator.tuning import run_grid

    out = run_grid(g, studies=studies, resume=resume)
    if not out.ok:
        click.secho(
            f"{len(out.failed)} trial(s) failed and {len(out.unfinished)} did not finish; "
            "run the same command again to resume them",
            fg="red",
            err=True,
        )
        sys.exit(1)


@click.command("grid")
@_grid_options
@click.option("--ablations/--no-ablations", default=None,
              help="Also run the λ ablation (first, to choose λ on validation) and the layer ablation "
                   "[default: yes, unless the preset turns them off (the seed-paper presets)].")
@click.option("--plan", is_flag=True, help="Print each trial's GPU-hours, the packing and the predicted makespan on "
              "--gpus GPUs; run nothing (docs/cluster.md).")
@click.option("--gpus", type=int, default=0, help="With --plan: the GPUs the grid will run on.")
@click.option("--throughput", type=click.Path(dir_okay=False, exists=True),
              help="With --plan: the JSON of benchmarks/bench_gpu_step.py --json (measured img/s and GFLOP/img).")
@click.option("--img-per-s", type=float, help="With --plan and no --throughput: assumed images/s per GPU of the "
              "plain CAM network on the trial's backbone, scaled to each trial by its FLOPs.")
def grid_cmd(ablations: bool | None, resume: bool, print_config: bool, **kw) -> None:
    """Paper 002's Table-1 grid: method x dataset x {w/o, w/ AU} x seed, as Ray Tune trials.

    With no --datasets it runs the CPU preset on the embedded synthetic data (about 9
    minutes on 2 cores, 3 seeds). Re-run the same command to resume after an interruption.
    """
    from orchestrator.studies import grid_studies

    _run(grid_studies(ablations is not False), resume, print_config, ablations, **kw)


@click.command("ablate")
@click.argument("study", type=RegistryChoice(_ablation_names))
@_grid_options
def ablate_cmd(study: str, resume: bool, print_config: bool, **kw) -> None:
    """Paper 002's ablations: `lambda` (Figure 5) or `layers` (Table 3), CAM on one dataset.

    STUDY is any study registered as an ablation (`fer-orch list studies`).
    """
    from fer_models.errors import ConfigError
    from orchestrator.studies import get

    flags = {p.name: p.opts[0] for p in click.get_current_context().command.params}
    for option, why in get(study).ignores.items():  # an option the study would silently ignore
        if kw.get(option) is not None:
            raise ConfigError(f"`fer-orch ablate {study}` does not use {flags.get(option, '--' + option)}: {why}")
    _run((study,), resume, print_config, **kw)


COMMANDS: list = [grid_cmd, ablate_cmd]
