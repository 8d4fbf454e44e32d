"""Where fer-orch keeps what it makes: ``$FER_ORCH_HOME`` or ``./fer-orch-out``;
:func:`check_writable`, the one check that a folder can be written before any work."""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path

from fer_models.errors import PathError

#: the fix named when FER_ORCH_HOME itself is not writable
HOME_FIX = "set FER_ORCH_HOME to a writable folder (e.g. export FER_ORCH_HOME=$HOME/fer-orch-out)"


def home() -> Path:
    return Path(os.environ.get("FER_ORCH_HOME", Path.cwd() / "fer-orch-out")).resolve()


def cache_dir() -> Path:
    return home() / "cache"


def synthetic_dir() -> Path:
    return home() / "data"


def check_writable(path: str | Path, what: str, fix: str = "pass another path or make it writable") -> Path:
    """Create ``path`` (a folder) if needed and write a probe file in it: one sentence naming
    ``what``, the path and ``fix`` instead of an ``Errno`` traceback minutes later.

    A real write, not ``os.access``: the latter says yes to root on a read-only mount and
    knows nothing of full disks or a file standing where a folder must be.
    """
    p = Path(path).expanduser()
    probe = p / f".fer-orch-write-probe-{os.getpid()}"
    try:
        p.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        reason = "a file stands in the way of a folder" if e.errno in (errno.EEXIST, errno.ENOTDIR) \
            else (e.strerror or type(e).__name__)
        raise PathError(f"cannot write to {what} '{p}' ({reason}); {fix}") from None
    return p


def check_home() -> Path:
    """:func:`check_writable` of ``FER_ORCH_HOME``."""
    return check_writable(home(), "FER_ORCH_HOME", HOME_FIX)


class Busy(Exception):
    """:func:`exclusive_lock` with ``wait=False`` found the lock held by another process."""


@contextlib.contextmanager
def exclusive_lock(path: str | Path, *, wait: bool = True):
    """Hold an exclusive ``flock`` on the file ``path`` (created) for the ``with`` block, and
    remove the file when leaving it, so a lock leaves nothing behind. ``wait=False``: raise
    :class:`Busy` at once when another process holds it.

    The kernel drops a ``flock`` when its process dies, so a killed holder never leaves a
    stale lock. Written here rather than with ``filelock``, which keeps the file: removing
    it safely needs the check below (a waiter that got the lock on a file another holder
    removed meanwhile tries again on the file now at ``path``)."""
    import fcntl

    path = Path(path)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            raise Busy(str(path)) from None
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        yield
    finally:
        path.unlink(missing_ok=True)
        os.close(fd)  # closing the descriptor releases the lock
