"""The cluster path: which tracking URI a trial uses where, pinning trials to nodes, the
worker's view of the driver's cache, joining a cluster; and (slow) the whole rehearsal of
cluster.yaml's topology with real processes, ``scripts/cluster_rehearsal.sh``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from fer_models.errors import ConfigError, FerOrchError
from orchestrator.ray_utils import hosts_elsewhere, is_loopback, join_error, uri_seen_from

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "cluster_rehearsal.sh"


# --------------------------------------------------------------------------------------
# the tracking URI, as seen from each node
# --------------------------------------------------------------------------------------


def test_loopback_names():
    assert all(is_loopback(h) for h in ("localhost", "LOCALHOST", "127.0.0.1", "127.0.0.3", "::1", "[::1]"))
    assert not any(is_loopback(h) for h in ("10.0.0.1", "192.0.2.2", "head.example", "", None))


@pytest.mark.parametrize("uri, origin, here", [
    ("http://127.0.0.1:5077", "127.0.0.2", "127.0.0.3"),  # the rehearsal: nodes on loopback addresses
    ("http://127.0.0.1:5077", "192.0.2.2", "192.0.2.2"),  # every node at the machine's address
    ("http://localhost:5000", "10.0.0.10", None),  # the driver itself (not in a Ray worker)
    ("http://head.example:5000", "10.0.0.10", "10.0.0.11"),  # not a loopback URI
    ("sqlite:////tmp/mlflow.db", "10.0.0.10", "10.0.0.11"),
    ("http://127.0.0.1:5000", None, "10.0.0.11"),  # no driver address known
])
def test_the_users_uri_is_used_as_given_on_one_machine(uri, origin, here):
    assert uri_seen_from(uri, origin, here) == uri


def test_a_loopback_uri_names_the_drivers_machine_on_another_host():
    assert uri_seen_from("http://127.0.0.1:5000", "10.0.0.10", "10.0.0.11") == "http://10.0.0.10:5000"
    assert uri_seen_from("https://u:p@localhost/mlflow", "10.0.0.10", "10.0.0.11") == "https://u:p@10.0.0.10/mlflow"
    assert uri_seen_from("http://[::1]:5000", "fd00::2", "fd00::3") == "http://[fd00::2]:5000"


def _fake_ray(driver: str, nodes: list[tuple[str, bool]]):
    """A stand-in for the ``ray`` module: the driver on node 0, ``nodes`` = (address, alive)."""
    table = [{"NodeID": f"n{i}", "NodeManagerAddress": ip, "Alive": alive} for i, (ip, alive) in enumerate(nodes)]
    assert table[0]["NodeManagerAddress"] == driver
    return SimpleNamespace(
        nodes=lambda: table,
        get_runtime_context=lambda: SimpleNamespace(get_node_id=lambda: "n0"),
        util=SimpleNamespace(get_node_ip_address=lambda: "192.0.2.99"),  # the machine's guess: never used
    )


def test_nodes_elsewhere_are_the_live_ones_on_other_addresses():
    ray = _fake_ray("10.0.0.10", [("10.0.0.10", True), ("10.0.0.11", True), ("10.0.0.12", False), ("10.0.0.11", True)])
    assert hosts_elsewhere(ray, "10.0.0.10") == ["10.0.0.11"]
    assert hosts_elsewhere(_fake_ray("127.0.0.2", [("127.0.0.2", True), ("127.0.0.3", True)]), "127.0.0.2") == []


def test_driver_checks_the_uri_only_when_nodes_are_on_other_hosts(monkeypatch):
    from orchestrator import tuning as grid

    asked = []

    def unreachable(uri):
        asked.append(uri)
        raise FerOrchError(f"{uri} is unreachable")

    monkeypatch.setattr(grid.tracking, "resolve_uri", unreachable)
    one_machine = _fake_ray("192.0.2.2", [("192.0.2.2", True), ("192.0.2.2", True)])
    assert grid._check_remote_nodes("http://127.0.0.1:5077", one_machine) == ("192.0.2.2", [])
    assert asked == []  # no rewrite, no check of a rewritten URI
    two_hosts = _fake_ray("10.0.0.10", [("10.0.0.10", True), ("10.0.0.11", True)])
    with pytest.raises(ConfigError, match="the head.s private address"):
        grid._check_remote_nodes("http://localhost:5000", two_hosts)
    assert asked == ["http://10.0.0.10:5000"]
    monkeypatch.setattr(grid.tracking, "resolve_uri", lambda uri: uri)
    assert grid._check_remote_nodes("http://localhost:5000", two_hosts) == ("10.0.0.10", ["10.0.0.11"])


# --------------------------------------------------------------------------------------
# pinning trials to nodes, the worker's cache, joining a cluster
# --------------------------------------------------------------------------------------


def test_trial_resources_option_pins_trials_to_a_node_resource():
    from orchestrator.commands.grid import build_grid_config
    from orchestrator.tuning import trial_resources

    g = build_grid_config(trial_resources="rehearsal_worker=1,fast_disk=0.5", cpus_per_trial=2)
    assert trial_resources(g) == {"cpu": 2.0, "gpu": 0.0, "rehearsal_worker": 1.0, "fast_disk": 0.5}
    assert type(g).from_dict(g.to_dict()).resources.custom == {"rehearsal_worker": 1.0, "fast_disk": 0.5}
    assert trial_resources(build_grid_config()) == {"cpu": 1.0, "gpu": 0.0}


@pytest.mark.parametrize("text, match", [("worker=-1", "positive"), ("CPU=1", "other than CPU"), ("worker=x", "NAME=AMOUNT")])
def test_bad_trial_resources_are_one_sentence(text, match):
    from orchestrator.commands.grid import build_grid_config

    with pytest.raises(ConfigError, match=match):
        build_grid_config(trial_resources=text)


def test_trial_uses_the_drivers_cache_only_where_it_sees_it(tmp_path):
    from orchestrator.trial import cache_here

    cache = tmp_path / "cache" / "synthetic-rafdb" / "abc"
    assert cache_here(str(cache)) is None  # another host: the trainer prepares its own
    cache.mkdir(parents=True)
    assert cache_here(str(cache)) is None  # an unfinished cache
    (cache / "meta.json").write_text("{}")
    assert cache_here(str(cache)) == str(cache)
    assert cache_here(None) is None


def test_a_retried_trial_removes_what_its_killed_attempt_left(tmp_path, monkeypatch):
    import tempfile as tf

    from orchestrator.trial import fresh_work_dir

    monkeypatch.setattr(tf, "tempdir", str(tmp_path))
    killed = fresh_work_dir("abc", "t_00001")
    (killed / "checkpoint.pt").write_bytes(b"x")
    other = fresh_work_dir("abc", "t_00002")  # the same config in another trial (another grid): kept
    retry = fresh_work_dir("abc", "t_00001")
    assert retry.is_dir() and retry != killed and not killed.exists() and other.is_dir()


def test_joining_a_cluster_fails_in_one_sentence():
    auth = ConnectionError("Failed to connect to Ray cluster at 10.0.0.10:6379")
    auth.__cause__ = RuntimeError("ray.exceptions.AuthenticationError: RPC error: InvalidAuthToken: missing")
    assert "RAY_AUTH_MODE=token" in str(join_error("10.0.0.10:6379", auth))
    other = join_error("10.0.0.10:6379", ConnectionError("Failed to connect to Ray cluster at 10.0.0.10:6379"))
    assert "ray start --head" in str(other) and "RAY_AUTH_MODE" not in str(other)


def test_grid_summary_names_the_store_it_wrote_to(capsys):
    from orchestrator.tuning import GridOutcome, print_summary

    print_summary(GridOutcome("rehearsal", "1", "http://127.0.0.1:5077", "p", ("grid",), 1.0, ""))
    err = capsys.readouterr().err
    assert "fer-orch report --experiment rehearsal --tracking-uri http://127.0.0.1:5077" in err
    assert "open the runs: http://127.0.0.1:5077" in err


def _check_script():
    import importlib.util

    spec = importlib.util.spec_from_file_location("cluster_rehearsal_check", ROOT / "scripts" / "cluster_rehearsal_check.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_rehearsal_finds_tunes_state_in_the_bucket_or_says_what_is_missing(tmp_path, monkeypatch, capsys):
    import boto3

    from tests.test_orchestrator.s3server import moto_server

    check = _check_script()
    with moto_server(tmp_path / "moto.log") as env:
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        assert check.main(["make-bucket", "--bucket", "bkt"]) == 0
        args = ["s3-state", "--bucket", "bkt", "--prefix", "rehearsal/", "--state", "--checkpoints", "2"]
        assert check.main(args) == 1
        assert "no Tune experiment_state file" in capsys.readouterr().err
        s3 = boto3.client("s3")
        s3.put_object(Bucket="bkt", Key="rehearsal/g/experiment_state-2026-12-06.json", Body=b"{}")
        s3.put_object(Bucket="bkt", Key="rehearsal/g/t_00001/checkpoint_000000/state.pt", Body=b"x")
        s3.put_object(Bucket="bkt", Key="rehearsal/g/t_00001/checkpoint_000001/state.pt", Body=b"x")
        assert check.main(args) == 1
        assert "checkpoints of 1 trials, expected 2" in capsys.readouterr().err
        s3.put_object(Bucket="bkt", Key="rehearsal/g/t_00002/checkpoint_000000/state.pt", Body=b"x")
        assert check.main(args) == 0
        out = capsys.readouterr().out
        assert "checkpoints=3" in out and "checkpointed_trials=2" in out


# --------------------------------------------------------------------------------------
# the rehearsal (slow): real mlflow server, Ray head + worker nodes, a killed raylet
# --------------------------------------------------------------------------------------


def _marked(work: Path) -> list[int]:
    """Live processes carrying the rehearsal's marker in their environment."""
    needle = f"FER_ORCH_REHEARSAL={work}".encode()
    pids = []
    for env in Path("/proc").glob("[0-9]*/environ"):
        try:
            if needle in env.read_bytes().split(b"\0") and _alive(int(env.parent.name)):
                pids.append(int(env.parent.name))
        except OSError:
            continue
    return pids


