"""Training throughput on one GPU: ResNet50 CAM at 224 px, batch 224, bf16, channels_last.

    .venv/bin/python benchmarks/bench_gpu_step.py [--steps 20] [--batch 224] [--compile]

The trial's own code end to end: a synthetic cache of random faces at 224 px (map 28 px) read
by the real loader (``build_loaders``: uint8 gather into pinned memory, prefetch threads,
``non_blocking`` copy, kornia augmentation and normalisation on the GPU) feeding
``fer_models.train.train_epoch`` (autocast bf16, channels_last, SGD, cosine schedule, the AU
alignment loss of Eq. 3). Rows: without the AU loss, with it at layer 5, with it at layers
5+4+3+2+1; columns: img/s over ``--steps`` steps after a warm-up, peak GPU memory, the ratio
to the row without AU, the ratio to paper 002's own code (155 img/s w/o AU, 115 w/ AU on
RAF-DB), and the same step on one fixed batch already on the GPU ("model only"), so the
loader's cost is the difference; "syncs/step" counts the blocking calls PyTorch makes in a
step (``torch.cuda.set_sync_debug_mode``), 0 when the CPU never waits for the GPU. Then the
device side of the loader alone (uint8 -> float, augmentation, normalisation) for the CPU
recipe and paper 002's released recipe (256 -> 224 px). ``--compile`` adds a row with
``TrainConfig.compile`` (the layer-5 AU row; compilation time included in its seconds).
Targets: >= 3,000 img/s with the AU loss on one H100-class GPU; the AU term
<= 3 % of step time at layer 5. Without a GPU it says so and exits 0.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import itertools
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

PAPER_IMG_S = {False: 155.0, True: 115.0}  # paper 002's code on RAF-DB: w/o AU, w/ AU


def _make_cache(root: Path, rows: int, size: int, **kw):
    spec = importlib.util.spec_from_file_location("bench_loader", Path(__file__).with_name("bench_loader.py"))
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod.make_cache(root, rows, size, **kw)


def _host_syncs(fn, cuda: bool) -> int:
    """How many blocking calls PyTorch makes while ``fn()`` runs (``set_sync_debug_mode``
    warns on each); the first three are printed with where they come from."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if cuda:
            torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            if cuda:
                torch.cuda.set_sync_debug_mode("default")
    syncs = [w for w in caught if "synchroniz" in str(w.message)]
    for w in syncs[:3]:
        print(f"    host sync: {w.filename}:{w.lineno}: {str(w.message)[:80]}")
    return len(syncs)


def _run(cfg, loaders, steps: int, fixed: bool) -> tuple[float, float, float, tuple]:
    """img/s and peak GiB of ``steps`` training steps (after 3 warm-up steps), the host
    syncs per step of 5 more steps (``torch.cuda.set_sync_debug_mode``: each blocking call
    PyTorch makes, e.g. ``.item()`` or a copy from pageable memory, is a warning), and the
    trained (model, optimizer, scheduler, scaler)."""
    from fer_models.methods import build_model
    from fer_models.train import amp_settings, compiled_forward, make_optimizer, make_scheduler, train_epoch

    device = torch.device(cfg.device)
    cuda = device.type == "cuda"
    torch.manual_seed(0)
    model = build_model(cfg, loaders.num_classes).to(device).to(memory_format=torch.channels_last)
    opt = make_optimizer(cfg, model)
    sched = make_scheduler(cfg, opt, steps + 3)
    use_amp, dtype = amp_settings(cfg, device)
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and dtype == torch.float16)
    forward = compiled_forward(model, cfg)
    torch.backends.cudnn.benchmark = True
    if fixed:
        one = next(iter(loaders.train))
        batches = lambda n: itertools.repeat(one, n)  # noqa: E731
    else:
        batches = lambda n: itertools.islice(itertools.chain.from_iterable(itertools.repeat(loaders.train)), n)  # noqa: E731
    train_epoch(model, batches(3), opt, sched, scaler, cfg, device, forward=forward)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    sums, n = train_epoch(model, batches(steps), opt, sched, scaler, cfg, device, forward=forward)
    sums.tolist()  # the one read: waits for the last step
    seconds = time.perf_counter() - t
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")
    syncs = _host_syncs(lambda: train_epoch(model, batches(5), opt, sched, scaler, cfg, device, forward=forward),
                        cuda)
    return n * cfg.batch_size / seconds, peak, syncs / 5, (model, opt, sched, scaler)


