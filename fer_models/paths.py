"""Where fer-orch keeps what it makes: ``$FER_ORCH_HOME`` or ``./fer-orch-out``."""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    return Path(os.environ.get("FER_ORCH_HOME", Path.cwd() / "fer-orch-out")).resolve()


def cache_dir() -> Path:
    return home() / "cache"


def synthetic_dir() -> Path:
    return home() / "data"
