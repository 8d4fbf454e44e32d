"""Where the time of one CPU-preset trial goes, and the per-trial figures against a reference.

`make grid` with 3 seeds should fit in 10 minutes on 2 cores; this script times
the phases of one trial of the cpu preset (CAM w/ AU on synthetic-rafdb, after one warm-up
trial so imports are not counted): training epochs, the per-epoch validation and the test
evaluation (with maps), MLflow logging (params, per-epoch and final metrics, artifacts,
SQLite) and the artifact figures. It then writes the figures of the same evaluation with
the trial's :func:`fer_models.metrics.save_figures` and with a reference that lays every
figure out with ``tight_layout`` and draws the mean maps as one axes per class (what the
trial did before), interleaved ABAB, and prints the ratio of the fastest of each;
likewise one training epoch in channels_last (NHWC, the cpu preset's layout) vs NCHW.

    .venv/bin/python benchmarks/bench_trial_phases.py [--method cam] [--repeats 3]
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np


def reference_figures(result, out: Path) -> None:
    """The figures as the trial drew them before: tight_layout everywhere, k axes for k maps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fer_models.metrics import class_names

    names = class_names(result.confusion.shape[0])
    for mat in (result.confusion / np.maximum(result.confusion.sum(1, keepdims=True), 1), result.cosine_matrix):
        fig, ax = plt.subplots(figsize=(1.5 + 0.7 * mat.shape[1], 1 + 0.55 * mat.shape[0]))
        im = ax.imshow(mat, vmin=0, vmax=1)
        ax.set_xticks(range(mat.shape[1]), [str(i) for i in range(mat.shape[1])], rotation=45, ha="right")
        ax.set_yticks(range(mat.shape[0]), names)
        for (i, j), v in np.ndenumerate(mat):
            if np.isfinite(v):
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7)
        fig.colorbar(im, ax=ax, fraction=0.046)
        fig.tight_layout()
        fig.savefig(out / f"m{mat.shape[1]}.png", dpi=110)
        plt.close(fig)
    for key, maps in result.mean_maps.items():
        fig, axes = plt.subplots(1, maps.shape[0], figsize=(1.6 * maps.shape[0], 2.0), squeeze=False)
        for i, ax in enumerate(axes[0]):
            ax.imshow(maps[i], cmap="jet", vmin=0, vmax=1)
            ax.set_title(names[i], fontsize=8)
            ax.axis("off")
        fig.tight_layout()
        fig.savefig(out / f"{key}.png", dpi=110)
        plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--method", default="cam")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: checks the script runs (the test suite runs it), measures nothing" " (1 epoch, 48 faces)")
    args = ap.parse_args()
    import torch

    import fer_models.train as ft
    from fer_models.config import flatten, to_dict
    from fer_models.metrics import save_figures
    from orchestrator import presets, tracking

    torch.set_num_threads(1)
    cfg = presets.get("cpu").train_config(args.method, "synthetic-rafdb", au=True, lam=1.0, layers=[5], seed=0)
    if args.smoke:
        args.repeats = 1
        cfg = dataclasses.replace(cfg, epochs=1, faithfulness_n=2, faithfulness_steps=2, data=dataclasses.replace(
            cfg.data, options={**cfg.data.options, "n_train": 32, "n_test": 16}))
    home = Path(tempfile.mkdtemp())
    uri = f"sqlite:///{home / 'mlflow.db'}"
    exp = tracking.ensure_experiment("bench", uri)
    parent = tracking.create_grid_run(exp, "bench", {}, uri)
    evaluate, spent = ft.evaluate, {"eval": 0.0, "mlflow": 0.0}

    def timed_eval(*a, **k):
        t = time.perf_counter()
        try:
            return evaluate(*a, **k)
        finally:
            spent["eval"] += time.perf_counter() - t

    ft.evaluate = timed_eval
    for attempt in ("warm-up", "measured"):
        spent.update(eval=0.0, mlflow=0.0)
        t = time.perf_counter()
        run = tracking.TrialRun(uri, exp, parent, attempt, {"method": args.method})
        run.log_params(flatten(to_dict(cfg)))
        spent["mlflow"] += time.perf_counter() - t

        def on_epoch(epoch, metrics, run=run):
            t = time.perf_counter()
            run.log_metrics({k: float(v) for k, v in metrics.items()}, step=epoch)
            spent["mlflow"] += time.perf_counter() - t

        t = time.perf_counter()
        res = ft.train(cfg, Path(tempfile.mkdtemp()), on_epoch=on_epoch, progress=False)
        train_s = time.perf_counter() - t
        with tempfile.TemporaryDirectory() as d:
            t = time.perf_counter()
            tracking.write_trial_artifacts(res, cfg, Path(d))
            artifacts_s = time.perf_counter() - t
            t = time.perf_counter()
            run.log_metrics({f"test_{k}": v for k, v in res.test.metrics.items()})
            run.log_artifacts(Path(d))
            run.end("FINISHED")
            spent["mlflow"] += time.perf_counter() - t
    total = train_s + artifacts_s + spent["mlflow"]
    print(f"one {args.method} trial of the cpu preset ({cfg.epochs} epochs, imports excluded): {total:.2f} s")
    for name, s in (("training steps", train_s - spent["eval"] - spent["mlflow"]),
                    ("evaluation (val each epoch + test, with maps)", spent["eval"]),
                    ("artifacts (config, weights, figures, history)", artifacts_s),
                    ("MLflow logging (SQLite)", spent["mlflow"])):
        print(f"  {name:48s} {s:6.2f} s  {100 * s / total:5.1f} %")
    ours, ref = [], []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as d:
            t = time.perf_counter()
            save_figures(res.test, Path(d))
            ours.append(time.perf_counter() - t)
        with tempfile.TemporaryDirectory() as d:
            t = time.perf_counter()
            reference_figures(res.test, Path(d))
            ref.append(time.perf_counter() - t)
    print(f"figures per trial: {min(ours):.2f} s now vs {min(ref):.2f} s with tight_layout + one axes per map "
          f"(ratio {min(ours) / min(ref):.2f}, fastest of {args.repeats} interleaved)")
    # the training itself: one epoch in NHWC (the cpu preset's layout) against NCHW
    ft.evaluate = evaluate
    one = dataclasses.replace(cfg, epochs=1)
    times: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(args.repeats):
        for nhwc in (True, False):
            t = time.perf_counter()
            ft.train(dataclasses.replace(one, channels_last=nhwc), Path(tempfile.mkdtemp()), progress=False)
            times[nhwc].append(time.perf_counter() - t)
    print(f"one epoch + evaluation: {min(times[True]):.2f} s channels_last vs {min(times[False]):.2f} s NCHW "
          f"(ratio {min(times[True]) / min(times[False]):.2f}, fastest of {args.repeats} interleaved)")


if __name__ == "__main__":
    main()