def _alive(pid: int) -> bool:
    try:
        return not Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return False


def _session_members(sid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":  # field 6 of stat: the session id
            out.append(int(stat.parent.name))
    return out


@pytest.mark.slow
def test_cluster_rehearsal_passes_and_leaves_no_process(tmp_path):
    """scripts/cluster_rehearsal.sh end to end (3 to 4 minutes on 2 busy cores)."""
    work = Path(tempfile.mkdtemp(prefix="fer-rh.", dir="/tmp"))  # short: Ray's socket paths live under it
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")}
    env.update(FER_ORCH_PYTHON=sys.executable, REHEARSAL_DIR=str(work))
    log = tmp_path / "rehearsal.log"
    try:
        with open(log, "w") as out:
            proc = subprocess.Popen(["bash", str(SCRIPT)], env=env, stdout=out, stderr=subprocess.STDOUT)
            try:
                rc = proc.wait(timeout=900)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGTERM)  # the script's trap stops what it started
                rc = proc.wait(timeout=120)
        text = log.read_text()
        assert rc == 0, text[-6000:]
        timeline = (work / "timeline.txt").read_text()
        for event in ("s3 server up", "postgres up", "mlflow server up", "ray worker 1 up", "node killed", "ray worker 2 up", "grid done",
                      "tune state in s3", "resumed at epoch", "checked over REST", "fer-orch report done", "fer-orch explain done",
                      "load step done", "| postgresql | 32 x 50 |", "| sqlite | 32 x 50 |", "stopped every process"):
            assert event in timeline, timeline
        time.sleep(1)
        assert _marked(work) == [], "processes of the rehearsal are still running"
        sessions = [int(line.split()[0]) for line in (work / "sessions").read_text().splitlines()]
        assert len(sessions) >= 12  # s3, postgres, 2 mlflow, 3 Ray nodes, preprocess, grid, report, explain, checks
        assert not [p for s in sessions for p in _session_members(s)]
    finally:
        for pid in _marked(work):  # never leave a stray cluster on a shared machine
            os.kill(pid, signal.SIGKILL)
        import shutil

        shutil.rmtree(work, ignore_errors=True)
