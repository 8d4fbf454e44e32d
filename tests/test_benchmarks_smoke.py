"""Every benchmark runs: its ``--smoke`` mode (tiny sizes, seconds) as a subprocess, with the
lines that carry its numbers checked, so a change that breaks a benchmark turns the suite red.

A new ``benchmarks/bench_*.py`` needs a ``--smoke`` mode and an entry in :data:`EXPECTED`.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
NUM = r"[-+]?\d[\d,]*(?:\.\d+)?"

#: benchmark -> (extra arguments, regexes every one of which must match a line of its output)
EXPECTED: dict[str, tuple[list[str], list[str]]] = {
    "bench_au_drawings": ([], [rf"^\{{.*{NUM}.*\}}$"]),
    "bench_au_drawing_shift": ([], [rf"^\| cam \| w/o \| 0,1 \| {NUM} \| {NUM} \| {NUM} \| {NUM} \[{NUM}, {NUM}\]"]),
    "bench_au_overhead": ([], [rf"^cam\s+resnet-tiny\s+32\s+4\s+5\s+{NUM}\s+{NUM}\s+{NUM}"]),
    "bench_aumaps": ([], [rf"^codebook maps\s+{NUM}\s+{NUM}\s+{NUM}x$", rf"^true-AU maps\s+{NUM}\s+{NUM}\s+{NUM}x$"]),
    "bench_cpu_step": ([], [rf"ratio fused/loop: {NUM} \(fastest\)", rf"ratio nn.PReLU/two ReLUs: {NUM}"]),
    "bench_faithfulness": ([], [rf"^test evaluation \(16 images\): {NUM} s CPU",
                                rf"^faithfulness \(n=2, steps=2\): {NUM} s CPU"]),
    "bench_filter_au_null": ([], [r"^\| 500 \| 0\.5 sd \| " + NUM]),
    "bench_gpu_step": ([], [rf"^w/o AU\s+{NUM}\s+{NUM}", rf"^w/ AU, layer 5\s+{NUM}", rf"^w/ AU, 5\+4\+3\+2\+1\s+{NUM}",
                            rf"^device side alone \(CPU recipe.*: {NUM} img/s"]),
    "bench_gpu_step --preset": (["--preset", "paper", "--steps", "1", "--json", "out.json"], [
        rf"^rafdb\s+4\s+off\s+{NUM}\s+{NUM}\s+{NUM}\s+n/a\s+n/a\s+{NUM}\s+{NUM}\s+{NUM}\s+114\.3$",
        rf"^affectnet\s+4\s+on\s+{NUM}", r"^wrote out.json$"]),
    "bench_loader": ([], [rf"^in-memory\s+1\s+{NUM}\s+{NUM}\s+{NUM}x$", rf"^memory-mapped\s+1\s+{NUM}\s+{NUM}\s+{NUM}x$",
                          rf"^loader speed-up, new vs old, 1 core: {NUM}×$"]),
    "bench_preprocess": ([], [rf"^serial\s+{NUM}\s+{NUM}\s+{NUM}"]),
    "bench_probe": ([], [rf"^n=40: .*total_s {NUM}s", rf"^embeddings_s\s+{NUM}s"]),
    "bench_probe_memory": ([], [rf"^\| pool \| 0 \| {NUM} \| 1\.00 \|", rf"^\| pca \| 1 \| {NUM} \| {NUM} \|"]),
    "bench_trial_phases": ([], [rf"^one cam trial of the cpu preset \(1 epochs.*: {NUM} s$", rf"^figures per trial: {NUM} s",
                                rf"^one epoch \+ evaluation: {NUM} s channels_last"]),
    "bench_tune_overhead": ([], [rf"^parent run \w+: 2 trials trained", rf"^\s+wall / sum\(train\)\s+0\.75$"]),
}


def test_every_benchmark_has_a_smoke_entry():
    assert sorted(p.stem for p in BENCH.glob("bench_*.py")) == sorted({k.split()[0] for k in EXPECTED})


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_benchmark_smoke(name: str, tmp_path: Path):
    extra, patterns = EXPECTED[name]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "FER_ORCH_HOME": str(tmp_path / "home"), "OMP_NUM_THREADS": "1",
           "MLFLOW_TRACKING_URI": ""}
    env.pop("MLFLOW_TRACKING_URI")
    script = BENCH / f"{name.split()[0]}.py"
    proc = subprocess.run([sys.executable, str(script), *(extra or ["--smoke"])], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=240)
    out = proc.stdout
    assert proc.returncode == 0, f"{name} --smoke failed:\n{out[-3000:]}\n{proc.stderr[-3000:]}"
    lines = out.splitlines()
    for pat in patterns:
        assert any(re.search(pat, line) for line in lines), f"{name}: no line matches {pat!r} in:\n{out}"
    if "--json" in extra:  # what the grid's planning reads: img/s per preset, dataset and batch
        rows = json.loads((tmp_path / extra[extra.index("--json") + 1]).read_text())["rows"]
        assert {(r["dataset"], r["au"]) for r in rows} == {(d, a) for d in ("rafdb", "affectnet") for a in (False, True)}
        assert all(r["img_per_s"] > 0 and r["gflop_per_img"] > 0 and r["preset_gflop_per_img"] > 100 for r in rows)
        assert {r["preset_batch"] for r in rows} == {32, 224}


@pytest.mark.slow
def test_gpu_check_script_runs_its_cpu_smoke_path(tmp_path):
    """scripts/gpu_check.sh without a GPU: the same steps, tiny, and one JSON of the numbers."""
    env = {**os.environ, "GPU_CHECK_SMOKE": "1", "PYTHON": sys.executable, "FER_ORCH_HOME": str(tmp_path / "home")}
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh"), str(tmp_path / "gc.json")], env=env,
                          capture_output=True, text=True, timeout=480)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = json.loads((tmp_path / "gc.json").read_text())
    assert doc["smoke"] is True and len(doc["rows"]) == 4 and doc["seconds"] < 480
    assert {r["preset_batch"] for r in doc["rows"]} == {32, 224}
    assert doc["trial"]["epoch_seconds"] > 0 and 0 <= doc["trial"]["val_cl"] <= 100
