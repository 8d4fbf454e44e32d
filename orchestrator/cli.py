"""The `fer-orch` command line."""

from __future__ import annotations

import sys

import click

from fer_models.errors import FerOrchError
from orchestrator.commands import data, explain, grid, preprocess, probe, train


def _families() -> dict:
    from fer_analysis.registry import EXPLAINERS, JOBS, PROBES
    from fer_models.registry import BACKBONES, CODEBOOKS, DATASETS, LANDMARKS, METHODS

    return {
        "datasets": DATASETS,
        "landmarks": LANDMARKS,
        "codebooks": CODEBOOKS,
        "backbones": BACKBONES,
        "methods": METHODS,
        "explainers": EXPLAINERS,
        "jobs": JOBS,
        "probes": PROBES,
    }


class _Group(click.Group):
    """Turns fer-orch's own errors into one red sentence and exit code 2, no traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except FerOrchError as e:
            click.secho(f"error: {e}", fg="red", err=True)
            sys.exit(2)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="fer-orch")
def main() -> None:
    """fer-orch: interpretable facial-expression recognition experiments on Ray + MLflow."""


@main.command("list")
@click.argument("family", required=False)
def list_cmd(family: str | None) -> None:
    """List registry entries of FAMILY (datasets, methods, ...), or all families."""
    families = _families()
    if family is not None and family not in families:
        raise click.BadParameter(f"unknown family '{family}'; known: {', '.join(families)}")
    for fam in [family] if family else list(families):
        reg = families[fam]
        click.secho(fam, bold=True)
        for name in reg.names():
            desc = reg.meta(name).get("description", "")
            click.echo(f"  {name:<22} {desc}")


for _module in (data, preprocess, train, grid, explain, probe):
    for _cmd in _module.COMMANDS:
        main.add_command(_cmd)


if __name__ == "__main__":
    main()
