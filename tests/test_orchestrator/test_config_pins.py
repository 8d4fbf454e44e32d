"""Pins of what existing trials are known by: every trial's config hash, MLflow tags and
flattened params under each preset (and a few overrides), fixed on the code before the
config schema was introduced. A finished trial is found again by its hash, and the report
reads its tags and params back; a change here means every existing grid retrains or reports
wrongly, so a failing pin is a migration to write, not a number to update."""

from __future__ import annotations

import hashlib
import json

import pytest

from fer_models.errors import ConfigError
from fer_models.config import DataConfig, TrainConfig, flatten, to_dict
from orchestrator import presets, studies
from orchestrator.config import config_hash


def _digest(g) -> tuple[int, str]:
    rows = []
    for s in studies.report_order():
        try:
            trials = studies.expand(g, s)
        except ConfigError as e:  # a study the preset cannot run (e.g. AU ablations of an identity target)
            rows.append([s, type(e).__name__])
            continue
        for t in trials:
            rows.append([s, t.name, t.hash, t.tags(), flatten(to_dict(t.cfg))])
    return len(rows), hashlib.sha1(json.dumps(rows, sort_keys=True, default=str).encode()).hexdigest()[:16]


#: (preset, overrides) -> (trials over every study, digest of name, hash, tags, params)
PINNED = {
    ("cpu", ()): (171, "5b00c13b2233c8d1"),
    ("paper", ()): (243, "aa4ca71a7e0d0f64"),
    ("paper-released", ()): (243, "16e399b195f58139"),
    ("devanand-t", ()): (69, "2a3f08b30c8f1393"),
    ("fang2017", ()): (69, "1e46500be3b22a2a"),
    ("fang2017-identity", ()): (6, "e65976b1774663c2"),
    ("khorrami2015", ()): (111, "f31d01d5e76135c1"),
    ("cpu", (("lam", 5.0),)): (171, "0bddd59ceafc91bd"),
    ("paper", (("lam", 0.5), ("seeds", (0, 7)))): (162, "737081a3c6ddba3f"),
    ("cpu", (("folds", 3), ("datasets", ("synthetic-ckplus",)))): (225, "d21045a9344a05d5"),
}


@pytest.mark.parametrize("preset,overrides", list(PINNED))
def test_every_trial_keeps_its_hash_tags_and_params(preset, overrides):
    g = presets.get(preset, **dict(overrides))
    assert _digest(g) == PINNED[(preset, overrides)]


#: single configs as `fer-orch train` and the studies build them -> their hash
SINGLE = [
    (TrainConfig(), "dda7ee018387"),
    (TrainConfig(method="wildcat", au=False, lam=0.0, data=DataConfig(dataset="synthetic-affectnet")), "911e0e809574"),
    (TrainConfig(method="cam", lam=4.0, layers=(5, 4, 3), data=DataConfig(au_source="labels")), "25f2c656f411"),
    (TrainConfig(method="cam", au=False, lam=0.0, target="identity",
                 data=DataConfig(dataset="synthetic-rafd", options={"fold": 2})), "01273bcf2029"),
]


@pytest.mark.parametrize("i", range(len(SINGLE)))
def test_single_configs_keep_their_hash(i):
    cfg, expected = SINGLE[i]
    assert config_hash(cfg) == expected
