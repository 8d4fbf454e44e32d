"""Tune overhead on the embedded CPU preset: grid wall time / sum of trial training times.

    .venv/bin/python benchmarks/bench_tune_overhead.py                  # runs a fresh grid
    .venv/bin/python benchmarks/bench_tune_overhead.py --methods cam,gradcam --epochs 1
    .venv/bin/python benchmarks/bench_tune_overhead.py --from-experiment fer-orch   # no training

The grid is timed as a whole (``run_grid``: Ray start, preprocessing, Tune scheduling,
MLflow logging, artifacts); each trial's own ``train()`` time is the ``train_seconds``
metric its run logs. With S concurrent slots (CPUs / CPUs per trial) a perfect scheduler
would take sum/S, so two ratios are printed side by side:

- ``wall / sum(train)``: the plain ratio asked for (below 1 thanks to concurrency);
- ``wall * S / sum(train)``: the overhead factor (1.0 = no overhead at all).
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def measure(experiment: str, uri: str | None, parent_id: str | None = None) -> dict:
    from orchestrator import tracking

    c = tracking.client(uri)
    exp = c.get_experiment_by_name(experiment)
    if exp is None:
        sys.exit(f"no experiment '{experiment}' in {tracking.resolve_uri(uri)}")
    if parent_id is None:
        parents = c.search_runs([exp.experiment_id], f"tags.`{tracking.KIND_TAG}` = 'grid'",
                                order_by=["attributes.start_time DESC"], max_results=50)
        parents = [p for p in parents if "wall_seconds" in p.data.metrics and p.data.metrics.get("trials_trained", 0) > 0]
        if not parents:
            sys.exit(f"experiment '{experiment}' has no finished grid invocation that trained something")
        parent = parents[0]
    else:
        parent = c.get_run(parent_id)
    kids = c.search_runs([exp.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'", max_results=5000)
    train = [k.data.metrics["train_seconds"] for k in kids if "train_seconds" in k.data.metrics]
    return {"parent": parent.info.run_id, "wall": parent.data.metrics["wall_seconds"], "train": train}


def smoke_invocation(home: str) -> tuple[str, str]:
    """A finished invocation of two trials logged the way the grid logs one (parent run with
    ``wall_seconds`` / ``trials_trained``, child runs with ``train_seconds``), for ``--smoke``:
    the measuring and printing code runs in seconds, without Ray or training."""
    from orchestrator import tracking

    uri = f"sqlite:///{home}/mlflow.db"
    exp = tracking.ensure_experiment("bench-smoke", uri)
    parent = tracking.create_grid_run(exp, "smoke", {}, uri)
    for i, seconds in enumerate((3.0, 5.0)):
        run = tracking.TrialRun(uri, exp, parent, f"trial-{i}", {"method": "cam"})
        run.log_metrics({"train_seconds": seconds})
        run.end("FINISHED")
    c = tracking.client(uri)
    c.log_metric(parent, "wall_seconds", 6.0)
    c.log_metric(parent, "trials_trained", 2.0)
    c.set_terminated(parent, "FINISHED")
    return "bench-smoke", uri


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--from-experiment", help="measure an invocation already in MLflow instead of running one")
    ap.add_argument("--tracking-uri")
    ap.add_argument("--methods", help="subset of methods (default: all 11)")
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--ablations", action="store_true", help="also run the λ and layer ablations")
    ap.add_argument("--smoke", action="store_true",
                    help="measure a two-trial invocation logged here (no Ray, no training): checks the script")
    args = ap.parse_args()
    if args.smoke:
        import tempfile

        args.from_experiment, args.tracking_uri = smoke_invocation(tempfile.mkdtemp(prefix="bench_tune_"))
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    import ray

    from orchestrator import presets
    from orchestrator.options import parse_list

    if args.from_experiment:
        m = measure(args.from_experiment, args.tracking_uri)
        slots = None
    else:
        from orchestrator.tuning import run_grid

        changes = {"experiment": f"bench-overhead-{int(time.time())}", "tracking_uri": args.tracking_uri}
        if args.methods:
            changes["methods"] = parse_list(args.methods)
        if args.epochs:
            changes["base"] = {"epochs": args.epochs}
        g = presets.get("cpu", **changes)
        studies = ("lambda", "grid", "layers") if args.ablations else ("grid",)
        out = run_grid(g, studies=studies, resume=False)
        m = measure(g.experiment, args.tracking_uri, out.parent_run_id)
        slots = int(ray.cluster_resources().get("CPU", 1) // g.resources.cpus) if ray.is_initialized() else None
    if slots is None:
        slots = max(1, os.cpu_count() or 1)
    total = sum(m["train"])
    print(f"parent run {m['parent']}: {len(m['train'])} trials trained, {slots} concurrent slots")
    print(f"  grid wall time            {m['wall']:8.1f} s")
    print(f"  sum of trial train()      {total:8.1f} s   (mean {total / max(1, len(m['train'])):.1f} s/trial)")
    print(f"  wall / sum(train)         {m['wall'] / total:8.2f}")
    print(f"  wall x slots / sum(train) {m['wall'] * slots / total:8.2f}   (1.00 = no orchestration overhead)")


if __name__ == "__main__":
    main()
