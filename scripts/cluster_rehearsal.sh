#!/usr/bin/env bash
# Rehearse cluster.yaml's topology on this machine, with the real processes, on the
# loopback interface only:
#
#   0. an S3 API on 127.0.0.1 (`moto_server`; AWS_ENDPOINT_URL and dummy keys exported to
#      every process of the rehearsal) with a bucket for Tune's storage, and a private
#      PostgreSQL cluster (Debian's `postgresql`: initdb in a temp dir, as the `postgres` user
#      when run as root) on 127.0.0.1 with password authentication;
#   1. `mlflow server --serve-artifacts` on 127.0.0.1 with its store on that PostgreSQL (its
#      artifact folder is written by the server alone: trials upload over HTTP);
#   2. a Ray head and a Ray worker node on loopback addresses (`--node-ip-address
#      127.0.0.2`, `127.0.0.3`: Ray turns 127.0.0.1 into the machine's outward address),
#      each with its own temp dir and ports, Ray's token authentication on; only the
#      worker has the custom resource `rehearsal_worker`;
#   3. `fer-orch preprocess`, then `fer-orch grid` (cam, gradcam x {w/o, w/ AU} on
#      synthetic-rafdb, cpu preset, one seed) attached by --address, logging to
#      --tracking-uri http://127.0.0.1:PORT, trials pinned to the worker by
#      --trial-resources rehearsal_worker=1, Tune's storage s3://BUCKET/rehearsal;
#   4. once every running trial has finished an epoch, the worker's raylet is killed
#      (SIGKILL, by PID) and a new worker node (127.0.0.4) is started; the grid must finish,
#      leaving no trial work folder; meanwhile every connection of the rehearsal's
#      processes must stay between loopback addresses (sampled with `ss`);
#   5. Tune's state (experiment state, each trial's epoch checkpoints) is in the bucket;
#      checks through the MLflow REST API (scripts/cluster_rehearsal_check.py verify);
#   6. `fer-orch report` and `fer-orch explain --run <parent>` against the server;
#   7. a load step: 32 concurrent clients log 50 metrics each over REST (<= 60 s per server),
#      on the PostgreSQL server and on a second server with a SQLite store; a table of
#      requests/s and errors.
#
# Every process is started in its own session (setsid) and stopped by PID on exit, failure
# or Ctrl-C included (a trap). Prints a timeline; exits 0 when every check held.
#
# Usage: scripts/cluster_rehearsal.sh            (from a checkout where `make test` made .venv)
# Environment:
#   FER_ORCH_PYTHON   the Python of the venv holding fer-orch, ray, mlflow (default: .venv/bin/python)
#   REHEARSAL_DIR     working folder (default: a new /tmp/fer-rehearsal.XXXXXX, removed on success)
#   REHEARSAL_EPOCHS  epochs per trial (default 4)
#   REHEARSAL_KEEP=1  keep the working folder (logs, MLflow store) even on success
#   REHEARSAL_GRID_TIMEOUT  seconds the grid may take (default 900)
#   PG_BIN            folder of PostgreSQL's initdb, pg_ctl, postgres (default: the newest
#                     /usr/lib/postgresql/*/bin, else the one on PATH)
set -Eeuo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${FER_ORCH_PYTHON:-$REPO/.venv/bin/python}
[[ -x $PY ]] || { echo "cluster_rehearsal: no Python at $PY; run \`make test\` once (it makes .venv) or set FER_ORCH_PYTHON" >&2; exit 2; }
BIN=$(dirname "$PY")
PG_BIN=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}
[[ -n $PG_BIN ]] || PG_BIN=$(dirname "$(command -v initdb 2>/dev/null || echo /nonexistent/initdb)")
for exe in initdb pg_ctl postgres pg_isready createdb; do
    [[ -x $PG_BIN/$exe ]] || { echo "cluster_rehearsal: PostgreSQL's server programs (initdb, pg_ctl, postgres) are not installed; install them with \`apt-get install postgresql\` or set PG_BIN to their folder" >&2; exit 2; }
