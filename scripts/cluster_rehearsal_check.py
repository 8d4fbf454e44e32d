"""The probes of ``scripts/cluster_rehearsal.sh``: wait for a Ray node or a trial epoch, and
check the finished grid through the MLflow REST API (plain HTTP, never the server's files).

Sub-commands (each prints ``key=value`` lines the shell script reads):

- ``wait-node --address A --resource R [--exclude ID ...] [--dead ID]``: an alive node that
  has the custom resource R and is not excluded (and node ``--dead`` no longer alive);
  prints ``node_id=`` (and ``dead_at=``, when Ray first listed the dead node as dead);
- ``wait-epoch --uri U --experiment E --epoch K``: every RUNNING trial run of E has logged
  epoch K (and at least one runs); prints ``run_ids=`` and ``epochs=``;
- ``verify --uri U --experiment E --address A --resource R --epochs N --trials T
  --interrupted ID[,ID] --new-node ID``: every trial FINISHED with its metrics, the
  interrupted ones resumed from a checkpoint in their own run on the new node, no trial
  trained twice from scratch, ``weights/best.pt`` and a PNG download through the server;
  prints ``parent_id=``, ``resumed_from=`` (name@epoch of the checkpoint each interrupted
  trial resumed from) and ``resumed_at=`` (Unix time of the first resumption);
- ``make-bucket --bucket B`` and ``s3-state --bucket B --prefix P [--state] [--checkpoints N]``:
  the bucket on the S3 endpoint of ``AWS_ENDPOINT_URL`` (boto3 reads it), and Tune's state under
  P in it: wait until there is an ``experiment_state`` file (``--state``) and epoch checkpoints
  of at least N trials; prints ``objects=``, ``checkpoints=``, ``checkpointed_trials=``;
- ``load --uri NAME=U ... --clients C --metrics M --budget S``: C threads at once, each creates
  a run and logs M metrics one request each over REST, for at most S seconds per server;
  prints a table of requests/s and errors per server, and ``load_<NAME>=req_per_s,errors``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import io
import json
import re
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request


class Failed(Exception):
    """A check of the rehearsal did not hold."""


def _rest(uri: str, path: str, body: dict | None = None, raw: bool = False):
    url = uri.rstrip("/") + path
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"} if data else {})
    with urllib.request.urlopen(req, timeout=30) as r:
        payload = r.read()
    return payload if raw else json.loads(payload or b"{}")


def _get(uri: str, endpoint: str, **query) -> dict:
    return _rest(uri, f"{endpoint}?{urllib.parse.urlencode(query)}")


def _experiment_id(uri: str, name: str) -> str | None:
    try:
        return _get(uri, "/api/2.0/mlflow/experiments/get-by-name", experiment_name=name)["experiment"]["experiment_id"]
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return None
        raise


def _runs(uri: str, exp_id: str, filter_string: str) -> list[dict]:
    runs, token = [], None
    while True:
        body = {"experiment_ids": [exp_id], "filter": filter_string, "max_results": 1000}
        if token:
            body["page_token"] = token
        page = _rest(uri, "/api/2.0/mlflow/runs/search", body)
        runs += page.get("runs", [])
        token = page.get("next_page_token")
        if not token:
            return runs


def _tags(run: dict) -> dict[str, str]:
    return {t["key"]: t["value"] for t in run["data"].get("tags", [])}


def _metrics(run: dict) -> dict[str, float]:
    return {m["key"]: m["value"] for m in run["data"].get("metrics", [])}


def _history(uri: str, run_id: str, key: str) -> list[dict]:
    return _get(uri, "/api/2.0/mlflow/metrics/get-history", run_id=run_id, metric_key=key).get("metrics", [])


def _download(uri: str, run: dict, path: str) -> bytes:
    """An artifact through the server's artifact proxy (``mlflow-artifacts:/...`` runs only)."""
    root = run["info"]["artifact_uri"]
    if not root.startswith("mlflow-artifacts:"):
        raise Failed(f"run {run['info']['run_id']} stores its artifacts at {root}, not through the server's proxy")
    rel = root[len("mlflow-artifacts:"):].lstrip("/")
    return _rest(uri, f"/api/2.0/mlflow-artifacts/artifacts/{rel}/{path}", raw=True)


