"""`fer-orch` commands: grid, ablate, report, ui."""

from __future__ import annotations

import sys

import click

from orchestrator.commands import RegistryChoice


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
        click.option("--epochs", type=int, help="Epochs per trial (overrides the preset)."),
        click.option("--lam", type=float, help="Fix λ instead of choosing it on validation from the λ ablation."),
        click.option("--resume/--no-resume", default=True, show_default=True,
                     help="Resume an interrupted run of the same command and skip finished trials."),
        click.option("--tracking-uri", help="MLflow tracking URI (default: SQLite in FER_ORCH_HOME, or $MLFLOW_TRACKING_URI)."),
        click.option("--experiment", help="MLflow experiment name (default: fer-orch)."),
        click.option("--address", help="Ray cluster address (default: $RAY_ADDRESS or a local Ray)."),
        click.option("--storage", "storage_path", help="Tune storage (default FER_ORCH_HOME/ray; shared storage on a cluster)."),
        click.option("--cpus-per-trial", type=float, help="CPUs per trial."),
        click.option("--gpus-per-trial", type=float, help="GPUs per trial; fractions (0.5) pack trials on one GPU."),
        click.option("--trial-resources", help="Ray custom resources per trial, NAME=AMOUNT[,...]: trials run only on the "
                     "nodes started with `ray start --resources '{\"NAME\": N}'`."),
        click.option("--max-concurrent", type=int, help="At most this many trials at once (0: resources decide)."),
        click.option("--max-failures", type=int, help="Retries of a trial whose worker died, from its last checkpoint."),
        click.option("--print-config", is_flag=True, help="Print the resolved GridConfig YAML and the trial count, run nothing."),
    ]
    for o in reversed(opts):
        fn = o(fn)
    return fn


def build_grid_config(datasets=None, methods=None, seeds=None, config_path=None, preset=None, epochs=None, lam=None,
                      tracking_uri=None, experiment=None, address=None, storage_path=None, cpus_per_trial=None,
                      gpus_per_trial=None, max_concurrent=None, max_failures=None, trial_resources=None, **_ignored):
    from orchestrator import presets
    from orchestrator.config import GridConfig, parse_list, parse_resources, parse_seeds

    ds = parse_list(datasets)
    g = presets.get(preset or presets.for_datasets(ds))
    if config_path:
        g = GridConfig.from_yaml(config_path, base=g)
    resources = {k: v for k, v in (("cpus", cpus_per_trial), ("gpus", gpus_per_trial),
                                   ("custom", parse_resources(trial_resources))) if v is not None}
    return g.override(
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
        base={"epochs": epochs} if epochs is not None else None,
    )


def _run(studies: tuple[str, ...], resume: bool, print_config: bool, **kw) -> None:
    from orchestrator.studies import expand

    g = build_grid_config(**kw)
    if print_config:
        click.echo(g.to_yaml())
        for s in studies:
            click.echo(f"# {s}: {len(expand(g, s))} trials")
        return
    from orchestrator.grid import run_grid

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
@click.option("--ablations/--no-ablations", default=True, show_default=True,
              help="Also run the λ ablation (first, to choose λ on validation) and the layer ablation.")
def grid_cmd(ablations: bool, resume: bool, print_config: bool, **kw) -> None:
    """Paper 002's Table-1 grid: method x dataset x {w/o, w/ AU} x seed, as Ray Tune trials.

    With no --datasets it runs the CPU preset on the embedded synthetic data (about 10
    minutes on 2 cores). Re-run the same command to resume after an interruption.
    """
    from orchestrator.studies import grid_studies

    _run(grid_studies(ablations), resume, print_config, **kw)


@click.command("ablate")
@click.argument("study", type=RegistryChoice(_ablation_names))
@_grid_options
def ablate_cmd(study: str, resume: bool, print_config: bool, **kw) -> None:
    """Paper 002's ablations: `lambda` (Figure 5) or `layers` (Table 3), CAM on one dataset.

    STUDY is any study registered as an ablation (`fer-orch list studies`).
    """
    _run((study,), resume, print_config, **kw)


@click.command("report")
@click.option("--experiment", default="fer-orch", show_default=True, help="MLflow experiment to report on.")
@click.option("--out", type=click.Path(file_okay=False), help="Output folder (default FER_ORCH_HOME/report/EXPERIMENT).")
@click.option("--tracking-uri", help="MLflow tracking URI (default: the grid's default store).")
@click.option("--no-log", is_flag=True, help="Do not log the report to the parent runs.")
def report_cmd(experiment: str, out: str | None, tracking_uri: str | None, no_log: bool) -> None:
    """Rebuild Tables 1-3 and Figure 5 of paper 002 from MLflow (Markdown, CSV, PNG)."""
    from orchestrator.report import build_report

    rep = build_report(experiment, tracking_uri, out, log=not no_log)
    click.echo(rep.markdown)
    click.secho(f"report written to {rep.out} ({len(rep.files)} files)", fg="green", err=True)


@click.command("ui")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on (0.0.0.0 for every one).")
@click.option("--port", default=5000, show_default=True, type=int)
@click.option("--tracking-uri", help="MLflow tracking URI (default: the grid's default store).")
def ui_cmd(host: str, port: int, tracking_uri: str | None) -> None:
    """Start the MLflow UI against the store the grid writes to."""
    import subprocess

    from orchestrator import tracking

    cmd = tracking.ui_command(tracking_uri, host, port)
    click.secho(f"MLflow UI on http://{host}:{port} (Ctrl-C to stop)", fg="green", err=True)
    try:
        sys.exit(subprocess.call(cmd))
    except KeyboardInterrupt:
        pass


COMMANDS: list = [grid_cmd, ablate_cmd, report_cmd, ui_cmd]
