"""A class subset (FER2013's ``classes=happiness,sadness,neutral``, paper 004's NN1) gives a
network with one output per class kept, labels renumbered in the project's order; CK+'s
``classes=6`` keeps its labels (fer_models.labels.output_classes)."""

from __future__ import annotations

import numpy as np
import torch

from fer_models.config import DataConfig, TrainConfig
from fer_models.data import cache as _cache
from fer_models.data.dataset import build_loaders
from fer_models.data.readers import read_dataset
from fer_models.labels import INDEX, class_names, output_classes
from fer_models.train import train

torch.set_num_threads(1)
NN1 = "happiness,sadness,neutral"
SMALL = dict(n_train=42, n_val=12, n_test=12, n_identities=6)


def _data(classes=None, **kw):
    opts = {**SMALL, **({"classes": classes} if classes else {})}
    return DataConfig(dataset="synthetic-fer2013", options=opts, image_size=48, map_size=12, num_workers=0, **kw)


def test_the_rule():
    assert output_classes(7) == tuple(range(7)) and output_classes(6) == tuple(range(6))
    assert output_classes(7, [6, 3, 4]) == (3, 4, 6)


def test_nn1_labels_are_outputs_and_the_project_label_stays_beside_them():
    loaders = build_loaders(_data(NN1), 16, 0, progress=False)
    assert loaders.num_classes == 3 and loaders.class_names == ["happiness", "sadness", "neutral"]
    meta = loaders.info.meta
    assert meta["num_classes"] == 3 and meta["class_names"] == loaders.class_names
    for split in ("train", "val", "test"):
        pairs = {(int(a), int(b)) for batch in getattr(loaders, split) for a, b in zip(batch["label"], batch["expression"])}
        assert pairs and pairs <= {(0, INDEX["happiness"]), (1, INDEX["sadness"]), (2, INDEX["neutral"])}, split
    # the cache stores the project's labels (its AU maps are drawn from them) under a key of its own
    assert set(np.unique(_cache.load_split(loaders.cache_dir, "train")["label"])) <= {3, 4, 6}
    from fer_analysis.run_labels import class_names_for  # what explain's jobs name the classes by

    assert class_names_for("expression", 3, loaders.test) == ["happiness", "sadness", "neutral"]
    every = build_loaders(_data(), 16, 0, progress=False)
    assert every.cache_dir != loaders.cache_dir and every.num_classes == 7 and every.class_names == class_names(7)
    assert "expression" not in next(iter(every.test))  # no subset: the batches are as they always were


def test_nn1_trains_three_outputs_and_names_its_matrices(tmp_path):
    cfg = TrainConfig(method="light-cnn", au=False, lam=0.0, epochs=1, batch_size=16, device="cpu", data=_data(NN1))
    res = train(cfg, tmp_path, progress=False)
    assert res.num_classes == 3 and res.class_names == ["happiness", "sadness", "neutral"]
    assert res.test.confusion.shape == (3, 3) and res.test.confusion.sum() > 0
    state = torch.load(res.best_path, weights_only=True)
    assert min(v.shape[0] for k, v in state.items() if k.endswith("bias") and v.ndim == 1) == 3
    from fer_models.metrics import save_figures

    save_figures(res.test, tmp_path / "art")
    rows = (tmp_path / "art" / "matrices" / "confusion.csv").read_text().splitlines()
    assert rows[0].split(",")[1:] == ["happiness", "sadness", "neutral"]
    assert [r.split(",")[0] for r in rows[1:]] == ["happiness", "sadness", "neutral"]


def test_ckplus_six_classes_keeps_its_labels(tmp_path):
    m = read_dataset("synthetic-ckplus", tmp_path / "ck", classes=6, n_folds=2, progress=False)
    assert m.num_classes == 6 and m.output_classes() == tuple(range(6)) and m.classes is None
    assert {s.label for s in m.samples} <= set(range(6))