def _list(uri: str, run_id: str, path: str) -> list[str]:
    return [f["path"] for f in _get(uri, "/api/2.0/mlflow/artifacts/list", run_id=run_id, path=path).get("files", [])]


# ---------------------------------------------------------------------------------------


def wait_node(a) -> None:
    import ray

    ray.init(address=a.address, log_to_driver=False)
    try:
        deadline, joined, dead_at = time.time() + a.timeout, None, None
        while time.time() < deadline:
            nodes = ray.nodes()
            joined = joined or next((n for n in nodes if n.get("Alive") and n["Resources"].get(a.resource, 0) > 0
                                     and n["NodeID"] not in a.exclude), None)
            if a.dead and dead_at is None and not any(n.get("Alive") and n["NodeID"] == a.dead for n in nodes):
                dead_at = time.time()
            if joined and (dead_at or not a.dead):
                print(f"node_id={joined['NodeID']}")
                print(f"node_ip={joined['NodeManagerAddress']}")
                if a.dead:
                    print(f"dead_at={dead_at:.0f}")
                return
            time.sleep(0.5)
        raise Failed(f"within {a.timeout:.0f} s: " + ("" if joined else f"no node with resource {a.resource} joined; ")
                     + ("" if dead_at or not a.dead else f"node {a.dead} is still alive"))
    finally:
        ray.shutdown()


def wait_epoch(a) -> None:
    deadline = time.time() + a.timeout
    while time.time() < deadline:
        exp_id = _experiment_id(a.uri, a.experiment)
        running = _runs(a.uri, exp_id, "tags.`fer_orch.kind` = 'trial' and attributes.status = 'RUNNING'") if exp_id else []
        if running:
            epochs = {r["info"]["run_id"]: max((m["step"] for m in _history(a.uri, r["info"]["run_id"], a.metric)), default=0)
                      for r in running}
            if min(epochs.values()) >= a.epoch:
                print(f"run_ids={','.join(epochs)}")
                print(f"epochs={','.join(str(e) for e in epochs.values())}")
                return
        time.sleep(0.5)
    raise Failed(f"no trial of '{a.experiment}' reached epoch {a.epoch} within {a.timeout:.0f} s")


def verify(a) -> None:
    import torch

    exp_id = _experiment_id(a.uri, a.experiment)
    if exp_id is None:
        raise Failed(f"no experiment '{a.experiment}' on {a.uri}")
    parents = _runs(a.uri, exp_id, "tags.`fer_orch.kind` = 'grid'")
    if len(parents) != 1 or parents[0]["info"]["status"] != "FINISHED":
        raise Failed(f"expected one FINISHED grid parent run, got {[p['info']['status'] for p in parents]}")
    parent = parents[0]["info"]["run_id"]
    trials = _runs(a.uri, exp_id, "tags.`fer_orch.kind` = 'trial'")
    hashes = [_tags(r).get("fer_orch.config_hash") for r in trials]
    if len(trials) != a.trials or len(set(hashes)) != a.trials:
        raise Failed(f"expected {a.trials} trial runs, one per config, got {len(trials)} runs of {len(set(hashes))} configs")
    interrupted = set(filter(None, a.interrupted.split(",")))
    workers = set(a.workers.split(","))
    ids = {r["info"]["run_id"] for r in trials}
    if not interrupted or not interrupted <= ids:
        raise Failed(f"the interrupted runs {sorted(interrupted)} are not trial runs of the grid (one run per trial)")
    resumed = {}
    for r in trials:
        rid, tags, metrics = r["info"]["run_id"], _tags(r), _metrics(r)
        name = r["info"].get("run_name", rid)
        if r["info"]["status"] != "FINISHED":
            raise Failed(f"trial {name} is {r['info']['status']}, not FINISHED")
        if tags.get("mlflow.parentRunId") != parent:
            raise Failed(f"trial {name} is not a child of the grid run {parent}")
        missing = {"test_cl", "test_cam_cos", "test_att_cos", "best_val_cl", "best_epoch", "train_seconds"} - set(metrics)
        if missing:
            raise Failed(f"trial {name} lacks the metrics {sorted(missing)}")
        steps = [m["step"] for m in _history(a.uri, rid, a.metric)]
        if sorted(set(steps)) != list(range(1, a.epochs + 1)) or steps.count(1) != 1:
            raise Failed(f"trial {name} logged {a.metric} at epochs {sorted(steps)}, expected 1..{a.epochs} with epoch 1 once "
                         "(twice: it was trained again from scratch)")
        if tags.get("fer_orch.node") not in workers:
            raise Failed(f"trial {name} ran on node {tags.get('fer_orch.node')}, not on a worker node {sorted(workers)}")
        marks = _history(a.uri, rid, "resumed_from_epoch")
        back = [m["step"] for m in marks]
        if rid in interrupted:
            if not back or min(back) < 1:
                raise Failed(f"the interrupted trial {name} did not resume from a checkpoint")
            if tags.get("fer_orch.node") != a.new_node:
                raise Failed(f"the interrupted trial {name} finished on {tags.get('fer_orch.node')}, not on the new node")
            resumed[name] = (min(back), min(int(m["timestamp"]) for m in marks))
        elif back:
            raise Failed(f"trial {name} was not interrupted but resumed from epoch {back}")
        weights = torch.load(io.BytesIO(_download(a.uri, r, "weights/best.pt")), map_location="cpu", weights_only=True)
        if not weights or not all(torch.is_tensor(v) for v in weights.values()):
            raise Failed(f"weights/best.pt of {name} is not a state_dict")
        pngs = [p for p in _list(a.uri, rid, "maps") + _list(a.uri, rid, "matrices") if p.endswith(".png")]
        if not pngs or not _download(a.uri, r, pngs[0]).startswith(b"\x89PNG\r\n\x1a\n"):
            raise Failed(f"no PNG of {name} downloads through the server")
    print(f"parent_id={parent}")
    print("resumed_from=" + " ".join(f"{k}@{v[0]}" for k, v in sorted(resumed.items())))
    print(f"resumed_at={min(v[1] for v in resumed.values()) / 1000:.0f}")


