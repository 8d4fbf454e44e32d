"""The MLflow store: which URI, checked once, one client per URI; experiments; run status."""

from __future__ import annotations

import os
import socket
import threading
import urllib.parse
from pathlib import Path
from typing import Any

from fer_models import paths
from fer_models.errors import FerOrchError

_CLIENTS: dict[str, Any] = {}
_CLIENTS_LOCK = threading.Lock()


def default_tracking_uri() -> str:
    return f"sqlite:///{paths.home() / 'mlflow.db'}"


#: MLflow's own variables for an HTTP server's basic-auth credentials
CREDENTIAL_VARS = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")


def strip_credentials(uri: str | None) -> str | None:
    """``uri`` without the password it carries, which moves to an environment variable of
    this process (inherited by the Ray workers it starts; passed to job actors by
    ``orchestrator.actors.worker_env``): an HTTP server's ``user:password@`` goes to MLflow's
    ``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD``, a PostgreSQL store's password
    to libpq's ``PGPASSWORD`` (its user name stays). A URI is written to the grid's
    ``grid.yaml`` artifact, Tune's state files, the summary and error messages; a password
    must be in none of them. Setting the variables yourself is better still: the password
    then never reaches the shell history either. Other schemes are left as they are (and
    :func:`redact` hides their password wherever fer-orch prints)."""
    if not uri or "@" not in uri:
        return uri
    parsed = urllib.parse.urlsplit(uri)
    if parsed.password is None and not (parsed.username and parsed.scheme in ("http", "https")):
        return uri
    host = parsed.netloc.rsplit("@", 1)[1]
    if parsed.scheme in ("http", "https"):
        os.environ[CREDENTIAL_VARS[0]] = urllib.parse.unquote(parsed.username or "")
        if parsed.password is not None:
            os.environ[CREDENTIAL_VARS[1]] = urllib.parse.unquote(parsed.password)
    elif parsed.scheme.split("+")[0] == "postgresql":
        os.environ["PGPASSWORD"] = urllib.parse.unquote(parsed.password)
        host = f"{parsed.username}@{host}" if parsed.username else host
    else:
        return uri
    return urllib.parse.urlunsplit(parsed._replace(netloc=host))


def redact(text: str) -> str:
    """``text`` with the password of any ``scheme://user:password@host`` in it replaced by ``***``."""
    import re

    return re.sub(r"(\w[\w+.-]*://[^/\s:@]*):[^@\s/]*@", r"\1:***@", str(text))


def _chosen_uri(uri: str | None) -> str:
    return strip_credentials(uri or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri())


#: the database schemes MLflow stores runs in, and the driver module SQLAlchemy imports by default
DB_DRIVERS = {"postgresql": "psycopg2", "mysql": "MySQLdb", "mssql": "pyodbc"}


def resolve_uri(uri: str | None) -> str:
    """The tracking URI to use, checked before any long work starts; each failure is one
    sentence naming the URI (its password hidden).

    SQLite (the offline default) needs its folder to exist; an HTTP server must answer as an
    MLflow server; a database store needs its SQLAlchemy driver installed; any other scheme
    (a typo, a file store) is refused.
    """
    uri = _chosen_uri(uri)
    try:
        parsed = urllib.parse.urlparse(uri)
        port = parsed.port
    except ValueError as e:
        raise FerOrchError(f"MLflow tracking URI '{redact(uri)}' is malformed ({e}); pass --tracking-uri "
                           "sqlite:////abs/path/mlflow.db or http://host:5000") from None
    scheme, driver = parsed.scheme.partition("+")[::2]
    if scheme == "sqlite":
        # sqlite:///relative.db or sqlite:////absolute/path.db
        check_sqlite(Path(uri[len("sqlite:///") :]))
    elif scheme in ("http", "https"):
        check_server(uri, parsed.hostname, port or (443 if scheme == "https" else 80))
    elif scheme in ("", "file"):
        raise FerOrchError(
            f"MLflow tracking URI '{redact(uri)}' is a file store, which MLflow refuses; "
            f"use sqlite:///{Path(uri).absolute()}/mlflow.db or an http:// server"
        )
    elif scheme in DB_DRIVERS:
        module = {"psycopg": "psycopg", "pymysql": "pymysql", "mysqldb": "MySQLdb", "pg8000": "pg8000"}.get(
            driver, driver or DB_DRIVERS[scheme])
        import importlib.util

        if importlib.util.find_spec(module) is None:
            raise FerOrchError(f"MLflow tracking URI '{redact(uri)}' needs the Python package of its database driver "
                               f"('{module}'), which is not installed; install it (pip) or use sqlite:// or http://")
    elif scheme != "databricks":
        raise FerOrchError(f"MLflow tracking URI '{redact(uri)}' has an unknown scheme '{parsed.scheme}'; use "
                           "sqlite:///<path>/mlflow.db, http(s)://host:port, or a database URI "
                           "(postgresql://, mysql://, mssql://)")
    return uri


