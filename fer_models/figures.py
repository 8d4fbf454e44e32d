"""Writing a matplotlib figure to a file: the one place every figure of fer-orch is saved."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def save_figure(fig: Any, path: str | Path, *, dpi: int = 110, **savefig: Any) -> Path:
    """Save ``fig`` to ``path`` (creating its folder), close it so pyplot does not keep it
    alive across many figures, and return the path. ``savefig`` options (``bbox_inches`` ...)
    go to ``Figure.savefig``."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, **savefig)
    plt.close(fig)
    return path