def _transform_rate(steps, stored: int, size: int, map_size: int, batch: int, device: str) -> tuple[float, float]:
    """img/s of the device side alone (uint8 -> float, ``steps``, normalisation) on a resident
    batch, and its host syncs per batch."""
    from fer_models.data.augment import BatchTransform

    t = BatchTransform(steps, stored_size=stored, image_size=size, map_size=map_size)
    g = torch.Generator().manual_seed(0)
    raw = {"image": torch.randint(0, 256, (batch, stored, stored, 3), generator=g, dtype=torch.uint8),
           "au_map": torch.rand(batch, map_size, map_size, generator=g),
           "gt_au_map": torch.rand(batch, map_size, map_size, generator=g),
           "landmarks": stored * torch.rand(batch, 68, 2, generator=g)}
    raw = {k: v.to(device) for k, v in raw.items()}
    cuda = device == "cuda"
    for _ in range(3):
        t(raw)
    if cuda:
        torch.cuda.synchronize()
    n = 10
    start = time.perf_counter()
    for _ in range(n):
        t(raw)
    if cuda:
        torch.cuda.synchronize()
    rate = n * batch / (time.perf_counter() - start)
    return rate, _host_syncs(lambda: [t(raw) for _ in range(3)], cuda) / 3


def cpu_compile(reps: int = 7, steps: int = 5) -> None:
    """``TrainConfig.compile`` on the CPU preset's step (resnet-tiny CAM, 32 px, batch 32, AU at
    layer 5, AdamW, 1 thread): eager and compiled steps interleaved on one fixed batch."""
    from fer_models.config import DataConfig, TrainConfig
    from fer_models.methods import build_model
    from fer_models.train import compiled_forward, make_optimizer, make_scheduler, train_epoch

    torch.set_num_threads(1)
    device = torch.device("cpu")
    g = torch.Generator().manual_seed(0)
    batch = {"image": torch.randn(32, 3, 32, 32, generator=g), "label": torch.randint(0, 7, (32,), generator=g),
             "au_map": torch.rand(32, 1, 16, 16, generator=g), "au_valid": torch.ones(32, dtype=torch.bool)}
    runs = {}
    for comp in (False, True):
        cfg = TrainConfig(method="cam", backbone="resnet-tiny", batch_size=32, device="cpu", amp=False,
                          channels_last=False, optimizer="adamw", lr=0.003, compile=comp,
                          data=DataConfig(image_size=32, map_size=16, num_workers=0))
        torch.manual_seed(0)
        model = build_model(cfg, 7)
        opt = make_optimizer(cfg, model)
        sched = make_scheduler(cfg, opt, 1000)
        scaler = torch.amp.GradScaler("cuda", enabled=False)
        forward = compiled_forward(model, cfg)
        t = time.perf_counter()
        train_epoch(model, [batch] * 2, opt, sched, scaler, cfg, device, forward=forward)
        runs[comp] = (model, opt, sched, scaler, cfg, forward, time.perf_counter() - t, [])
    for _ in range(reps):
        for comp, (model, opt, sched, scaler, cfg, forward, _, times) in runs.items():
            t = time.perf_counter()
            train_epoch(model, [batch] * steps, opt, sched, scaler, cfg, device, forward=forward)
            times.append((time.perf_counter() - t) / steps)
    eager, comp = runs[False][-1], runs[True][-1]
    print(f"CPU, resnet-tiny CAM step (32 px, batch 32, AU layer 5, 1 thread): eager {min(eager) * 1e3:.1f} ms, "
          f"compiled {min(comp) * 1e3:.1f} ms (fastest of {reps}x{steps} interleaved; medians "
          f"{sorted(eager)[reps // 2] * 1e3:.1f} / {sorted(comp)[reps // 2] * 1e3:.1f} ms): "
          f"compiled / eager = {min(comp) / min(eager):.2f}; first two compiled steps took {runs[True][-2]:.0f} s "
          f"(compilation) against {runs[False][-2]:.1f} s")


