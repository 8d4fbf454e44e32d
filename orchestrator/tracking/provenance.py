"""Provenance tags of every run: the git checkout and the versions of the packages that matter."""

from __future__ import annotations

from pathlib import Path

from fer_models.versions import package_version

VERSIONED = ("fer-orch", "torch", "torchvision", "timm", "numpy", "ray", "mlflow", "grad-cam", "captum")


def git_info() -> dict[str, str]:
    """``{"git_commit": sha or "unknown", "git_dirty": "true"|"false"|"unknown"}`` of this checkout."""
    import subprocess

    repo = Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=repo, capture_output=True, text=True, timeout=10, check=True,
        ).stdout
        return {"git_commit": sha, "git_dirty": str(bool(status.strip())).lower()}
    except (OSError, subprocess.SubprocessError):
        return {"git_commit": "unknown", "git_dirty": "unknown"}


def package_versions() -> dict[str, str]:
    """``{"versions.<package>": version or "absent"}`` for :data:`VERSIONED`."""
    return {f"versions.{name}": package_version(name) for name in VERSIONED}
