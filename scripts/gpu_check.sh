#!/usr/bin/env bash
# One-shot GPU check of the paper preset's trial, from a fresh clone on a GPU machine:
#
#   scripts/gpu_check.sh [OUT.json]          # default gpu_check.json; <= 8 minutes
#
# installs (make install), runs `benchmarks/bench_gpu_step.py --preset paper` (RAF-DB's and
# AffectNet's batch sizes, AU off and on, 100 timed steps a row) and a one-epoch paper-preset
# trial on 224-px synthetic faces (scripts/gpu_check_trial.py), and writes one JSON of the
# numbers. Without a GPU (or with GPU_CHECK_SMOKE=1) it runs the same steps tiny on the CPU,
# without installing (PYTHON names the interpreter; default .venv/bin/python).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-gpu_check.json}
smoke=${GPU_CHECK_SMOKE:-}
if [ -z "$smoke" ] && ! { command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; }; then
    echo "gpu_check: no GPU here: the CPU smoke path (tiny sizes; measures nothing)"
    smoke=1
fi
if [ -z "$smoke" ]; then
    make install
fi
py=${PYTHON:-.venv/bin/python}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export FER_ORCH_HOME=${FER_ORCH_HOME:-$work/home}
steps=100
trial_flags=()
if [ -n "$smoke" ]; then
    steps=1
    trial_flags=(--smoke)
fi
start=$(date +%s)
timeout 300 "$py" benchmarks/bench_gpu_step.py --preset paper --steps "$steps" --json "$work/bench.json"
timeout 150 "$py" scripts/gpu_check_trial.py "${trial_flags[@]}" --json "$work/trial.json"
"$py" - "$work" "$out" "$start" "${smoke:-0}" <<'PY'
import json, sys, time
work, out, start, smoke = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4] not in ("", "0")
bench = json.load(open(f"{work}/bench.json"))
trial = json.load(open(f"{work}/trial.json"))
doc = {"device": bench["device"], "smoke": smoke, "rows": bench["rows"], "bench": bench, "trial": trial,
       "seconds": time.time() - start}
json.dump(doc, open(out, "w"), indent=2)
print(f"gpu_check: wrote {out} ({doc['seconds']:.0f} s)")
PY