# ------------------------------------------------------------------------------------------
# --preset: the trial a grid preset runs (its config, network, data path and batch sizes)
# ------------------------------------------------------------------------------------------
#: dense bf16 tensor-core peak, TFLOP/s, by a substring of the device name (vendor data sheets)
BF16_PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10": 125.0,
                    "V100": 125.0, "RTX 4090": 165.0, "A6000": 155.0}


def device_peak(name: str) -> float | None:
    """The bf16 peak (TFLOP/s) of the device called ``name``; None when not in the table (CPU)."""
    return next((v for k, v in BF16_PEAK_TFLOPS.items() if k.lower() in name.lower()), None)


def _shrink_step(step: str, size: int, stored: int) -> str:
    """An augmentation step with the preset's sizes (``stored`` -> ``size`` px) made 40 -> 32."""
    name, _, arg = step.partition(":")
    parts = ["32" if p == str(size) else "40" if p == str(stored) else p for p in arg.split(",")]
    return f"{name}:{','.join(parts)}" if arg else step


def preset_config(preset: str, dataset: str, au: bool, cpu: bool):
    """The grid's own trial config (``GridConfig.train_config``) of CAM on ``dataset`` with the
    preset's AU loss (its default λ, layer 5); on a CPU shrunk to a tiny run (resnet-tiny,
    40 -> 32 px, batch 4) with the same augmentation steps, so the script runs everywhere.
    The weights are random (no download; the speed is the pretrained network's)."""
    import dataclasses

    from orchestrator import presets

    g = presets.get(preset)
    cfg = g.train_config("cam", dataset, au=au, lam=g.default_lam, layers=[5])
    # random weights: the speed is the pretrained network's, and nothing is downloaded
    cfg = dataclasses.replace(cfg, pretrained=False, weights_tag=None)
    if not cpu:
        return cfg
    steps = tuple(_shrink_step(s, cfg.data.image_size, cfg.data.stored_size or cfg.data.image_size)
                  for s in cfg.data.augment)
    data = dataclasses.replace(cfg.data, image_size=32, stored_size=40, map_size=8, augment=steps,
                               eval_steps=("resize:32",), num_workers=1)
    return dataclasses.replace(cfg, backbone="resnet-tiny", pretrained=False, batch_size=4, device="cpu", data=data)


def _val_and_checkpoint(state, loaders, cfg, work: Path) -> tuple[float, float, float]:
    """(validation img/s, seconds the training thread spends on the epoch's checkpoint, seconds
    of the background write): a first validation pass renders the released reference maps, the
    second is timed with the checkpoint written alongside it, as the trainer does."""
    from fer_models.checkpoints import CheckpointWriter
    from fer_models.metrics import ReferenceMaps, eval_options, evaluate

    model, opt, sched, scaler = state
    device = torch.device(cfg.device)
    kw = dict(num_classes=loaders.num_classes, device=device, ref_maps=ReferenceMaps(), **eval_options(cfg))
    evaluate(model, loaders.val, **kw)
    (work / "ckpt").mkdir(parents=True, exist_ok=True)
    writer = CheckpointWriter(work / "ckpt")
    t = time.perf_counter()
    writer.start(1, model, opt, sched, scaler)
    evaluate(model, loaders.val, **kw)
    if device.type == "cuda":
        torch.cuda.synchronize()
    val_s = time.perf_counter() - t
    writer.finish(1, {"epoch": 1, "best": {"epoch": 1, "cl": 0.0}, "history": []}, True, model)
    write_s = time.perf_counter() - t
    writer.close()
    return len(loaders.val.dataset) / val_s, writer.seconds, write_s


def _row_line(row: dict) -> str:
    mfu = f"{100 * row['mfu']:5.1f}%" if row["mfu"] is not None else "   n/a"
    peak = f"{row['peak_gib']:8.1f}" if row["peak_gib"] is not None else f"{'n/a':>8s}"
    return (f"{row['dataset']:10s} {row['batch']:5d} {'on' if row['au'] else 'off':>3s} {row['img_per_s']:8.0f} "
            f"{row['gflop_per_img']:9.2f} {row['tflop_per_s']:8.3f} {mfu} {peak} {row['estimated_peak_gib']:7.1f} "
            f"{row['val_img_per_s']:9.0f} {row['checkpoint_s_per_epoch']:7.3f} {row['preset_gflop_per_img']:9.1f}")


