"""Where fer-orch keeps what it makes: ``$FER_ORCH_HOME`` or ``./fer-orch-out``;
:func:`check_writable`, the one check that a folder can be written before any work."""

from __future__ import annotations

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
