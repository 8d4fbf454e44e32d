"""The preprocessing cache: stages, failures, reuse, atomicity (fer_models.data.cache).

The fakes (a hand-made manifest of tiny images, a landmark backend that returns the
shipped landmarks or None on a blank image) are conftest fixtures.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fer_models.data import cache


CODEBOOK = "paper002"


@pytest.fixture
def manifest(tmp_path, make_manifest):
    return make_manifest(tmp_path / "data")


def test_prepare_writes_shards_meta_and_counts_failures(manifest, tmp_path, fake_backend):
    info = cache.prepare(manifest, fake_backend, CODEBOOK, 16, 32, tmp_path / "cache",
                         batch_size=8, progress=False)
    assert not info.hit and info.dir.is_dir() and info.dir.parent.name == "fake"
    meta = json.loads((info.dir / "meta.json").read_text())
    assert meta["failures"] == {cache.NO_FACE: 1, cache.UNREADABLE: 1}
    assert meta["rows_in"] == 26
    # the unreadable row is out of the shards, the no-face row stays (without AU map)
    assert sum(meta["counts"].values()) == 25
    with open(info.failures_csv) as f:
        rows = list(csv.DictReader(f))
    assert {r["reason"] for r in rows} == {cache.NO_FACE, cache.UNREADABLE}
    assert [r["path"] for r in rows if r["reason"] == cache.UNREADABLE][0].endswith(".jpg")
    assert "unreadable" in info.summary() and str(info.failures_csv) in info.summary()
    # no leftovers of the temporary folder
    assert [p.name for p in info.dir.parent.iterdir()] == [info.dir.name]

    allrows = {s: cache.load_split(info.dir, s) for s in ("train", "val", "test")}
    paths = np.concatenate([d["path"] for d in allrows.values()])
    blank = manifest.samples[24].path
    assert blank in paths and manifest.samples[25].path not in paths
    for d in allrows.values():
        assert d["image"].dtype == np.uint8 and d["image"].shape[1:] == (32, 32, 3)
        assert d["au_map"].shape[1:] == (16, 16) and d["au_map"].max() <= 1.0
        nf = d["path"] == blank
        assert not d["au_valid"][nf].any() and not d["gt_valid"][nf].any()
        # neutral (label 6) has no codebook map; every other labelled face with landmarks has
        ok = ~nf
        assert np.array_equal(d["au_valid"][ok], d["label"][ok] != 6)
        assert np.all(d["au_map"][~d["au_valid"]] == 0)
        assert np.allclose(d["au_map"][d["au_valid"]].max(axis=(1, 2)), 1.0)


def test_landmarks_follow_the_resize_and_box_crop(tmp_path, fake_backend, make_manifest,
                                                  template_landmarks):
    m = make_manifest(tmp_path / "d", n=4, w=48, h=40, blank=0, corrupt=0)
    m.samples[1].box = (8.0, 4.0, 32.0, 32.0)
    info = cache.prepare(m, fake_backend, CODEBOOK, 16, 32, tmp_path / "c", progress=False)
    splits = [cache.load_split(info.dir, s) for s in ("train", "val", "test")]
    rows = {int(r): lm for d in splits for r, lm in zip(d["row"], d["landmarks"])}
    src = template_landmarks(48, 40)
    expect0 = np.stack([(src[:, 0] + 0.5) * 32 / 48 - 0.5, (src[:, 1] + 0.5) * 32 / 40 - 0.5], 1)
    np.testing.assert_allclose(rows[0], expect0, atol=1e-4)
    expect1 = np.stack([(src[:, 0] + 0.5 - 8) - 0.5, (src[:, 1] + 0.5 - 4) - 0.5], 1)  # 32 px box
    np.testing.assert_allclose(rows[1], expect1, atol=1e-4)
    # the stored image of row 1 is the box's pixels (scale 1)
    img = np.asarray(Image.open(m.samples[1].path))
    stored = cache.load_split(info.dir, m.samples[1].split)
    j = int(np.flatnonzero(stored["row"] == 1)[0])
    assert np.abs(stored["image"][j].astype(int) - img[4:36, 8:40].astype(int)).max() <= 1


def test_second_run_is_a_cache_hit_and_constructs_nothing(manifest, tmp_path, fake_backend,
                                                          exploding_backend):
    first = cache.prepare(manifest, fake_backend, CODEBOOK, 16, 32, tmp_path / "c", progress=False)
    assert fake_backend.constructed == 1
    mtime = (first.dir / "meta.json").stat().st_mtime_ns
    second = cache.prepare(manifest, exploding_backend, CODEBOOK, 16, 32, tmp_path / "c", progress=False)
    assert second.hit and second.dir == first.dir and "cache hit" in second.summary()
    assert (first.dir / "meta.json").stat().st_mtime_ns == mtime


def test_key_depends_on_every_input(manifest, fake_backend):
    base = cache.cache_key(manifest, fake_backend, cache.resolve_codebook(CODEBOOK), 16, 32)
    # an instance keys like its class; a name resolves to the same codebook
    assert base == cache.cache_key(manifest, fake_backend(), cache.resolve_codebook(CODEBOOK), 16, 32)

    class V2(fake_backend):
        version = "2"

    others = {
        cache.cache_key(manifest, V2, cache.resolve_codebook(CODEBOOK), 16, 32),
        cache.cache_key(manifest, fake_backend, cache.resolve_codebook("paper002-released"), 16, 32),
        cache.cache_key(manifest, fake_backend, cache.resolve_codebook(CODEBOOK), 8, 32),
        cache.cache_key(manifest, fake_backend, cache.resolve_codebook(CODEBOOK), 16, 64),
    }
    manifest.samples[0].aus = {4: 1.0}
    others.add(cache.cache_key(manifest, fake_backend, cache.resolve_codebook(CODEBOOK), 16, 32))
    manifest.samples[0].label = 5
    others.add(cache.cache_key(manifest, fake_backend, cache.resolve_codebook(CODEBOOK), 16, 32))
    assert base not in others and len(others) == 6


def test_a_killed_run_leaves_no_cache_that_looks_complete(manifest, tmp_path, fake_backend):
    class _DiesOnSecondBatch(fake_backend):
        calls = 0

        def detect(self, images, samples):
            type(self).calls += 1
            if type(self).calls == 2:
                raise KeyboardInterrupt  # a killed run
            return super().detect(images, samples)

    with pytest.raises(KeyboardInterrupt):
        cache.prepare(manifest, _DiesOnSecondBatch, CODEBOOK, 16, 32, tmp_path / "c",
                      batch_size=4, progress=False)
    ds_dir = tmp_path / "c" / "fake"
    assert not ds_dir.exists() or list(ds_dir.iterdir()) == []
    key = cache.cache_key(manifest, fake_backend, cache.resolve_codebook(CODEBOOK), 16, 32)
    assert cache.find_cache(tmp_path / "c", "fake", key) is None


def test_ground_truth_maps_only_where_aus_are_known(manifest, tmp_path, fake_backend):
    info = cache.prepare(manifest, fake_backend, CODEBOOK, 16, 32, tmp_path / "c", progress=False)
    for s in ("train", "val", "test"):
        d = cache.load_split(info.dir, s)
        for r, gv, gm, aus in zip(d["row"], d["gt_valid"], d["gt_au_map"], d["aus"]):
            sample = manifest.samples[int(r)]
            active = bool(sample.aus) and sample.path != manifest.samples[24].path
            assert gv == active
            assert (gm.max() > 0.99) == active
            assert np.isnan(aus).all() == (sample.aus is None)


def test_open_cache_refuses_an_unfinished_folder(tmp_path):
    from fer_models.errors import DatasetError

    (tmp_path / "half").mkdir()
    with pytest.raises(DatasetError, match="meta.json"):
        cache.open_cache(tmp_path / "half")


def test_preview_png_shows_stored_faces(manifest, tmp_path, fake_backend):
    info = cache.prepare(manifest, fake_backend, CODEBOOK, 16, 32, tmp_path / "c", progress=False)
    out = cache.write_preview(info.dir, n=4)
    assert out == info.dir / "preview.png"
    img = np.asarray(Image.open(out))
    assert img.ndim == 3 and img.shape[0] > 100 and img.std() > 10  # a real picture, not blank


def test_build_starts_its_executor_only_on_a_miss(manifest, tmp_path, fake_backend):
    """The skeleton (resolve -> find -> write -> close) is shared; only the executor varies."""
    from contextlib import contextmanager

    started = []

    @contextmanager
    def recording(stages):
        started.append(stages)
        with cache.serial(stages) as run:
            yield cache.Run(run.batches, {"pipeline": "recording"}, " (recording)")

    target = cache.resolve(manifest, fake_backend, CODEBOOK, 16, 32, tmp_path / "c")
    info = cache.build(target, 16, 32, recording, batch_size=5, progress=False)
    assert len(started) == 1 and started[0].batch_size == 5 and started[0].image_size == 32
    assert info.meta["pipeline"] == "recording" and info.key == target.key and info.dir == target.dir
    serial = cache.prepare(manifest, fake_backend, CODEBOOK, 16, 32, tmp_path / "s", progress=False)
    for split in ("train", "val", "test"):
        a, b = cache.load_split(info.dir, split), cache.load_split(serial.dir, split)
        assert all(np.array_equal(a[k], b[k], equal_nan=a[k].dtype.kind == "f") for k in a)
    assert cache.build(target, 16, 32, recording, progress=False).hit and len(started) == 1
    with pytest.raises(ValueError, match="sizes"):  # a target resolved for other sizes
        cache.build(cache.resolve(manifest, fake_backend, CODEBOOK, 16, 64, tmp_path / "d"), 16, 32,
                    recording, progress=False)


def _with_non_codebook_aus(manifest):
    """AU14 (dimpler) and AU43 (eyes closed): labelled by CK+, used by no codebook."""
    for i, s in enumerate(manifest.samples):
        if s.aus is not None and i % 2 == 0:
            s.aus = {**s.aus, 14: 0.7, 43: 0.25}
    return manifest


def test_cache_keeps_every_labelled_au_and_draws_the_codebook_ones(manifest, tmp_path, fake_backend):
    from fer_models.data import au

    plain = cache.prepare(manifest, fake_backend, CODEBOOK, 16, 32, tmp_path / "a", progress=False)
    wide = cache.prepare(_with_non_codebook_aus(manifest), fake_backend, CODEBOOK, 16, 32, tmp_path / "b",
                         progress=False)
    assert tuple(wide.meta["inputs"]["au_ids"]) == (6, 12, 14, 43) == manifest.labelled_aus()
    assert 14 not in au.AU_IDS and 43 not in au.AU_IDS
    rows = cache.manifest_rows(manifest)  # the row codec the stages stream, both ways
    back = cache.samples_from_batch(cache.batch_rows(rows), wide.meta["inputs"]["au_ids"])
    for s, b in zip(manifest.samples, back):
        assert b.aus == (None if s.aus is None else {a: pytest.approx(s.aus.get(a, 0.0)) for a in (6, 12, 14, 43)})
    for split in ("train", "val", "test"):
        d, p = cache.load_split(wide.dir, split), cache.load_split(plain.dir, split)
        assert d["aus"].shape[1] == 4
        for r, row_aus in zip(d["row"], d["aus"]):  # the intensities round-trip, AU14 and AU43 included
            expected = au.aus_to_vector(manifest.samples[int(r)].aus, (6, 12, 14, 43))
            assert np.array_equal(row_aus, expected, equal_nan=True)
        # the maps draw only the AUs with a location rule: the same maps as without AU14 / AU43
        assert np.array_equal(d["gt_au_map"], p["gt_au_map"]) and np.array_equal(d["gt_valid"], p["gt_valid"])
        assert np.array_equal(d["au_map"], p["au_map"])


def test_a_cache_of_the_codebook_aus_only_has_another_key(manifest, fake_backend):
    """A cache written when only the codebooks' 18 AUs were kept is rebuilt, not misread; a
    dataset that labels exactly those AUs, or none, keeps its key."""
    from fer_models.data import au

    codebook = cache.resolve_codebook(CODEBOOK)

    def keys(m):
        inputs = cache.key_inputs(m, fake_backend, codebook, 16, 32)
        old = cache.hash_inputs({**inputs, "au_ids": list(au.AU_IDS)})  # the key before
        return cache.cache_key(m, fake_backend, codebook, 16, 32), old, inputs["au_ids"]

    new, old, ids = keys(_with_non_codebook_aus(manifest))
    assert new != old and ids == [6, 12, 14, 43]
    for s in manifest.samples:  # every codebook AU labelled: the columns of before
        s.aus = None if s.aus is None else {a: 0.5 for a in au.AU_IDS}
    new, old, ids = keys(manifest)
    assert new == old and ids == list(au.AU_IDS)
    for s in manifest.samples:  # no AU labels at all
        s.aus = None
    new, old, ids = keys(manifest)
    assert new == old and ids == list(au.AU_IDS)