def preset_rows(preset: str, steps: int, work: Path) -> dict:
    """One row per dataset of the preset (its batch size) and AU off / on; see the module
    docstring. On a CPU the timed run is tiny; the GFLOP of the preset's own network
    (counted on the meta device) is in the last column either way."""
    import dataclasses

    from fer_models.cost import step_cost
    from fer_models.data import dataset as dsmod
    from fer_models.data.dataset import build_loaders

    cuda = torch.cuda.is_available()
    name = torch.cuda.get_device_name() if cuda else "CPU (tiny run: resnet-tiny, 40 -> 32 px, batch 4)"
    peak = device_peak(name) if cuda else None
    dsmod.MAX_IN_MEMORY_BYTES = 0  # memory-mapped, as a dataset larger than RAM is read
    out = {"device": name, "bf16_peak_tflops": peak, "preset": preset, "rows": []}
    print(f"{name}; preset {preset} (CAM, the grid's trial config); bf16 peak {peak or 'n/a'} TFLOP/s; "
          f"memory-mapped cache; {steps} timed steps a row")
    print(f"{'dataset':10s} {'batch':>5s} {'AU':>3s} {'img/s':>8s} {'GFLOP/img':>9s} {'TFLOP/s':>8s} {'MFU':>6s} "
          f"{'peak GiB':>8s} {'est GiB':>7s} {'val img/s':>9s} {'ckpt s':>7s} {'preset GFLOP':>9s}")
    for dataset in ("rafdb", "affectnet"):
        cache_dir = None
        for au in (False, True):
            cfg = preset_config(preset, dataset, au, cpu=not cuda)
            b, stored = cfg.batch_size, cfg.data.stored_size or cfg.data.image_size
            if cache_dir is None:
                cache_dir = _make_cache(work / dataset, b * 8, stored, val_rows=b * 4, map_size=cfg.data.map_size,
                                        shard_rows=max(4, b * 2))
            data = dataclasses.replace(cfg.data, dataset="bench")
            cfg = dataclasses.replace(cfg, device="cuda" if cuda else "cpu", data=data)
            loaders = build_loaders(data, b, 0, cache_dir=cache_dir, device=cfg.device, channels_last=True,
                                    progress=False)
            rate, mem, _, state = _run(cfg, loaders, steps, fixed=False)
            val, ck_thread, ck_total = _val_and_checkpoint(state, loaders, cfg, work / dataset)
            gflop = step_cost(cfg, loaders.num_classes)["gflop_per_img"]
            full = step_cost(preset_config(preset, dataset, au, cpu=False), loaders.num_classes)
            row = {"preset": preset, "dataset": dataset, "batch": b, "au": au, "img_per_s": rate,
                   "preset_batch": preset_config(preset, dataset, au, cpu=False).batch_size,
                   "gflop_per_img": gflop, "tflop_per_s": rate * gflop / 1e3,
                   "mfu": rate * gflop / 1e3 / peak if peak else None, "peak_gib": mem if cuda else None,
                   "estimated_peak_gib": full["peak_gib"], "preset_gflop_per_img": full["gflop_per_img"],
                   "val_img_per_s": val, "checkpoint_s_per_epoch": ck_thread, "checkpoint_write_s": ck_total,
                   "backbone": cfg.backbone, "image_size": cfg.data.image_size, "stored_size": stored,
                   "steps": steps}
            out["rows"].append(row)
            print(_row_line(row), flush=True)
            del state, loaders
            if cuda:
                torch.cuda.empty_cache()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=224)
    ap.add_argument("--workers", type=int, default=2, help="loader threads")
    ap.add_argument("--compile", action="store_true", help="also measure TrainConfig.compile")
    ap.add_argument("--smoke-cpu", "--smoke", dest="smoke_cpu", action="store_true",
                    help="run the same code on the CPU with a tiny model at 32 px (checks the script, measures nothing)")
    ap.add_argument("--preset", choices=("paper", "paper-released"),
                    help="time the CAM trial of this grid preset at RAF-DB's and AffectNet's batch sizes")
    ap.add_argument("--json", type=Path, help="also write the --preset numbers to this JSON file")
    args = ap.parse_args()
    if args.preset:
        torch.set_num_threads(1 if not torch.cuda.is_available() else torch.get_num_threads())
        steps = args.steps if args.steps != 20 else (100 if torch.cuda.is_available() else 2)
        work = Path(tempfile.mkdtemp(prefix="bench_gpu_step_"))
        try:
            out = preset_rows(args.preset, steps, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        if args.json:
            args.json.write_text(json.dumps(out, indent=2))
            print(f"wrote {args.json}")
        return
    if args.smoke_cpu:
        device, size, backbone, map_size = "cpu", 32, "resnet-tiny", 8
        args.batch, args.steps = 8, 2
        torch.set_num_threads(1)
    elif torch.cuda.is_available():
        device, size, backbone, map_size = "cuda", 224, "resnet50", 28
    else:
        print("bench_gpu_step: no CUDA GPU on this machine; nothing measured (run it where a GPU is).")
        if args.compile:
            cpu_compile()
        return
    from fer_models.config import DataConfig, TrainConfig
    from fer_models.data.dataset import build_loaders

    work = Path(tempfile.mkdtemp(prefix="bench_gpu_step_"))
    try:
        cache_dir = _make_cache(work, args.batch * 8, size)
        data = DataConfig(dataset="bench", image_size=size, map_size=map_size, num_workers=args.workers, prefetch=2)
        loaders = build_loaders(data, args.batch, 0, cache_dir=cache_dir, device=device, channels_last=True)
        name = torch.cuda.get_device_name() if device == "cuda" else "CPU smoke run"
        print(f"{name}, {backbone} CAM, {size} px, batch {args.batch}, bf16, channels_last, "
              f"augmentation {list(data.augment)} on the {device}, {args.workers} loader threads")
        rows = [("w/o AU", False, (5,)), ("w/ AU, layer 5", True, (5,)), ("w/ AU, 5+4+3+2+1", True, (5, 4, 3, 2, 1))]
        print(f"{'':18s} {'img/s':>7s} {'model only':>10s} {'peak GiB':>8s} {'vs w/o AU':>9s} {'vs paper':>8s} "
              f"{'syncs/step':>10s}")
        rates = {}
        for name, au, layers in rows:
            cfg = TrainConfig(method="cam", backbone=backbone, au=au, lam=1.0, layers=layers,
                              batch_size=args.batch, device=device, amp=True, channels_last=True, data=data)
            rate, peak, syncs, _ = _run(cfg, loaders, args.steps, fixed=False)
            model_only = _run(cfg, loaders, args.steps, fixed=True)[0]
            rates[name] = rate
            print(f"{name:18s} {rate:7.0f} {model_only:10.0f} {peak:8.1f} {rate / rates['w/o AU']:9.3f} "
                  f"{rate / PAPER_IMG_S[au]:7.1f}x {syncs:10.1f}", flush=True)
        from fer_models.data.steps import CPU_RECIPE, RELEASED_RECIPE

        for label, steps, stored in (("CPU recipe", CPU_RECIPE, size), ("paper 002 released recipe", RELEASED_RECIPE, 256)):
            if device == "cpu" and stored != size:
                continue  # the released recipe's sizes are fixed (256 -> 224)
            try:
                rate, syncs = _transform_rate(steps, stored, size if stored == size else 224, map_size, args.batch,
                                              device)
            except Exception as e:  # a diagnostic line: report and go on to the compile row
                print(f"device side alone ({label}) failed: {e!r}")
                continue
            print(f"device side alone ({label}, {stored} px stored): {rate:.0f} img/s, {syncs:.1f} syncs/batch",
                  flush=True)
        if args.compile:  # compiling takes minutes: the layer-5 AU row alone
            cfg = TrainConfig(method="cam", backbone=backbone, au=True, lam=1.0, layers=(5,), compile=True,
                              batch_size=args.batch, device=device, amp=True, channels_last=True, data=data)
            t = time.perf_counter()
            rate, peak, syncs, _ = _run(cfg, loaders, args.steps, fixed=False)
            print(f"TrainConfig.compile, w/ AU layer 5: {rate:.0f} img/s, {rate / rates['w/ AU, layer 5']:.3f}x "
                  f"eager, peak {peak:.1f} GiB, {syncs:.1f} syncs/step, {time.perf_counter() - t:.0f} s with "
                  f"compilation")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