done
AS_PG=()  # initdb and postgres refuse root: as root, they run as the `postgres` user
if ((EUID == 0)); then
    id postgres >/dev/null 2>&1 || { echo "cluster_rehearsal: run as root, it needs the \`postgres\` user (apt-get install postgresql creates it) to run PostgreSQL" >&2; exit 2; }
    AS_PG=(setpriv --reuid=postgres --regid=postgres --init-groups --)
fi
MOTO=("$BIN/moto_server")
[[ -x ${MOTO[0]} ]] || MOTO=("$PY" -m moto.server)
EPOCHS=${REHEARSAL_EPOCHS:-4}
OWN_DIR=0
if [[ -n ${REHEARSAL_DIR:-} ]]; then
    WORK=$REHEARSAL_DIR
    mkdir -p "$WORK"
else
    WORK=$(mktemp -d /tmp/fer-rehearsal.XXXXXX)  # short: Ray's socket paths live under it
    OWN_DIR=1
fi
WORK=$(cd "$WORK" && pwd)
mkdir -p "$WORK/logs"
: >"$WORK/sessions"
: >"$WORK/timeline.txt"

# This checkout's code everywhere (driver, Ray workers of both nodes); the driver's home and
# temporary files inside the working folder; no telemetry (nothing leaves the loopback).
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
export FER_ORCH_HOME=$WORK/home
export TMPDIR=$WORK/tmp  # a trial killed with its node leaves its work folder there
mkdir -p "$TMPDIR"
export RAY_USAGE_STATS_ENABLED=0 MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=true
export MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR=false
unset RAY_ADDRESS MLFLOW_TRACKING_URI RAY_AUTH_TOKEN
# Ray's token authentication, with a token of this rehearsal (not ~/.ray/auth_token): every
# node and every driver (fer-orch) must hold it, as on a real cluster.
export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH=$WORK/ray-auth-token
"$PY" -c "import secrets; print(secrets.token_hex(32))" >"$RAY_AUTH_TOKEN_PATH"
chmod 600 "$RAY_AUTH_TOKEN_PATH"

T0=$(date +%s)
SESSIONS=()
say() { printf '[%4ss] %s\n' "$(($(date +%s) - T0))" "$*" | tee -a "$WORK/timeline.txt" >&2; }
fail() { say "FAILED: $*"; exit 1; }

# start NAME CMD...: CMD in a session of its own, output in logs/NAME.log; its pid in $PID.
# Every process it starts inherits the marker FER_ORCH_REHEARSAL (the cleanup looks for it).
start() {
    local name=$1
    shift
    setsid env FER_ORCH_REHEARSAL="$WORK" "$@" >"$WORK/logs/$name.log" 2>&1 </dev/null &
    PID=$!
    SESSIONS+=("$PID")
    echo "$PID $name" >>"$WORK/sessions"
}

# run NAME CMD...: start, then wait for it; its exit status (its output: logs/NAME.log).
run() {
    start "$@"
    local rc=0
    wait "$PID" || rc=$?
    return $rc
}

# The live (not zombie) pids of the processes this script started: the members of its
# sessions, and any process that carries the marker in its environment (one that left them).
our_pids() {
    local sid
    {
        for sid in "${SESSIONS[@]}"; do
            ps -o pid= -s "$sid" 2>/dev/null || true
        done
        grep -lzxF "FER_ORCH_REHEARSAL=$WORK" /proc/[0-9]*/environ 2>/dev/null | cut -d/ -f3
    } | tr -d ' ' | sort -u | paste -sd, | { xargs -r ps -o pid=,stat= -p 2>/dev/null || true; } \
        | awk '$2 !~ /^Z/ {print $1}'
    return 0  # (grep cannot read other users' environ files)
}