def check_server(uri: str, host: str | None, port: int) -> None:
    """An HTTP(S) tracking URI must answer, and answer as MLflow's REST API does (a web
    server of another kind made every later call fail with a long traceback)."""
    import json
    import urllib.request

    try:
        socket.create_connection((host, port), timeout=3).close()
    except (OSError, UnicodeError):
        raise FerOrchError(
            f"MLflow tracking server {redact(uri)} is unreachable; start it (e.g. `mlflow server "
            f"--host 0.0.0.0 --port {port}` on the head node) or pass --tracking-uri"
        ) from None
    url = uri.rstrip("/") + "/api/2.0/mlflow/experiments/get-by-name?experiment_name=Default"
    req = urllib.request.Request(url)
    user, password = (os.environ.get(v) for v in CREDENTIAL_VARS)
    if user:
        import base64

        req.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{password or ''}".encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            body, status = r.read(), r.status
    except urllib.error.HTTPError as e:
        body, status = e.read(), e.code
    except (OSError, ValueError) as e:
        raise FerOrchError(f"MLflow tracking server {redact(uri)} does not answer HTTP ({e}); check the URI "
                           "(http:// or https://) and the server") from None
    if status in (401, 403):
        raise FerOrchError(f"MLflow tracking server {redact(uri)} refused the credentials (HTTP {status}); set "
                           "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD")
    try:
        ok = isinstance(json.loads(body), dict)
    except ValueError:
        ok = False
    if not ok:
        raise FerOrchError(f"{redact(uri)} answers HTTP {status} but is not an MLflow tracking server (no MLflow "
                           "REST API under /api/2.0/mlflow); pass the URI of `mlflow server`")


def check_sqlite(db: Path) -> None:
    """The SQLite store ``db`` can be written and, if it exists, is a database: one sentence
    naming the file and the fix, instead of SQLAlchemy's 100-line traceback."""
    import sqlite3

    fix = (f"pass --tracking-uri sqlite:////a/writable/folder/mlflow.db or set FER_ORCH_HOME to a writable folder"
           if not os.environ.get("MLFLOW_TRACKING_URI") else "fix or unset MLFLOW_TRACKING_URI")
    paths.check_writable(db.parent, "the folder of the MLflow store", fix)
    if not db.exists():
        return
    if db.is_dir() or not os.access(db, os.R_OK | os.W_OK):
        raise FerOrchError(f"the MLflow store '{db}' is not a writable file; make it writable or {fix}")
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            con.execute("SELECT count(*) FROM sqlite_master").fetchone()
        finally:
            con.close()
    except sqlite3.DatabaseError as e:
        raise FerOrchError(
            f"the MLflow store '{db}' is not a readable SQLite database ({e}); move it aside (its runs are lost "
            f"unless you have a copy) to start a new store, or {fix}"
        ) from None


def client(uri: str | None = None):
    """The ``MlflowClient`` of ``uri`` (default: ``$MLFLOW_TRACKING_URI``, else the SQLite
    store under ``FER_ORCH_HOME``). The URI is checked (:func:`resolve_uri`: a socket to a
    server) the first time only; later calls in this process reuse the client."""
    uri = _chosen_uri(uri)
    c = _CLIENTS.get(uri)
    if c is None:
        import mlflow

        c = mlflow.MlflowClient(tracking_uri=resolve_uri(uri))
        with _CLIENTS_LOCK:
            c = _CLIENTS.setdefault(uri, c)
    return c


def ensure_experiment(name: str, uri: str | None = None) -> str:
    """The id of experiment ``name``, created if missing, tagged for the MLflow UI's
    model-training mode (:mod:`orchestrator.tracking.ui`).

    With a SQLite store the artifacts go to an absolute folder beside the database, so a
    Tune worker (whose working directory is its trial folder) writes them to the same
    place; with an HTTP server the server decides (``--serve-artifacts`` proxies them).
    """
    from orchestrator.tracking.ui import KIND_KEY, mark_model_training

    uri = resolve_uri(uri)
    c = client(uri)
    exp = c.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            c.restore_experiment(exp.experiment_id)
        if KIND_KEY not in exp.tags:  # made by an older fer-orch or by hand
            mark_model_training(c, exp.experiment_id)
        return exp.experiment_id
    location = None
    if uri.startswith("sqlite:///"):
        location = (Path(uri[len("sqlite:///") :]).resolve().parent / "mlartifacts" / name).as_uri()
    try:
        exp_id = c.create_experiment(name, artifact_location=location)
    except Exception:  # created concurrently by another process
        exp = c.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id
    mark_model_training(c, exp_id)
    return exp_id


def search_all(c, experiment_id: str, filter_string: str) -> list:
    """Every run of ``experiment_id`` matching ``filter_string`` (all result pages)."""
    runs, token = [], None
    while True:
        page = c.search_runs([experiment_id], filter_string=filter_string, max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def set_tags(run_id: str, tags: dict[str, Any], uri: str | None = None) -> None:
    from mlflow.entities import RunTag

    client(uri).log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])


def reopen_run(run_id: str, uri: str | None = None) -> None:
    """Mark an existing run RUNNING again (a resumed grid or a retried trial logs into it)."""
    client(uri).update_run(run_id, status="RUNNING")


def end_run(run_id: str, status: str = "FINISHED", uri: str | None = None) -> None:
    client(uri).set_terminated(run_id, status)


def ui_command(uri: str | None = None, host: str = "127.0.0.1", port: int = 5000) -> list[str]:
    """The ``mlflow ui`` command line serving the same store the grid writes to."""
    import sys

    uri = resolve_uri(uri)
    if uri.startswith(("http://", "https://")):
        raise FerOrchError(f"the tracking store {uri} is already a server; open it in a browser instead of `fer-orch ui`")
    return [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", host, "--port", str(port)]
