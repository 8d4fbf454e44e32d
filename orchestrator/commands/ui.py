"""`fer-orch ui`: the MLflow UI over the store the grid writes to, opened where a researcher looks.

The server (``mlflow ui``) runs as a child in its own process group. ``fer-orch ui`` checks
the port before starting it, waits until it answers, prints the direct address of each
fer-orch experiment's trials table (:func:`orchestrator.tracking.ui.runs_url`), and stops
the whole group on Ctrl-C or SIGTERM, so no server outlives it. A server that dies on its
own makes ``fer-orch ui`` exit with its status.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from typing import Callable

import click

from fer_models.errors import ConfigError

READY_TIMEOUT = 180.0  # seconds: mlflow's first start migrates the SQLite schema


def check_port(host: str, port: int) -> None:
    """One sentence, before anything starts, when ``host:port`` cannot be listened on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError as e:
            raise ConfigError(
                f"cannot listen on {host}:{port} ({e.strerror or e}); another server (a running `fer-orch ui`?) "
                f"holds it: stop it or pass --port with a free port"
            ) from None


class _Terminated(Exception):
    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def _stop(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM the child's process group, SIGKILL what is left after ``grace`` seconds."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def serve(cmd: list[str], health_url: str, on_ready: Callable[[], None], ready_timeout: float = READY_TIMEOUT) -> int:
    """Run ``cmd`` until it exits or this process is told to stop; the exit status to use.

    ``on_ready`` is called once ``health_url`` answers 200.
    """
    proc = subprocess.Popen(cmd, start_new_session=True)

    def terminate(signum, _frame):  # unwinds the wait below, whose lock a wait here would miss
        raise _Terminated(signum)

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        deadline = time.monotonic() + ready_timeout
        while proc.poll() is None and not _answers(health_url):
            if time.monotonic() > deadline:
                click.secho(f"the MLflow UI did not answer on {health_url} within {ready_timeout:.0f} s; stopping it",
                            fg="red", err=True)
                return 1
            time.sleep(0.5)
        if proc.poll() is None:
            on_ready()
        rc = proc.wait()
        if rc:
            click.secho(f"the MLflow UI server exited with status {rc} (its output is above)", fg="red", err=True)
        return rc
    except KeyboardInterrupt:
        return 130
    except _Terminated as e:
        return 128 + e.signum
    finally:
        _stop(proc)
        signal.signal(signal.SIGTERM, previous)


@click.command("ui")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on (0.0.0.0 for every one).")
@click.option("--port", default=5000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--tracking-uri", help="MLflow tracking URI (default: the grid's default store).")
def ui_cmd(host: str, port: int, tracking_uri: str | None) -> None:
    """Start the MLflow UI against the store the grid writes to; prints the trials table's address."""
    from orchestrator import tracking
    from orchestrator.tracking.layout import KIND_TAG
    from orchestrator.tracking.ui import mark_model_training, runs_url

    cmd = tracking.ui_command(tracking_uri, host, port)
    check_port(host, port)
    c = tracking.client(tracking_uri)
    experiments = []
    for exp in c.search_experiments():
        if c.search_runs([exp.experiment_id], filter_string=f"tags.`{KIND_TAG}` = 'trial'", max_results=1):
            mark_model_training(c, exp.experiment_id)  # also stores made by an older fer-orch
            experiments.append(exp)
    base = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"

    def ready() -> None:
        click.secho(f"MLflow UI on {base} (Ctrl-C to stop)", fg="green", err=True)
        for exp in experiments:
            click.echo(f"  {exp.name}: {runs_url(base, exp.experiment_id)}")
        if not experiments:
            click.echo("  no fer-orch trials in this store yet: run `fer-orch grid` first")

    sys.exit(serve(cmd, f"{base}/health", ready))


COMMANDS: list = [ui_cmd]
