"""The training checkpoint, written off the critical path.

A checkpoint of epoch ``e`` in ``run_dir`` is three files:

- ``weights-<e>.pt``: the model's ``state_dict``;
- ``optim-<e>.pt``: the optimiser, scheduler and grad-scaler states;
- ``checkpoint.pt``: a small record naming them (``model_file``, ``optim_file``) with the
  method, the epoch, the best epoch and its accuracy, the history and torch's RNG state.

``best.pt`` (a plain ``state_dict``) is a *hard link* to the best epoch's weights file, not a
second write of the weights; the trial hard-links the files into Tune's checkpoint folder
too. The two large files are written by one background thread while the epoch's
validation runs (neither the weights nor the optimiser state change during evaluation);
``checkpoint.pt`` is written after validation, once they are on disk, and only then are the
previous epoch's files deleted, so a run killed at any moment resumes from its last complete
checkpoint (at most ``checkpoint_every`` epochs back). :func:`load_checkpoint` also reads the
older single-file layout (``checkpoint.pt`` holding ``model`` and ``optimizer``).
"""

from __future__ import annotations

import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

from fer_models.torch_utils import load_state_file

CHECKPOINT = "checkpoint.pt"
BEST = "best.pt"
PARTS = ("weights-", "optim-")


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary name, then rename. A full disk makes torch's zip writer
    raise ``RuntimeError`` ("unexpected pos ..."), not ``OSError``: it is turned into the
    ``OSError(ENOSPC)`` it is, naming the file, when the folder's file system has no room
    left (any other ``RuntimeError`` stays a bug)."""
    import errno
    import shutil

    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        torch.save(obj, tmp)
    except RuntimeError:
        tmp.unlink(missing_ok=True)
        if shutil.disk_usage(path.parent).free >= 1 << 20:  # not a full disk: a bug, keep it
            raise
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)) from None
    os.replace(tmp, path)


def link_or_copy(src: Path, dst: Path) -> None:
    """``dst`` becomes a hard link to ``src`` (atomically replaced); a copy where the
    filesystem has no hard links."""
    tmp = dst.with_name(dst.name + ".lnk")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        import shutil

        shutil.copy2(src, tmp)
    os.replace(tmp, dst)


def checkpoint_files(run_dir: str | Path) -> list[Path]:
    """The files of ``run_dir``'s current checkpoint (what a copy of it must hold)."""
    run_dir = Path(run_dir)
    names = [CHECKPOINT, BEST] + sorted(p.name for p in run_dir.glob("*.pt") if p.name.startswith(PARTS))
    return [run_dir / n for n in names if (run_dir / n).is_file()]


def load_checkpoint(run_dir: str | Path, device: torch.device | str = "cpu", fix: str = "") -> dict[str, Any]:
    """``checkpoint.pt`` with ``model``, ``optimizer``, ``scheduler`` (and ``scaler``) filled
    in from the files it names."""
    run_dir = Path(run_dir)
    return fill_checkpoint(run_dir, load_state_file(run_dir / CHECKPOINT, device, what="checkpoint", fix=fix),
                           device, fix)


def is_checkpoint(state: Any) -> bool:
    """A fer-orch training checkpoint record (either layout)."""
    return (isinstance(state, dict) and {"epoch", "best", "history"} <= set(state)
            and ({"model", "optimizer", "scheduler"} <= set(state) or {"model_file", "optim_file"} <= set(state)))


def fill_checkpoint(run_dir: Path, state: dict[str, Any], device: torch.device | str, fix: str) -> dict[str, Any]:
    """``state`` (a ``checkpoint.pt`` record) with the weights and optimiser files it names read in."""
    if isinstance(state, dict) and "model_file" in state:
        state["model"] = load_state_file(run_dir / state["model_file"], device, what="checkpoint weights", fix=fix)
        state.update(load_state_file(run_dir / state["optim_file"], device, what="checkpoint optimiser", fix=fix))
    return state


class CheckpointWriter:
    """Writes the checkpoint of every ``every``-th epoch (and the last), but not sooner than
    ``minutes`` after the previous one (0: no time limit); see the module docstring."""

    def __init__(self, run_dir: Path, every: int = 1, minutes: float = 0.0):
        self.run_dir = Path(run_dir)
        self.every, self.minutes = max(1, int(every)), float(minutes)
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="fer-ckpt")
        self._pending: tuple[int, Future] | None = None
        self._last_write = time.monotonic()
        self.best_in_memory: dict[str, torch.Tensor] | None = None  # best weights no file holds yet
        self.seconds = 0.0  # time the training thread spent on checkpoints (waits included)

    def due(self, epoch: int, last: int) -> bool:
        if epoch == last:
            return True
        return epoch % self.every == 0 and time.monotonic() - self._last_write >= 60.0 * self.minutes

    def start(self, epoch: int, model: torch.nn.Module, opt: Any, sched: Any, scaler: Any) -> None:
        """Begin writing epoch ``epoch``'s weights and optimiser state in the background."""
        t = time.perf_counter()
        weights = model.state_dict()
        optim = {"optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "scaler": scaler.state_dict()}
        names = (f"weights-{epoch:04d}.pt", f"optim-{epoch:04d}.pt")

        def write() -> None:
            atomic_save(weights, self.run_dir / names[0])
            atomic_save(optim, self.run_dir / names[1])

        self._pending = (epoch, self._pool.submit(write))
        self.seconds += time.perf_counter() - t

    def finish(self, epoch: int, record: dict[str, Any], best: bool, model: torch.nn.Module) -> bool:
        """After validation: the small record, ``best.pt``, and the old files deleted; True
        when epoch ``epoch`` was written. A best epoch that is not written keeps its weights
        in memory (:meth:`close` writes them if no later best replaces them)."""
        t = time.perf_counter()
        try:
            if self._pending is None or self._pending[0] != epoch:
                if best:
                    self.best_in_memory = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
                return False
            self._pending[1].result()  # the weights and optimiser files are on disk
            self._pending = None
            weights, optim = f"weights-{epoch:04d}.pt", f"optim-{epoch:04d}.pt"
            atomic_save({**record, "model_file": weights, "optim_file": optim}, self.run_dir / CHECKPOINT)
            if best:
                link_or_copy(self.run_dir / weights, self.run_dir / BEST)
            elif self.best_in_memory is not None:  # the record names a best epoch no file held
                atomic_save(self.best_in_memory, self.run_dir / BEST)
            self.best_in_memory = None
            for p in self.run_dir.glob("*.pt"):
                if p.name.startswith(PARTS) and p.name not in (weights, optim):
                    p.unlink(missing_ok=True)
            self._last_write = time.monotonic()
            return True
        finally:
            self.seconds += time.perf_counter() - t

    def close(self) -> None:
        """Wait for a pending write; write best weights that only memory holds."""
        if self._pending is not None:
            self._pending[1].result()
            self._pending = None
        if self.best_in_memory is not None:
            atomic_save(self.best_in_memory, self.run_dir / BEST)
            self.best_in_memory = None
        self._pool.shutdown(wait=True)
