"""Inputs that used to hang answer in one sentence and a non-zero exit, within 30 s: a head
that cannot be joined, resources no node offers, a print-config of a huge grid."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from orchestrator.cli import main
from tests.test_orchestrator.s3server import free_port

TINY = ["--methods", "cam", "--datasets", "synthetic-rafdb", "--seeds", "1", "--no-ablations"]


def _one_sentence(res, match: str) -> str:
    text = (res.output or "").strip()
    assert res.exit_code == 2, text
    assert "Traceback" not in text and len(text.splitlines()) == 1 and match in text, text
    return text


@pytest.fixture
def silent_listener():
    """A port that accepts TCP connections and never says a word (not a Ray head)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    conns, stop = [], threading.Event()

    def accept():
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                conns.append(srv.accept()[0])
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield f"127.0.0.1:{srv.getsockname()[1]}"
    stop.set()
    t.join()
    for c in conns:
        c.close()
    srv.close()


def test_unreachable_address_answers_in_one_sentence(mlflow_uri):
    t = time.monotonic()
    res = CliRunner().invoke(main, ["grid", *TINY, "--tracking-uri", mlflow_uri, "--address", "127.0.0.1:1"])
    _one_sentence(res, "could not join the Ray cluster at 127.0.0.1:1")
    assert time.monotonic() - t < 30


def test_a_port_that_is_not_a_ray_head_answers_in_one_sentence(mlflow_uri, silent_listener):
    t = time.monotonic()
    res = CliRunner().invoke(main, ["grid", *TINY, "--tracking-uri", mlflow_uri, "--address", silent_listener])
    _one_sentence(res, "does not answer as a Ray cluster")
    assert time.monotonic() - t < 30


def test_joining_honours_sigterm(tmp_path, mlflow_uri, silent_listener):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen([str(Path(sys.executable).with_name("fer-orch")), "grid", *TINY, "--tracking-uri",
                             mlflow_uri, "--address", silent_listener], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 25
        while time.monotonic() < deadline:  # until the command is probing the listener
            out = subprocess.run(["ss", "-tnp"], capture_output=True, text=True).stdout
            if f"pid={proc.pid}," in out and silent_listener.rsplit(":", 1)[1] in out:
                break
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        t = time.monotonic()
        proc.wait(timeout=10)
        assert time.monotonic() - t < 5 and proc.returncode != 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.mark.ray
@pytest.mark.parametrize("ask, match", [(["--gpus-per-trial", "3"], "GPU 3"),
                                        (["--trial-resources", "nowhere=1"], "nowhere 1")])
def test_resources_no_node_offers_are_one_sentence_before_any_trial(ray_local, mlflow_uri, tmp_path, ask, match):
    t = time.monotonic()
    res = CliRunner().invoke(main, ["grid", *TINY, "--tracking-uri", mlflow_uri, *ask])
    text = _one_sentence(res, "no node of this Ray cluster offers that")
    assert match in text
    assert time.monotonic() - t < 30
    assert not (tmp_path / "fer-orch-out" / "cache").exists()  # before preprocessing, before any trial


def test_print_config_of_a_huge_grid_counts_without_expanding(monkeypatch):
    import orchestrator.studies as studies

    calls = []
    expand = studies.expand
    monkeypatch.setattr(studies, "expand", lambda g, s, **kw: calls.append(len(g.seeds)) or expand(g, s, **kw))
    t = time.monotonic()
    res = CliRunner().invoke(main, ["grid", "--seeds", "300000", "--print-config"])
    assert res.exit_code == 0, res.output
    assert time.monotonic() - t < 30
    lines = res.output.splitlines()
    counts = {l.split(":")[0][2:]: int(l.split(": ")[1].split()[0]) for l in lines if l.startswith("# ")}
    small = CliRunner().invoke(main, ["grid", "--seeds", "1", "--print-config"]).output
    one = {l.split(":")[0][2:]: int(l.split(": ")[1].split()[0]) for l in small.splitlines() if l.startswith("# ")}
    assert counts["grid"] == one["grid"] * 300000  # the cpu preset: every grid trial once per seed
    assert counts["lambda"] == one["lambda"] and counts["layers"] == one["layers"]  # ablation_seeds fixed
    assert "0-299999 (300000 seeds)" in res.output
    assert max(calls) <= 2  # no expansion of all seeds
    import yaml

    cfg = yaml.safe_load(res.output.split("\n|")[0])
    assert cfg["seeds"] == list(range(300000))  # the YAML still lists every seed