def _s3():
    import boto3  # endpoint and credentials from the environment (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...)

    return boto3.client("s3")


def make_bucket(a) -> None:
    _s3().create_bucket(Bucket=a.bucket)
    print(f"bucket={a.bucket}")


def s3_state(a) -> None:
    deadline = time.time() + a.timeout
    while True:
        keys = []
        for page in _s3().get_paginator("list_objects_v2").paginate(Bucket=a.bucket, Prefix=a.prefix):
            keys += [o["Key"] for o in page.get("Contents", [])]
        state = any(k.rsplit("/", 1)[-1].startswith("experiment_state") for k in keys)
        ckpts = {m.group(0) for k in keys if (m := re.search(r".*/checkpoint_\d+/", k))}
        trials = {c.rstrip("/").rsplit("/", 2)[-2] for c in ckpts}
        if (state or not a.state) and len(trials) >= a.checkpoints:
            break
        if time.time() > deadline:
            raise Failed(f"under s3://{a.bucket}/{a.prefix} within {a.timeout:.0f} s: "
                         + ("" if state or not a.state else "no Tune experiment_state file; ")
                         + f"checkpoints of {len(trials)} trials, expected {a.checkpoints} ({len(keys)} objects: "
                         + " ".join(keys[:12]) + ")")
        time.sleep(0.5)
    print(f"objects={len(keys)}")
    print(f"checkpoints={len(ckpts)}")
    print(f"checkpointed_trials={len(trials)}")


def _client(uri: str, exp_id: str, k: int, metrics: int, deadline: float, tally: dict, lock: threading.Lock) -> None:
    """One client: a run, then ``metrics`` log-metric requests, each its own HTTP request."""
    def call(path: str, body: dict) -> dict | None:
        if time.time() >= deadline:  # the budget is spent: the request is not sent
            return None
        try:
            out = _rest(uri, path, body)
        except (OSError, ValueError):  # HTTP errors, refused or reset connections, timeouts
            out = None
        with lock:
            tally["errors" if out is None else "requests"] += 1
        return out

    run = call("/api/2.0/mlflow/runs/create", {"experiment_id": exp_id, "run_name": f"client-{k}",
                                               "start_time": int(time.time() * 1000)})
    if not run:
        return
    rid = run["run"]["info"]["run_id"]
    for i in range(metrics):
        call("/api/2.0/mlflow/runs/log-metric", {"run_id": rid, "key": f"m{i % 5}", "value": float(i),
                                                 "timestamp": int(time.time() * 1000), "step": i})
    call("/api/2.0/mlflow/runs/update", {"run_id": rid, "status": "FINISHED", "end_time": int(time.time() * 1000)})