cleanup() {
    local rc=$? pids
    trap - EXIT INT TERM
    set +e
    [[ -n ${SAMPLER_PID:-} ]] && kill "$SAMPLER_PID" 2>/dev/null && wait "$SAMPLER_PID" 2>/dev/null
    if [[ -n ${PG_DATA:-} && -f $PG_DATA/postmaster.pid ]]; then  # a fast shutdown: clients cut off
        (cd / && "${AS_PG[@]}" "$PG_BIN/pg_ctl" stop -D "$PG_DATA" -m fast -t 30) >>"$WORK/logs/pg_ctl.log" 2>&1 \
            || say "pg_ctl stop failed (logs/pg_ctl.log); the postmaster is stopped by PID below"
    fi
    pids=$(our_pids)
    [[ -n $pids ]] && kill -TERM $pids 2>/dev/null
    local until=$((SECONDS + 10))  # Ray drains for up to 30 s on SIGTERM: 10 s, then SIGKILL
    while pids=$(our_pids) && [[ -n $pids ]] && ((SECONDS < until)); do sleep 0.25; done
    [[ -n $pids ]] && kill -KILL $pids 2>/dev/null
    until=$((SECONDS + 5))
    while pids=$(our_pids) && [[ -n $pids ]] && ((SECONDS < until)); do sleep 0.25; done
    if [[ -n $pids ]]; then
        say "processes still alive after SIGKILL: $(echo $pids)"
        ((rc == 0)) && rc=1
    fi
    if ((rc != 0)); then
        say "rehearsal failed (exit $rc); logs in $WORK/logs"
        for f in "$WORK"/logs/*.log; do
            echo "----- tail of $f" >&2
            tail -n 15 "$f" >&2
        done
    else
        say "stopped every process the rehearsal started"
        ((OWN_DIR && !${REHEARSAL_KEEP:-0})) && rm -rf "$WORK"
    fi
    [[ -n ${PG_DIR:-} ]] && rm -rf "$PG_DIR"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Free loopback ports: MLflow, the GCS; per node the dashboard agent
# and the metrics exporter (each node of a machine needs its own); S3, PostgreSQL, the
# SQLite-backed MLflow server of the load step.
read -r P_MLFLOW P_GCS P_AGENT0 P_AGENT1 P_AGENT2 P_METRICS0 P_METRICS1 P_METRICS2 P_S3 P_PG P_SQLITE < <("$PY" - <<'EOF'
import socket
socks = [socket.socket() for _ in range(11)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
for s in socks:
    s.close()
EOF
)
# Node addresses: Ray turns `--node-ip-address 127.0.0.1` into the machine's outward
# address, so each node takes another loopback address (Linux routes all of 127/8 to lo).
HEAD_IP=127.0.0.2
WORKER1_IP=127.0.0.3
WORKER2_IP=127.0.0.4
URI=http://127.0.0.1:$P_MLFLOW
ADDR=$HEAD_IP:$P_GCS
EXP=rehearsal
CHECK=("$PY" "$REPO/scripts/cluster_rehearsal_check.py")
BUCKET=fer-rehearsal
STORAGE=s3://$BUCKET/rehearsal
say "start: rehearsal in $WORK (MLflow $URI, Ray $ADDR, S3 127.0.0.1:$P_S3, PostgreSQL 127.0.0.1:$P_PG, $EPOCHS epochs per trial)"

# wait_http NAME URL PID: until URL answers (120 s), or fail when PID exits
wait_http() {
    for i in $(seq 1 240); do
        "$PY" -c "import urllib.request as u; u.urlopen('$2', timeout=2)" 2>/dev/null && return 0
        kill -0 "$3" 2>/dev/null || fail "$1 exited (logs/$1.log)"
        sleep 0.5
    done
    fail "$1 did not answer on $2 (logs/$1.log)"
}

# 0a. the S3 API: every process of the rehearsal (Ray nodes, their trials, the driver) finds
# it through AWS_ENDPOINT_URL, with dummy keys, as a node with its own credentials would
start s3 "${MOTO[@]}" -H 127.0.0.1 -p "$P_S3"
S3_PID=$PID
export AWS_ENDPOINT_URL=http://127.0.0.1:$P_S3 AWS_ACCESS_KEY_ID=rehearsal AWS_SECRET_ACCESS_KEY=rehearsal \
    AWS_DEFAULT_REGION=us-east-1 AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
unset AWS_PROFILE AWS_SESSION_TOKEN
wait_http s3 "$AWS_ENDPOINT_URL/moto-api/" "$S3_PID"
run make-bucket "${CHECK[@]}" make-bucket --bucket "$BUCKET" || fail "creating the bucket (logs/make-bucket.log)"
say "s3 server up (pid $S3_PID, moto on $AWS_ENDPOINT_URL), bucket $BUCKET created"

# 0b. PostgreSQL: a throw-away cluster in a temp dir (outside $WORK: the postgres user must
# reach it), on 127.0.0.1 only (its Unix socket in that dir), password authentication; the
# password reaches libpq through a pgpass file, never a command line
PG_DIR=$(mktemp -d /tmp/fer-pg.XXXXXX)
PG_DATA=$PG_DIR/data
"$PY" -c "import secrets; print(secrets.token_hex(16))" >"$PG_DIR/pw"
((EUID == 0)) && chown -R postgres: "$PG_DIR"
echo "127.0.0.1:$P_PG:*:postgres:$(cat "$PG_DIR/pw")" >"$WORK/pgpass"
chmod 600 "$WORK/pgpass"
export PGPASSFILE=$WORK/pgpass
cd "$PG_DIR"  # the postgres user's working directory must be one it can read
run initdb "${AS_PG[@]}" "$PG_BIN/initdb" -D "$PG_DATA" -U postgres --auth=scram-sha-256 --pwfile="$PG_DIR/pw" \
    -E UTF8 --locale=C.UTF-8 --no-sync || fail "initdb (logs/initdb.log)"
start postgres "${AS_PG[@]}" "$PG_BIN/postgres" -D "$PG_DATA" -h 127.0.0.1 -p "$P_PG" -k "$PG_DIR"
PG_PID=$PID
cd "$REPO"
for i in $(seq 1 120); do
    "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$P_PG" && break
    kill -0 "$PG_PID" 2>/dev/null || fail "postgres exited (logs/postgres.log)"
    sleep 0.5
done
run createdb "$PG_BIN/createdb" -h 127.0.0.1 -p "$P_PG" -U postgres mlflow || fail "createdb (logs/createdb.log)"
PG_URI=postgresql+psycopg2://postgres@127.0.0.1:$P_PG/mlflow
say "postgres up (pid $PG_PID, PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}'), data in $PG_DATA), database mlflow created"

# 1. the tracking server (the head's job in cluster.yaml), loopback only, on PostgreSQL
# (its job runner, 8 huey processes, is not needed here)
# mlflow_server NAME PORT STORE: a tracking server as cluster.yaml starts it; its pid in $PID
mlflow_server() {
    mkdir -p "$WORK/$1/artifacts"
    start "$1" env MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false "$BIN/mlflow" server --host 127.0.0.1 --port "$2" --workers 1 \
        --backend-store-uri "$3" --serve-artifacts --artifacts-destination "$WORK/$1/artifacts"
    wait_http "$1" "http://127.0.0.1:$2/health" "$PID"
}
mlflow_server mlflow "$P_MLFLOW" "$PG_URI"
MLFLOW_PID=$PID
say "mlflow server up (pid $MLFLOW_PID, store $PG_URI)"

# 2. the Ray head (no trial may run on it: trials ask for rehearsal_worker) and a worker
ray_node() {  # ray_node NAME IP AGENT_PORT METRICS_PORT ARGS...
    local name=$1 ip=$2 agent=$3 metrics=$4
    shift 4
    start "$name" "$BIN/ray" start --block --node-ip-address "$ip" --temp-dir "$WORK/$name" \
        --dashboard-agent-listen-port "$agent" --metrics-export-port "$metrics" \
        --min-worker-port 0 --max-worker-port 0 --object-store-memory 100000000 \
        --disable-usage-stats "$@"
}
ray_node ray-head "$HEAD_IP" "$P_AGENT0" "$P_METRICS0" --head --port "$P_GCS" \
    --include-dashboard false --num-cpus 1
HEAD_PID=$PID
for i in $(seq 1 120); do
    grep -q "Ray runtime started" "$WORK/logs/ray-head.log" 2>/dev/null && break
    kill -0 "$HEAD_PID" 2>/dev/null || fail "the Ray head exited (logs/ray-head.log)"
    sleep 0.5
done
say "ray head up (pid $HEAD_PID)"

WORKER_RES='{"rehearsal_worker": 2}'
ray_node ray-worker1 "$WORKER1_IP" "$P_AGENT1" "$P_METRICS1" --address "$ADDR" --num-cpus 2 --resources "$WORKER_RES"
WORKER1_PID=$PID
# value NAME KEY: the KEY=value line a check printed into logs/NAME.log
value() { sed -n "s/^$2=//p" "$WORK/logs/$1.log" | tail -n 1; }
run wait-node1 "${CHECK[@]}" wait-node --address "$ADDR" --resource rehearsal_worker || true
NODE1=$(value wait-node1 node_id)
[[ -n $NODE1 ]] || fail "worker node 1 did not join (logs/ray-worker1.log)"
say "ray worker 1 up (pid $WORKER1_PID, node ${NODE1:0:12})"

# 3. preprocess, then the grid in the background
run preprocess "$BIN/fer-orch" preprocess --dataset synthetic-rafdb --image-size 32 --map-size 16 --address "$ADDR" \
    || fail "fer-orch preprocess (logs/preprocess.log)"
say "fer-orch preprocess done"
start grid "$BIN/fer-orch" grid --preset cpu --datasets synthetic-rafdb --methods cam,gradcam --seeds 1 --no-ablations \
    --epochs "$EPOCHS" --address "$ADDR" --tracking-uri "$URI" --experiment "$EXP" --storage "$STORAGE" \
    --trial-resources rehearsal_worker=1
GRID_PID=$PID
say "fer-orch grid started (pid $GRID_PID)"

# While the grid runs, every 2 s: the TCP sockets of the rehearsal's processes (logs/sockets.txt)
sample_sockets() {
    local pids
    while kill -0 "$GRID_PID" 2>/dev/null; do
        pids=$(our_pids | paste -sd'|')
        if [[ -n $pids ]]; then
            ss -Htnp state established 2>/dev/null | grep -E "pid=($pids)," | awk '{print "peer", $4, $5}'
            ss -Htlnp 2>/dev/null | grep -E "pid=($pids)," | awk '{print "listen", $4, $6}'
        fi
        sleep 2
    done >>"$WORK/logs/sockets.txt"
}
SAMPLER_PID=
if command -v ss >/dev/null; then
    sample_sockets &
    SAMPLER_PID=$!
fi

# 4. kill the worker's raylet once every running trial has a checkpoint
run wait-epoch "${CHECK[@]}" wait-epoch --uri "$URI" --experiment "$EXP" --epoch 1 --timeout 400 \
    || fail "no trial reached epoch 1 (logs/wait-epoch.log, logs/grid.log)"
RUNNING=$(value wait-epoch run_ids)
AT=$(value wait-epoch epochs)
N_RUNNING=$(tr ',' '\n' <<<"$RUNNING" | grep -c .)
run s3-ckpt "${CHECK[@]}" s3-state --bucket "$BUCKET" --prefix rehearsal/ --state --checkpoints "$N_RUNNING" --timeout 120 \
    || fail "the running trials' checkpoints in the bucket: $(grep FAILED "$WORK/logs/s3-ckpt.log")"
say "tune state in s3: the experiment state and epoch checkpoints of the $(value s3-ckpt checkpointed_trials) running trials under $STORAGE"
RAYLET=$(ps -o pid=,comm= --ppid "$WORKER1_PID" | awk '$2 == "raylet" {print $1}')
[[ -n $RAYLET ]] || fail "no raylet under worker node 1 (pid $WORKER1_PID)"
kill -KILL "$RAYLET"
KILLED_AT=$(date +%s)
say "node killed: raylet $RAYLET of worker 1 (SIGKILL), trials ${RUNNING//,/ } running, at epochs $AT"
ray_node ray-worker2 "$WORKER2_IP" "$P_AGENT2" "$P_METRICS2" --address "$ADDR" --num-cpus 2 --resources "$WORKER_RES"
WORKER2_PID=$PID
run wait-node2 "${CHECK[@]}" wait-node --address "$ADDR" --resource rehearsal_worker --exclude "$NODE1" --dead "$NODE1" \
    || fail "worker node 2 did not join or worker 1 is not seen dead (logs/wait-node2.log, logs/ray-worker2.log)"
NODE2=$(value wait-node2 node_id)
DEAD_AT=$(value wait-node2 dead_at)
say "ray worker 2 up (pid $WORKER2_PID, node ${NODE2:0:12}); Ray listed worker 1 as dead within $((DEAD_AT - KILLED_AT)) s of the kill"

UNTIL=$((SECONDS + ${REHEARSAL_GRID_TIMEOUT:-900}))
while kill -0 "$GRID_PID" 2>/dev/null && ((SECONDS < UNTIL)); do sleep 1; done
kill -0 "$GRID_PID" 2>/dev/null && fail "the grid did not finish within ${REHEARSAL_GRID_TIMEOUT:-900} s (logs/grid.log)"
GRID_RC=0
wait "$GRID_PID" || GRID_RC=$?
((GRID_RC == 0)) || fail "fer-orch grid exited $GRID_RC (logs/grid.log)"
LEFT=$(cd "$TMPDIR" && ls -d fer-orch-* 2>/dev/null | paste -sd' ' || true)
[[ -z $LEFT ]] || fail "trial work folders left in $TMPDIR: $LEFT"
say "grid done; no trial work folder left behind"
run s3-state "${CHECK[@]}" s3-state --bucket "$BUCKET" --prefix rehearsal/ --state \
    || fail "Tune's state in the bucket: $(grep FAILED "$WORK/logs/s3-state.log")"
say "tune state in s3 after the grid: the experiment state, $(value s3-state objects) objects under $STORAGE, $(value s3-state checkpoints) checkpoints left (the grid deletes a finished trial's)"
# 5. every check through the server's REST API
run verify "${CHECK[@]}" verify --uri "$URI" --experiment "$EXP" --epochs "$EPOCHS" --trials 4 --interrupted "$RUNNING" \
    --workers "$NODE1,$NODE2" --new-node "$NODE2" || fail "the MLflow checks: $(grep FAILED "$WORK/logs/verify.log")"
PARENT=$(value verify parent_id)
RESUMED_AT=$(value verify resumed_at)
say "resumed at epoch: $(value verify resumed_from) (trial@epoch of its checkpoint), in the same MLflow runs, on worker 2, at +$((RESUMED_AT - T0)) s ($((RESUMED_AT - KILLED_AT)) s after the kill)"
say "checked over REST: 4 trial runs FINISHED with their metrics, each trained once from epoch 1; weights/best.pt and a PNG downloaded through the server"

# 6. the analysis side against the server
run report "$BIN/fer-orch" report --experiment "$EXP" --tracking-uri "$URI" --out "$WORK/report" \
    || fail "fer-orch report (logs/report.log)"
grep -q "^| cam " "$WORK/report/report.md" && grep -q "^| gradcam " "$WORK/report/report.md" \
    || fail "the report has no row for cam and gradcam ($WORK/report/report.md)"
say "fer-orch report done: Table 1 rows for cam and gradcam"
run explain "$BIN/fer-orch" explain --run "$PARENT" --tracking-uri "$URI" --address "$ADDR" --max-images 200 --n 4 \
    || fail "fer-orch explain (logs/explain.log)"
OK=$(grep -c "topn *ok" "$WORK/logs/explain.log" || true)
((OK == 4)) || fail "fer-orch explain explained $OK of the 4 trial runs (logs/explain.log)"
say "fer-orch explain done: 4 trial runs explained, results logged back through the server"

# 7. load: the PostgreSQL server above and a second one on SQLite, one after the other
mlflow_server mlflow-sqlite "$P_SQLITE" "sqlite:///$WORK/mlflow-sqlite/mlflow.db"
say "mlflow server on SQLite up (pid $PID) for the load step"
run load "${CHECK[@]}" load --uri "postgresql=$URI" "sqlite=http://127.0.0.1:$P_SQLITE" --clients 32 --metrics 50 --budget 60 \
    || fail "the load step: $(grep FAILED "$WORK/logs/load.log")"
say "load step done: 32 clients x 50 metrics each, over REST, per server"
grep -E '^(\||note:)' "$WORK/logs/load.log" | tee -a "$WORK/timeline.txt" >&2
say "done: rehearsal passed in $(($(date +%s) - T0)) s"
