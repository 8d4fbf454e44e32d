"""What a run predicts: the expression (the default) or the identity (``TrainConfig.target``).

Paper 003 trains the same Tiny VGG twice on RaFD: for its 8 expressions and for its 67
identities, and compares what the two networks look at. :func:`with_target` turns the
loaders of a cache into identity loaders: every batch's ``label`` becomes its ``identity``
(the index of the row's subject in the cache's ``meta.json`` "identities", the same index
``FaceDataset`` gives), ``au_valid`` / ``gt_valid`` become False (the AU maps encode an
expression, so the AU loss and the localisation metrics do not apply: ``TrainConfig``
refuses ``au`` with an identity target), and ``num_classes`` is the number of identities.

Identity recognition needs every test subject in training: a subject-wise split (CK+'s
folds, RaFD's default ``split=subjects``) is refused in one sentence naming the option that
gives a suitable split (RaFD ``split=per-identity``, paper 003's).
"""

from __future__ import annotations

import copy
from typing import Any, Iterator

from fer_models.config import TARGETS
from fer_models.errors import ConfigError


class TargetLoader:
    """Wraps a batch loader; yields its batches with ``label`` replaced by ``identity``."""

    def __init__(self, loader: Any):
        self.loader = loader

    def __iter__(self) -> Iterator[dict]:
        for batch in self.loader:
            yield relabel(batch)

    def __len__(self) -> int:
        return len(self.loader)

    def __getattr__(self, name: str) -> Any:  # dataset, batch_size, ... of the wrapped loader
        return getattr(self.loader, name)


def relabel(batch: dict) -> dict:
    """A batch with the identity as its label and no AU-map target."""
    out = dict(batch)
    out["label"] = batch["identity"]
    for key in ("au_valid", "gt_valid"):
        if key in out:
            out[key] = out[key] & False
    return out


def identity_classes(cache_dir: Any, dataset: str = "") -> int:
    """The identity count of a cache, after checking that identity recognition is possible
    on its splits (every row has an identity; every val/test identity is in train)."""
    from fer_models.data.cache import load_split, open_cache

    info = open_cache(cache_dir)
    names = info.meta.get("identities", [])
    name = dataset or info.dataset
    if not names:
        raise ConfigError(f"dataset '{name}' has no identities, so it cannot train an identity target; "
                          "use --target expression or a dataset with subjects (rafd, ckplus, kdef, synthetic-*)")
    seen: dict[str, set[str]] = {}
    for split in ("train", "val", "test"):
        ids = load_split(cache_dir, split).get("identity")
        seen[split] = set() if ids is None else {str(x) for x in ids}
    if "" in seen["train"] | seen["val"] | seen["test"]:
        raise ConfigError(f"some rows of '{name}' have no identity, so it cannot train an identity target; "
                          "use --target expression")
    unseen = (seen["val"] | seen["test"]) - seen["train"]
    if unseen:
        hint = " (rafd: --data-opt split=per-identity, paper 003's split)" if "rafd" in name else ""
        raise ConfigError(f"{len(unseen)} subject(s) of the val/test split of '{name}' are not in its train split, "
                          f"so an identity target cannot be learnt; choose a split that shares subjects{hint}")
    return len(names)


def with_target(loaders: Any, target: str) -> Any:
    """``loaders`` (train/val/test/num_classes/cache_dir) for ``target``: unchanged for
    "expression"; for "identity", a copy whose loaders yield identity labels and whose
    ``num_classes`` is the identity count."""
    if target not in TARGETS:
        raise ConfigError(f"target must be one of {', '.join(TARGETS)}, got '{target}'")
    if target == "expression":
        return loaders
    out = copy.copy(loaders)
    out.num_classes = identity_classes(loaders.cache_dir)
    for split in ("train", "val", "test"):
        setattr(out, split, TargetLoader(getattr(loaders, split)))
    return out
