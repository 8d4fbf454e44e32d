"""The versioned preprocessing cache (docs/architecture.md, step 2), one module per job:

- :mod:`~fer_models.data.cache.layout`: what a cache folder is (format, shard columns,
  row statuses, ``<cache_root>/<dataset>/<key>/``);
- :mod:`~fer_models.data.cache.key`: the content-hash key and :func:`resolve` (names ->
  backend class, codebook, key, folder);
- :mod:`~fer_models.data.cache.rows`: the row codec (manifest <-> plain rows <-> batches);
- :mod:`~fer_models.data.cache.stages`: the landmark stage and the AU-map stage;
- :mod:`~fer_models.data.cache.writer`: shards in a temporary folder, renamed into place;
- :mod:`~fer_models.data.cache.reader`: :class:`CacheInfo`, shards, whole splits;
- :mod:`~fer_models.data.cache.pipeline`: the one build skeleton (resolve -> find ->
  write -> close/abort) and its serial executor (:func:`prepare`); the Ray Data executor
  lives in ``orchestrator.preprocess``;
- :mod:`~fer_models.data.cache.preview`: a PNG of stored faces with their maps.

Size: images are stored as uint8, ``image_size**2 * 3`` bytes a row plus two float32
maps (``2 * 4 * map_size**2``). At 64 px / 32 px that is ~20 KB a row; AffectNet
(~290k rows) at 224 px is ~44 GB of shards, so put ``$FER_ORCH_HOME`` on a large disk.
"""

from fer_models.data.cache.key import (
    CacheTarget,
    cache_dir_for,
    cache_key,
    hash_inputs,
    key_inputs,
    resolve,
    resolve_backend,
    resolve_codebook,
)
from fer_models.data.cache.layout import (
    CACHE_FORMAT,
    NO_FACE,
    OK,
    SHARD_COLUMNS,
    UNREADABLE,
    cache_path,
)
from fer_models.data.cache.pipeline import (
    Executor,
    Run,
    Stages,
    build,
    instantiate_backend,
    prepare,
    serial,
)
from fer_models.data.cache.preview import write_preview
from fer_models.data.cache.reader import (
    CacheInfo,
    find_at,
    find_cache,
    iter_shards,
    load_split,
    open_cache,
)
from fer_models.data.cache.rows import batch_rows, manifest_rows, samples_from_batch
from fer_models.data.cache.stages import au_stage, landmark_stage
from fer_models.data.cache.writer import SHARD_ROWS, CacheWriter

__all__ = [
    "CACHE_FORMAT", "NO_FACE", "OK", "SHARD_COLUMNS", "SHARD_ROWS", "UNREADABLE",
    "CacheInfo", "CacheTarget", "CacheWriter", "Executor", "Run", "Stages",
    "au_stage", "batch_rows", "build", "cache_dir_for", "cache_key", "cache_path", "find_at",
    "find_cache", "hash_inputs", "instantiate_backend", "iter_shards", "key_inputs",
    "landmark_stage", "load_split", "manifest_rows", "open_cache", "prepare", "resolve",
    "resolve_backend", "resolve_codebook", "samples_from_batch", "serial", "write_preview",
]  # fmt: skip
