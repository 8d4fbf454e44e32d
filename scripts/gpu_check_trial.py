"""One epoch of the ``paper`` preset's CAM trial (AU loss at its default λ, layer 5) on
synthetic faces stored at 256 px and trained at 224 (``scripts/gpu_check.sh``): the trainer
itself (``fer_models.train.train``), with random weights (nothing is downloaded).

    python scripts/gpu_check_trial.py [--smoke] --json trial.json

``--smoke`` (and any machine without CUDA): resnet-tiny, 40 -> 32 px, 48 faces, batch 8.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--json", type=Path, required=True)
    args = ap.parse_args()
    from fer_models.train import train
    from orchestrator import presets

    smoke = args.smoke or not torch.cuda.is_available()
    g = presets.get("paper")
    cfg = g.train_config("cam", "synthetic-rafdb", au=True, lam=g.default_lam, layers=[5])
    cfg = dataclasses.replace(cfg, epochs=1, pretrained=False, weights_tag=None, faithfulness_n=0)
    options = {"image_size": 256, "n_train": 1400, "n_test": 350}
    if smoke:
        torch.set_num_threads(1)
        import importlib.util

        spec = importlib.util.spec_from_file_location(
            "bench_gpu_step", Path(__file__).resolve().parents[1] / "benchmarks" / "bench_gpu_step.py")
        bench = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(bench)
        steps = tuple(bench._shrink_step(s, cfg.data.image_size, cfg.data.stored_size) for s in cfg.data.augment)
        cfg = dataclasses.replace(cfg, backbone="resnet-tiny", batch_size=8, device="cpu", data=dataclasses.replace(
            cfg.data, image_size=32, stored_size=40, map_size=8, augment=steps, eval_steps=("resize:32",),
            num_workers=1))
        options = {"image_size": 40, "n_train": 48, "n_test": 16}
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, options={**cfg.data.options, **options}))
    t = time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        res = train(cfg, Path(d), progress=False)
    row = res.history[0]
    out = {"device": torch.cuda.get_device_name() if not smoke else "cpu (smoke)", "smoke": smoke,
           "backbone": cfg.backbone, "image_size": cfg.data.image_size, "stored_size": cfg.data.stored_size,
           "batch": cfg.batch_size, "epoch_seconds": row["epoch_seconds"], "train_seconds": res.seconds,
           "wall_seconds": time.perf_counter() - t, "val_cl": row["val_cl"], "train_loss": row["train_loss"],
           "test": {k: v for k, v in res.test.metrics.items() if isinstance(v, float)}}
    args.json.write_text(json.dumps(out, indent=2))
    print(f"one-epoch paper-preset trial ({cfg.backbone}, {cfg.data.stored_size} -> {cfg.data.image_size} px, "
          f"batch {cfg.batch_size}): epoch {row['epoch_seconds']:.1f} s, whole trial {res.seconds:.1f} s, "
          f"val CL {row['val_cl']:.1f}")


if __name__ == "__main__":
    main()
