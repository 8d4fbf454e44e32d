"""The `fer-orch` command line."""

from __future__ import annotations

import errno
import importlib
import pkgutil
import sys
import traceback

import click

from fer_models.errors import FerOrchError

#: the modules whose module-level registries are the families of `fer-orch list`, in order
REGISTRY_MODULES = ("fer_models.registry", "fer_analysis.registry", "orchestrator.registry")


def _families() -> dict:
    """``{cli name: Registry}`` of every registry declared in :data:`REGISTRY_MODULES`."""
    from fer_models.registry import registries_in

    return {reg.cli_name: reg for reg in registries_in(*REGISTRY_MODULES)}


#: the last line under an internal error's traceback
REPORT_HINT = ("fer-orch: this is an internal error, not a mistake of yours: please report it "
               "(the command line, the traceback above and `fer-orch --version`) to the fer-orch maintainers")

#: errno values that are the machine's state, not a bug: a read-only or full disk
_ENV_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT}


class _Group(click.Group):
    """How fer-orch ends:

    - a user's mistake (:class:`FerOrchError`; a click usage error, which click handles
      itself; a permission error or full disk) is one red sentence and exit status 2;
    - anything else is a bug: its traceback is kept, followed by :data:`REPORT_HINT`, exit 1;
    - ``--debug`` (or ``FER_ORCH_DEBUG=1``) prints the traceback of a user's mistake too.
    """

    def invoke(self, ctx: click.Context):
        debug = bool(ctx.params.get("debug"))
        try:
            return super().invoke(ctx)
        except FerOrchError as e:
            self._mistake(str(e), debug)
        except OSError as e:
            if e.errno not in _ENV_ERRNOS:
                self._bug()
            where = f" '{e.filename}'" if e.filename else ""
            self._mistake(f"cannot access{where} ({e.strerror}); free space or fix the permissions, "
                          f"or point FER_ORCH_HOME / the path option elsewhere", debug)
        except (click.exceptions.Exit, click.ClickException, click.Abort, SystemExit, KeyboardInterrupt):
            raise
        except Exception:  # noqa: BLE001 - every other exception is a bug: keep its traceback
            self._bug()

    @staticmethod
    def _mistake(sentence: str, debug: bool) -> None:
        from orchestrator.tracking.store import redact

        if debug:
            click.echo(redact(traceback.format_exc()), err=True, nl=False)
        click.secho(f"error: {redact(sentence)}", fg="red", err=True)
        sys.exit(2)

    @staticmethod
    def _bug() -> None:
        from orchestrator.tracking.store import redact

        click.echo(redact(traceback.format_exc()), err=True, nl=False)  # a password in a URI is never shown
        click.secho(REPORT_HINT, fg="red", err=True)
        sys.exit(1)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="fer-orch")
@click.option("--debug", is_flag=True, envvar="FER_ORCH_DEBUG",
              help="Show the traceback of every error, a user's mistake too (or set FER_ORCH_DEBUG=1).")
def main(debug: bool) -> None:
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
