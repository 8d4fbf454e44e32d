"""Look at what `fer-orch ui` shows: start it, open the address it prints in headless Chromium,
save a screenshot, check the page, stop the UI with SIGTERM and check nothing is left.

    .venv/bin/python scripts/ui_screenshot.py --out ui.png                 # a small demo store
    .venv/bin/python scripts/ui_screenshot.py --tracking-uri sqlite:///fer-orch-out/mlflow.db

Needs Debian's ``chromium`` (``apt-get install chromium``). Exit status 0 when the page is
the experiment's trials table in model-training mode with the grid's columns.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--window-size=2000,900", "--virtual-time-budget=20000",
]
#: what the landing page must show (model-training mode, the trials, the grid's columns)
EXPECTED = ("Model training", "matching runs", "test_cl", "test_cam_cos", "test_att_cos", "method", "seed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def demo_store(folder: Path) -> tuple[str, list[str]]:
    """A store with one grid parent and four trial runs laid out as the grid logs them."""
    from orchestrator import tracking

    uri = f"sqlite:///{folder / 'mlflow.db'}"
    exp = tracking.ensure_experiment("fer-orch", uri)
    c = tracking.client(uri)
    parent = c.create_run(exp, tags={tracking.KIND_TAG: "grid"}, run_name="grid-demo").info.run_id
    names = []
    for method in ("cam", "wildcat"):
        for au in ("false", "true"):
            name = f"{method}-synthetic-rafdb-{'au' if au == 'true' else 'noau'}-s0"
            tags = {tracking.KIND_TAG: "trial", "mlflow.parentRunId": parent, "method": method,
                    "dataset": "synthetic-rafdb", "au": au, "lambda": "5" if au == "true" else "0", "layers": "5",
                    "seed": "0"}
            run = c.create_run(exp, tags=tags, run_name=name).info.run_id
            for k, v in {"test_cl": 45.0 + (au == "true"), "test_cam_cos": 0.41, "test_att_cos": 0.42}.items():
                c.log_metric(run, k, v)
            c.set_terminated(run)
            names.append(name)
    c.set_terminated(parent)
    return uri, names


def _pids_with(text: str) -> list[int]:
    """Processes whose command line contains ``text`` (the UI's port)."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if text in (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    out.append(int(d.name))
            except OSError:
                continue
    return [p for p in out if p != os.getpid()]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tracking-uri", help="a store to show (default: a demo store in a temporary folder)")
    ap.add_argument("--out", default="fer-orch-ui.png", help="screenshot PNG")
    ap.add_argument("--chromium", default=shutil.which("chromium") or "chromium")
    args = ap.parse_args(argv)
    if not shutil.which(args.chromium):
        print(f"no '{args.chromium}' on PATH: install Debian's chromium (apt-get install chromium)", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="fer-ui-shot-"))
    names: list[str] = []
    uri = args.tracking_uri
    if uri is None:
        uri, names = demo_store(tmp)
    port = free_port()
    t0 = time.monotonic()
    ui = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "ui", "--port", str(port), "--tracking-uri", uri],
                          stdout=subprocess.PIPE, text=True)
    try:
        url = None
        for line in ui.stdout:  # the UI prints one runs address per experiment once the server answers
            print(line, end="")
            m = re.search(r"(http://\S+/#/experiments/\S+)", line)
            if m:
                url = m.group(1)
                break
        if url is None:
            print(f"`fer-orch ui` exited ({ui.wait()}) without printing a runs address", file=sys.stderr)
            return 1
        print(f"UI ready after {time.monotonic() - t0:.0f} s: {url}")
        profile = ["--user-data-dir=" + str(tmp / "chromium-profile")]
        subprocess.run([args.chromium, *CHROMIUM_FLAGS, *profile, f"--screenshot={Path(args.out).resolve()}", url],
                       capture_output=True, timeout=180)
        dom = subprocess.run([args.chromium, *CHROMIUM_FLAGS, *profile, "--dump-dom", url],
                             capture_output=True, text=True, timeout=180).stdout
        missing = [w for w in (*EXPECTED, *names) if w not in dom]
        print(f"screenshot: {args.out}; page checks: {'ok' if not missing else 'missing ' + ', '.join(missing)}")
    finally:
        ui.send_signal(signal.SIGTERM)
        try:
            rc = ui.wait(timeout=30)
        except subprocess.TimeoutExpired:
            ui.kill()
            rc = None
    time.sleep(1)
    left = _pids_with(f"--port {port}")
    print(f"`fer-orch ui` exited with {rc} after SIGTERM; processes left on port {port}: {left or 'none'}")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0 if not missing and not left and Path(args.out).is_file() else 1


if __name__ == "__main__":
    sys.exit(main())
