"""The README's cluster command with Tune's storage on S3 (a loopback moto server): the grid
is killed once a trial checkpointed to the bucket, and the same command resumes from there."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.test_orchestrator.s3server import list_keys, make_bucket, moto_server

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_cluster_command() -> list[str]:
    """The `fer-orch grid ... --storage s3://...` line of the README's "On a cluster"."""
    section = README.read_text().split("## On a cluster", 1)[1]
    line = next(l for l in section.splitlines() if l.startswith("fer-orch grid") and "--storage s3://" in l)
    return shlex.split(line)


def as_run_here(cmd: list[str], db: Path) -> list[str]:
    """The README's command with what cannot exist here replaced: no cluster to join
    (`--address auto`), synthetic data for the real datasets, SQLite for the head's server;
    plus the options that keep it small. `--storage` stays as written."""
    out, i = [], 1
    while i < len(cmd):
        if cmd[i] in ("--address", "--datasets", "--tracking-uri"):
            i += 2
            continue
        out.append(cmd[i])
        i += 1
    return [str(Path(sys.executable).with_name("fer-orch")), *out, "--datasets", "synthetic-rafdb", "--methods", "cam",
            "--seeds", "1", "--epochs", "3", "--no-ablations", "--max-concurrent", "1", "--tracking-uri", f"sqlite:///{db}"]


@pytest.mark.slow
def test_readme_cluster_command_stores_on_s3_is_killed_and_resumes(tmp_path):
    from orchestrator import tracking

    cmd = readme_cluster_command()
    storage = cmd[cmd.index("--storage") + 1]
    bucket, prefix = storage[len("s3://"):].split("/", 1)
    db = tmp_path / "mlflow.db"
    run = as_run_here(cmd, db)
    with moto_server(tmp_path / "moto.log") as s3:
        make_bucket(s3, bucket)
        env = {**os.environ, **s3, "FER_ORCH_HOME": str(tmp_path / "home"), "PYTHONPATH": str(README.parent)}
        log = open(tmp_path / "first.log", "w")
        proc = subprocess.Popen(run, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.time() + 400
            ckpts: list[str] = []
            while time.time() < deadline and proc.poll() is None and not ckpts:
                time.sleep(2)
                # the second epoch's checkpoint: Tune's experiment state, uploaded in the background
                # after each checkpoint, then surely names the first one
                ckpts = [k for k in list_keys(s3, bucket, prefix) if re.search(r"/checkpoint_000001/", k)]
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray it started
            proc.wait()
            log.close()
        assert ckpts, "no trial checkpoint reached S3: " + (tmp_path / "first.log").read_text()[-3000:]
        state = [k for k in list_keys(s3, bucket, prefix) if k.rsplit("/", 1)[-1].startswith("experiment_state")]
        assert state, "Tune's experiment state is not in the bucket"
        assert not (tmp_path / "home" / "ray").exists()  # nothing went to the local default

        second = subprocess.run(run, env=env, capture_output=True, text=True, timeout=600)
    out = second.stdout + second.stderr
    assert second.returncode == 0, out[-3000:]
    assert f"Tune storage:  {storage}" in out
    exp = tracking.client(f"sqlite:///{db}").get_experiment_by_name("fer-orch")
    runs = tracking.client(f"sqlite:///{db}").search_runs([exp.experiment_id], "tags.`fer_orch.kind` = 'trial'")
    assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs)
    resumed = [r for r in runs if "resumed_from_epoch" in r.data.metrics]
    assert resumed, "the killed trial started over instead of resuming from its S3 checkpoint"
