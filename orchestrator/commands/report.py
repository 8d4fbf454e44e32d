"""`fer-orch report`: paper 002's tables and figures rebuilt from MLflow."""

from __future__ import annotations

import click


@click.command("report")
@click.option("--experiment", default="fer-orch", show_default=True, help="MLflow experiment to report on.")
@click.option("--out", type=click.Path(file_okay=False), help="Output folder (default FER_ORCH_HOME/report/EXPERIMENT).")
@click.option("--tracking-uri", help="MLflow tracking URI (default: the grid's default store).")
@click.option("--no-log", is_flag=True, help="Do not log the report to the parent runs.")
def report_cmd(experiment: str, out: str | None, tracking_uri: str | None, no_log: bool) -> None:
    """Rebuild Tables 1-3 and Figure 5 of paper 002 from MLflow (Markdown, CSV, PNG)."""
    from orchestrator.report import build_report

    if out:
        from fer_models.paths import check_writable

        check_writable(out, "the report folder (--out)", "pass --out a writable folder")
    rep = build_report(experiment, tracking_uri, out, log=not no_log)
    click.echo(rep.markdown)
    click.secho(f"report written to {rep.out} ({len(rep.files)} files)", fg="green", err=True)


COMMANDS: list = [report_cmd]
