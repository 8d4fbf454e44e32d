"""Tune's storage: a local folder or a filesystem URI (``s3://``, ``gs://``, ...).

Every path below the storage root is built by string joining on ``/`` and read or deleted
through pyarrow's filesystems (``pyarrow.fs.FileSystem.from_uri``), the layer Ray Tune
itself writes through: ``pathlib`` on ``s3://bucket/x`` would collapse the ``//`` into
``s3:/bucket/x``. Credentials and endpoints come from the environment as pyarrow reads them
(``AWS_ACCESS_KEY_ID``, ``AWS_ENDPOINT_URL``, an instance role, ``gcloud`` credentials).
"""

from __future__ import annotations

from pathlib import Path

from fer_models.errors import ConfigError


def is_uri(storage: str) -> bool:
    """A filesystem URI (``scheme://...``), not a local path. ``file://`` counts as local."""
    return "://" in storage and not storage.startswith("file://")


def resolve(storage: str | None, home: str | Path) -> str:
    """The storage root Tune gets: a URI without its trailing ``/``, or an absolute local
    folder (created); default ``home/ray``."""
    storage = storage or str(Path(home) / "ray")
    if storage.startswith("file://"):
        storage = storage[len("file://"):]
    if is_uri(storage):
        scheme, rest = storage.split("://", 1)
        if not rest.split("/", 1)[0]:
            raise ConfigError(f"the Tune storage {storage} names no bucket: pass --storage {scheme}://BUCKET/PREFIX")
        return f"{scheme}://{rest.rstrip('/')}"
    path = Path(storage).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return str(path)


def join(storage: str, *parts: str) -> str:
    """``storage/part/...`` for a URI or a local folder."""
    return "/".join([storage.rstrip("/"), *(p.strip("/") for p in parts)])


def _fs(path: str):
    import pyarrow.fs as pafs

    if is_uri(path):
        return pafs.FileSystem.from_uri(path)
    return pafs.LocalFileSystem(), path


def exists(path: str) -> bool:
    """Whether a file or folder is at ``path`` (a URI or a local path)."""
    import pyarrow.fs as pafs

    fs, p = _fs(path)
    return fs.get_file_info(p).type != pafs.FileType.NotFound


def delete_dir(path: str) -> None:
    """Delete the folder at ``path`` with everything below it; nothing there is fine."""
    if not exists(path):
        return
    fs, p = _fs(path)
    fs.delete_dir(p)


def check(storage: str) -> None:
    """A remote storage root answers and its bucket exists, before Ray starts; one
    sentence otherwise (Tune would fail only after preprocessing, with a traceback)."""
    if not is_uri(storage):
        return
    import pyarrow.fs as pafs

    scheme = storage.split("://", 1)[0]
    try:
        fs, p = pafs.FileSystem.from_uri(storage)
        bucket = p.split("/", 1)[0]
        found = fs.get_file_info(bucket).type != pafs.FileType.NotFound
    except (OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"the Tune storage {storage} cannot be opened ({first}): check the URI, the "
                          f"credentials and the endpoint (AWS_ENDPOINT_URL for an S3-compatible server)") from None
    if not found:
        raise ConfigError(f"the Tune storage {storage} is in the bucket {scheme}://{bucket}, which does not exist "
                          f"or is not visible with these credentials: create it or fix --storage")