def load_one(uri: str, a) -> tuple[int, int, float]:
    """(successful requests, failed requests, seconds) of ``a.clients`` concurrent clients on ``uri``."""
    exp_id = _experiment_id(uri, a.experiment) or _rest(uri, "/api/2.0/mlflow/experiments/create",
                                                        {"name": a.experiment})["experiment_id"]
    tally, lock = {"requests": 0, "errors": 0}, threading.Lock()
    t0 = time.time()
    deadline = t0 + a.budget
    with concurrent.futures.ThreadPoolExecutor(a.clients) as pool:
        for f in [pool.submit(_client, uri, exp_id, k, a.metrics, deadline, tally, lock) for k in range(a.clients)]:
            f.result()
    return tally["requests"], tally["errors"], time.time() - t0


def load(a) -> None:
    rows = []
    for spec in a.uri:
        name, uri = spec.split("=", 1)
        ok, bad, secs = load_one(uri, a)
        expected = a.clients * (a.metrics + 2)
        rows.append((name, ok, bad, secs, ok / secs, expected))
        print(f"load_{name}={ok / secs:.1f},{bad},{ok},{expected}")
    print("| backend | clients x metrics | requests ok | errors | seconds | requests/s |")
    print("|---|---|---|---|---|---|")
    for name, ok, bad, secs, rate, expected in rows:
        print(f"| {name} | {a.clients} x {a.metrics} | {ok} of {expected} | {bad} | {secs:.1f} | {rate:.1f} |")
    short = [r[0] for r in rows if r[1] + r[2] < r[5]]
    failed = [r[0] for r in rows if r[2]]
    if failed:
        raise Failed(f"requests failed on {', '.join(failed)}")
    if short:
        print(f"note: {', '.join(short)} did not finish every request within {a.budget:.0f} s")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    n = sub.add_parser("wait-node")
    n.add_argument("--address", required=True)
    n.add_argument("--resource", required=True)
    n.add_argument("--exclude", nargs="*", default=[])
    n.add_argument("--dead", help="Also wait until this node is no longer alive; prints dead_at= (Unix time).")
    n.add_argument("--timeout", type=float, default=120)
    e = sub.add_parser("wait-epoch")
    v = sub.add_parser("verify")
    for q in (e, v):
        q.add_argument("--uri", required=True)
        q.add_argument("--experiment", required=True)
        q.add_argument("--metric", default="val_cl", help="A metric logged every epoch.")
    e.add_argument("--epoch", type=int, default=1)
    e.add_argument("--timeout", type=float, default=300)
    v.add_argument("--epochs", type=int, required=True)
    v.add_argument("--trials", type=int, required=True)
    v.add_argument("--interrupted", required=True, help="Run ids of the trials running when the node was killed.")
    v.add_argument("--workers", required=True, help="Node ids of the worker nodes, comma-separated.")
    v.add_argument("--new-node", required=True, help="Node id of the worker started after the kill.")
    b = sub.add_parser("make-bucket")
    st = sub.add_parser("s3-state")
    for q in (b, st):
        q.add_argument("--bucket", required=True)
    st.add_argument("--prefix", required=True)
    st.add_argument("--state", action="store_true", help="Require Tune's experiment_state file.")
    st.add_argument("--checkpoints", type=int, default=0, help="Require epoch checkpoints of this many trials.")
    st.add_argument("--timeout", type=float, default=0)
    ld = sub.add_parser("load")
    ld.add_argument("--uri", nargs="+", required=True, help="NAME=URI of each tracking server, loaded one after the other.")
    ld.add_argument("--experiment", default="load")
    ld.add_argument("--clients", type=int, default=32)
    ld.add_argument("--metrics", type=int, default=50)
    ld.add_argument("--budget", type=float, default=60, help="Seconds each server gets at most.")
    a = p.parse_args(argv)
    try:
        {"wait-node": wait_node, "wait-epoch": wait_epoch, "verify": verify, "make-bucket": make_bucket,
         "s3-state": s3_state, "load": load}[a.cmd](a)
    except Failed as err:
        print(f"FAILED: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
