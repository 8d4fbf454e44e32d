"""CPU training-step choices of the cpu preset, each against the alternative, side by side.

- The optimiser: AdamW with PyTorch's fused kernel (``fer_models.train.make_optimizer``)
  against the per-parameter loop (``fused=False, foreach=False``), in the CPU-preset CAM step.
- APViT's IR units with ``nn.PReLU`` against the same activation written as two ReLUs
  (``relu(x) - a * relu(-x)``): an op profile of single runs suggested PReLU's CPU kernels
  were slow on channels_last maps; run ABAB, they differ by less than the run-to-run noise
  (ratios 0.94-1.07 over four runs), so the model keeps nn.PReLU.

One thread, the CPU preset's batch (32 x 3 x 32 x 32, channels_last) with the AU loss at
layer 5; the two variants alternate (ABAB) after a warm-up, and the fastest and the median
step of each are printed with their ratio.

    .venv/bin/python benchmarks/bench_cpu_step.py [--steps 30]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F


class TwoReLU(torch.nn.PReLU):
    """PReLU as ``relu(x) - a * relu(-x)`` (same forward values)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x) - self.weight.view(1, -1, 1, 1) * F.relu(-x)


def make_step(method: str, *, two_relu: bool = False, fused: bool = True):
    """One training step of the CPU preset's ``method`` on a fixed random batch."""
    from fer_models.losses import total_loss
    from fer_models.methods import build_model
    from orchestrator import presets

    cfg = presets.get("cpu").train_config(method, "synthetic-rafdb", au=True, seed=0)
    torch.manual_seed(0)
    model = build_model(cfg, 7)
    if two_relu:  # every PReLU as two ReLUs, same weights
        for parent in list(model.modules()):
            for name, child in list(parent.named_children()):
                if type(child) is torch.nn.PReLU:
                    alt = TwoReLU(child.num_parameters)
                    alt.load_state_dict(child.state_dict())
                    setattr(parent, name, alt)
    model = model.to(memory_format=torch.channels_last).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=fused, foreach=None if fused else False)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(32, 3, 32, 32, generator=g).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 7, (32,), generator=g)
    au = torch.rand(32, 1, 16, 16, generator=g)
    valid = torch.ones(32, dtype=torch.bool)

    def step() -> None:
        out = model(x, labels=y)
        loss, _ = total_loss(F.cross_entropy(out.logits, y), out.features, au, valid, (5,), 1.0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def compare(title: str, a, b, names: tuple[str, str], steps: int) -> None:
    for _ in range(5):
        a()
        b()
    times: dict[str, list[float]] = {names[0]: [], names[1]: []}
    for _ in range(steps):
        for name, fn in zip(names, (a, b)):
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    (na, ta), (nb, tb) = times.items()
    print(f"{title}\n  {na:>12}: fastest {min(ta) * 1e3:6.1f} ms, median {statistics.median(ta) * 1e3:6.1f} ms"
          f"\n  {nb:>12}: fastest {min(tb) * 1e3:6.1f} ms, median {statistics.median(tb) * 1e3:6.1f} ms"
          f"\n  ratio {na}/{nb}: {min(ta) / min(tb):.2f} (fastest), "
          f"{statistics.median(ta) / statistics.median(tb):.2f} (median)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: checks the script runs (the test suite runs it), measures nothing")
    args = ap.parse_args()
    if args.smoke:
        args.steps = 1
    torch.set_num_threads(1)
    compare("CAM step (CPU preset): AdamW", make_step("cam"), make_step("cam", fused=False),
            ("fused", "loop"), args.steps)
    compare("APViT step (CPU preset): IR units' activation", make_step("apvit"), make_step("apvit", two_relu=True),
            ("nn.PReLU", "two ReLUs"), args.steps)


if __name__ == "__main__":
    main()
