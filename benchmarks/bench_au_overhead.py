"""Time per training step with and without the AU alignment loss: same model, same batch, one run.

Paper 002 reports 79 s vs 107 s per RAF-DB epoch (a 35 % overhead); our target is <= 5 %.
Steps with and without AU are interleaved (ABAB...) so that load on a shared machine
hits both alike; the ratio uses the fastest step of each (the least disturbed, as
``timeit`` does), the median ratio is printed beside it. On a loaded machine both swing by
+-10 %, so the last column times the AU term alone (forward + backward of Eq. 1-3 on the
step's features) as a share of the step without AU: the overhead the loss itself adds. On CUDA (when present) it
also reports images/s of ResNet50 at 224 px.

    .venv/bin/python benchmarks/bench_au_overhead.py [--quick] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from fer_models.config import DataConfig, TrainConfig
from fer_models.losses import au_alignment_loss
from fer_models.methods import build_model


def _step(model, opt, batch, au: bool, layers, device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    out = model(batch["image"], labels=batch["label"])
    loss = model.classification_loss(out, batch)
    if au:
        loss = loss + au_alignment_loss(out.features, batch["au_map"], batch["au_valid"], layers)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t


def bench(method, backbone, size, batch_size, reps, device, layers=(5,), amp=False):
    torch.manual_seed(0)
    cfg = TrainConfig(method=method, backbone=backbone, data=DataConfig(image_size=size, map_size=32))
    model = build_model(cfg).to(device).train()
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    batch = {
        "image": torch.randn(batch_size, 3, size, size, device=device),
        "label": torch.randint(0, 7, (batch_size,), device=device),
        "au_map": torch.rand(batch_size, 1, 32, 32, device=device),
        "au_valid": torch.ones(batch_size, dtype=torch.bool, device=device),
    }
    ctx = torch.autocast("cuda", dtype=torch.bfloat16) if amp and device.type == "cuda" else torch.autocast("cpu", enabled=False)
    times = {False: [], True: []}
    with ctx:
        for au in (False, True, False, True):  # warm-up
            _step(model, opt, batch, au, layers, device)
        for _ in range(reps):
            for au in (False, True):
                times[au].append(_step(model, opt, batch, au, layers, device))
    # the AU term on its own (forward + backward of Eq. 1-3 on the step's features): robust to load
    with ctx:
        feats = {l: f.detach().requires_grad_(True) for l, f in model(batch["image"]).features.items()}
    iso = []
    for _ in range(3 * reps):
        t = time.perf_counter()
        au_alignment_loss(feats, batch["au_map"], batch["au_valid"], layers).backward()
        if device.type == "cuda":
            torch.cuda.synchronize()
        iso.append(time.perf_counter() - t)
    return (min(times[False]), min(times[True]),
            statistics.median(times[False]), statistics.median(times[True]), min(iso))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer repetitions")
    p.add_argument("--smoke", action="store_true", help="tiny sizes: checks the script runs (the test suite runs it), measures nothing")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(1)
    reps = 5 if args.quick else 15
    cases = [
        ("cam", "resnet-tiny", 48, 32, (5,)),
        ("cam", "resnet-tiny", 48, 32, (1, 2, 3, 4, 5)),
        ("tscam", "vit-tiny-small", 48, 32, (5,)),
        ("cam", "resnet50", 112, 8, (5,)),
    ]
    if args.smoke:
        reps, cases = 1, [("cam", "resnet-tiny", 32, 4, (5,))]
    elif device.type == "cuda":
        cases = [("cam", "resnet50", 224, 64, (5,)), ("cam", "resnet50", 224, 64, (1, 2, 3, 4, 5)),
                 ("tscam", "deit-small", 224, 64, (5,))] + cases
    print(f"device: {device} ({torch.cuda.get_device_name() if device.type == 'cuda' else f'{torch.get_num_threads()} thread'})")
    print(f"{'method':<7} {'backbone':<15} {'px':>4} {'batch':>5} {'layers':<10} {'w/o AU ms':>10} {'w/ AU ms':>9} "
          f"{'ratio':>6} {'overhead':>8} {'median ratio':>12} {'img/s w/o':>9} {'img/s w/':>8} {'AU term ms':>10} {'AU share':>8}")
    for method, backbone, size, bs, layers in cases:
        off, on, moff, mon, iso = bench(method, backbone, size, bs, reps, device, layers, amp=device.type == "cuda")
        lay = "+".join(str(l) for l in layers)
        print(f"{method:<7} {backbone:<15} {size:>4} {bs:>5} {lay:<10} {off * 1e3:>10.1f} {on * 1e3:>9.1f} "
              f"{on / off:>6.3f} {100 * (on / off - 1):>7.1f}% {mon / moff:>12.3f} {bs / off:>9.0f} {bs / on:>8.0f} "
              f"{iso * 1e3:>10.2f} {100 * iso / off:>7.2f}%",
              flush=True)
    print("paper 002 (RAF-DB, ResNet50, GPU): 107 s / 79 s per epoch = 1.354 (35 % overhead); target <= 1.05")


if __name__ == "__main__":
    main()
