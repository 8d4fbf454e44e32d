"""The `fer-orch` command line."""

from __future__ import annotations

import importlib
import pkgutil
import sys

import click

from fer_models.errors import FerOrchError

#: the modules whose module-level registries are the families of `fer-orch list`, in order
REGISTRY_MODULES = ("fer_models.registry", "fer_analysis.registry", "orchestrator.registry")


def _families() -> dict:
    """``{cli name: Registry}`` of every registry declared in :data:`REGISTRY_MODULES`."""
    from fer_models.registry import registries_in

    return {reg.cli_name: reg for reg in registries_in(*REGISTRY_MODULES)}


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


def _add_commands(group: click.Group, package: str = "orchestrator.commands") -> None:
    """Add the ``COMMANDS`` of every module of ``package``: a new command is a new module."""
    pkg = importlib.import_module(package)
    for mod in pkgutil.iter_modules(pkg.__path__):
        if not mod.name.startswith("_"):
            for cmd in importlib.import_module(f"{package}.{mod.name}").COMMANDS:
                group.add_command(cmd)


_add_commands(main)


if __name__ == "__main__":
    main()
