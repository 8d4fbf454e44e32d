"""`fer-orch ui`: a busy port is one sentence and a non-zero exit; SIGTERM stops the server
it started; the experiment opens in MLflow's model-training mode on the trials table."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from fer_models.errors import ConfigError
from orchestrator.cli import main
from orchestrator.commands.ui import check_port

ROOT = Path(__file__).resolve().parents[2]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split()[2] == "Z")


def test_a_busy_port_is_one_sentence_and_exit_status_2(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(ConfigError, match=f"127.0.0.1:{port}.*--port"):
            check_port("127.0.0.1", port)
        r = CliRunner().invoke(main, ["ui", "--port", str(port), "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}"])
    assert r.exit_code == 2
    assert "--port" in r.output and "Traceback" not in r.output


def _serve_script(tmp_path: Path, child: str, ready_file: Path) -> Path:
    """A process running ``serve`` around ``child`` (a stand-in for the MLflow server) that
    answers the health check with a tiny HTTP server, then writes the child's pid."""
    script = tmp_path / "serve.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(ROOT)!r})
        from orchestrator.commands.ui import serve
        child = [sys.executable, "-c", {child!r}]
        def ready():
            import subprocess
            open({str(ready_file)!r}, "w").write("ready")
        sys.exit(serve(child, "http://127.0.0.1:" + sys.argv[1] + "/", ready, ready_timeout=60))
    """))
    return script


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_sigterm_stops_the_server_and_its_children(tmp_path):
    port = _free_port()
    pids = tmp_path / "pids"
    # the "server" answers HTTP and starts a grandchild, as mlflow's server starts uvicorn and workers
    child = textwrap.dedent(f"""
        import http.server, subprocess, sys
        g = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        open({str(pids)!r}, "w").write(f"{{__import__('os').getpid()}} {{g.pid}}")
        http.server.HTTPServer(("127.0.0.1", {port}), http.server.SimpleHTTPRequestHandler).serve_forever()
    """)
    ready = tmp_path / "ready"
    proc = subprocess.Popen([sys.executable, str(_serve_script(tmp_path, child, ready)), str(port)], cwd=tmp_path)
    deadline = time.monotonic() + 60
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert ready.exists(), "serve() never saw the stand-in server answer"
    server, grandchild = map(int, pids.read_text().split())
    assert _alive(server) and _alive(grandchild)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 128 + signal.SIGTERM
    time.sleep(0.5)
    assert not _alive(server) and not _alive(grandchild)


def test_a_server_that_dies_gives_its_exit_status(tmp_path):
    port = _free_port()
    proc = subprocess.run([sys.executable, str(_serve_script(tmp_path, "import sys; sys.exit(3)", tmp_path / "r")),
                           str(port)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3
    assert "exited with status 3" in proc.stderr


def test_experiments_open_in_model_training_mode_on_the_trials_view(mlflow_uri):
    from orchestrator import tracking
    from orchestrator.tracking.ui import KIND_KEY, MODEL_TRAINING, VIEW_KEY, VIEW_PREFIX, runs_url

    uri = mlflow_uri
    exp = tracking.ensure_experiment("fer-orch", uri)
    tags = tracking.client(uri).get_experiment(exp).tags
    assert tags[KIND_KEY] == MODEL_TRAINING
    view = json.loads(tags[VIEW_PREFIX + VIEW_KEY])
    assert "tags.`method`" in view["selectedColumns"] and "metrics.`test_cl`" in view["selectedColumns"]
    assert view["searchFilter"] == "tags.`fer_orch.kind` = 'trial'"
    url = runs_url("http://127.0.0.1:5000/", exp)
    assert url.startswith(f"http://127.0.0.1:5000/#/experiments/{exp}/runs?")
    assert "workflowType=machine_learning" in url and f"viewStateShareKey={VIEW_KEY}" in url


@pytest.mark.slow
def test_the_landing_page_is_the_trials_table_in_a_real_browser(tmp_path):
    """Runs scripts/ui_screenshot.py: the real `fer-orch ui`, Debian's headless Chromium."""
    if shutil.which("chromium") is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    out = tmp_path / "ui.png"
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "ui_screenshot.py"), "--out", str(out)],
                       capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "page checks: ok" in r.stdout and "processes left" in r.stdout and out.stat().st_size > 10_000
