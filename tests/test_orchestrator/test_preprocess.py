"""Ray Data preprocessing (orchestrator.preprocess) and the `fer-orch preprocess` command."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from fer_models.config import DataConfig
from fer_models.data import cache

SPLITS = ("train", "val", "test")


@pytest.fixture
def ray_fakes(ray_local, fake_backend):
    """Ship the fake backend (defined in conftest) to Ray workers by value."""
    import ray.cloudpickle as cp

    cp.register_pickle_by_value(sys.modules[fake_backend.__module__])
    yield ray_local
    cp.unregister_pickle_by_value(sys.modules[fake_backend.__module__])


def _cfg(**kw):
    return DataConfig(dataset="fake", codebook="paper002", image_size=32, map_size=16, **kw)


@pytest.mark.slow
@pytest.mark.ray
def test_ray_pipeline_writes_the_same_cache_as_the_serial_path(ray_fakes, tmp_path, make_manifest,
                                                               fake_backend):
    from orchestrator.preprocess import preprocess

    m = make_manifest(tmp_path / "data", n=40)
    msgs: list[str] = []
    ray_info = preprocess(_cfg(), num_workers=2, cache_root=tmp_path / "ray", manifest=m,
                          backend=fake_backend, batch_size=8, progress=False, echo=msgs.append)
    serial = cache.prepare(m, fake_backend, "paper002", 16, 32, tmp_path / "serial",
                           batch_size=5, progress=False)
    assert not ray_info.hit and ray_info.key == serial.key
    assert ray_info.meta["pipeline"] == "ray" and ray_info.meta["workers"] == 2
    assert ray_info.counts == serial.counts and ray_info.failures == serial.failures
    assert ray_info.failures == {cache.NO_FACE: 1, cache.UNREADABLE: 1}
    for split in SPLITS:
        a, b = cache.load_split(ray_info.dir, split), cache.load_split(serial.dir, split)
        assert set(a) == set(b) and len(a["row"]) > 0
        for k in a:
            if a[k].dtype.kind == "f":
                np.testing.assert_array_equal(a[k], b[k], err_msg=k)  # NaN == NaN here
            else:
                assert np.array_equal(a[k], b[k]), k
    assert (ray_info.dir / "failures.csv").read_text() == (serial.dir / "failures.csv").read_text()
    text = "\n".join(msgs)
    assert "rows/s" in text and "failures.csv" in text and "unreadable" in text


def test_a_cache_hit_does_no_work(tmp_path, monkeypatch, make_manifest, fake_backend,
                                  exploding_backend):
    import orchestrator.ray_utils
    from orchestrator.preprocess import preprocess

    def no_ray(*a, **k):
        raise AssertionError("Ray was started on a cache hit")

    monkeypatch.setattr(orchestrator.ray_utils, "init_ray", no_ray)
    m = make_manifest(tmp_path / "data", n=8)
    first = cache.prepare(m, fake_backend, "paper002", 16, 32, tmp_path / "c", progress=False)
    msgs: list[str] = []
    # exploding_backend has fake_backend's name/version: a constructed backend would raise
    info = preprocess(_cfg(), cache_root=tmp_path / "c", manifest=m, backend=exploding_backend,
                      progress=False, echo=msgs.append)
    assert info.hit and info.dir == first.dir and "cache hit" in msgs[0]


def test_cli_preprocess_is_registered_with_its_options():
    from click.testing import CliRunner

    from orchestrator.cli import main

    res = CliRunner().invoke(main, ["preprocess", "--help"])
    assert res.exit_code == 0, res.output
    for opt in ("--dataset", "--root", "--landmarks", "--codebook", "--image-size", "--map-size",
                "--workers", "--address"):
        assert opt in res.output
    bad = CliRunner().invoke(main, ["preprocess", "--dataset", "no-such-dataset"])
    assert bad.exit_code == 2 and "no-such-dataset" in bad.output


@pytest.mark.slow
@pytest.mark.ray
def test_cli_preprocess_builds_then_hits_the_cache_on_synthetic_data(ray_local, tmp_path):
    from click.testing import CliRunner

    from orchestrator.cli import main

    args = ["preprocess", "--dataset", "synthetic-rafdb", "--image-size", "32", "--map-size", "16",
            "--workers", "2", "--cache-root", str(tmp_path / "cache")]
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 0, first.output
    assert "cache built" in first.output and "rows/s" in first.output and "failures: none" in first.output
    assert "preview.png" in first.output
    second = CliRunner().invoke(main, args)
    assert second.exit_code == 0 and "cache hit" in second.output
    (built,) = list((tmp_path / "cache" / "synthetic-rafdb").iterdir())
    meta = cache.open_cache(built).meta
    assert meta["pipeline"] == "ray" and meta["inputs"]["backend"] == "synthetic"  # --workers asks for Ray
    assert sum(meta["counts"].values()) == meta["rows_in"] > 1000


def test_worker_resources_follow_the_cluster(fake_backend):
    from fer_models.errors import ConfigError
    from orchestrator.preprocess import AU_STAGE_CPUS, _resources

    class FakeRay:
        def __init__(self, **res):
            self.res = res

        def cluster_resources(self):
            return self.res

    class GpuBackend(fake_backend):
        uses_gpu = True

    w, res, dev = _resources(FakeRay(CPU=16, GPU=2), GpuBackend, None)
    assert (w, res["num_gpus"], dev) == (2, 1.0, "cuda")
    w, res, dev = _resources(FakeRay(CPU=16, GPU=1), GpuBackend, 4)
    assert (w, res["num_gpus"], dev) == (4, 0.25, "cuda")  # fractional GPUs
    w, res, dev = _resources(FakeRay(CPU=16, GPU=1), fake_backend, 2)  # CPU backend ignores GPUs
    assert dev == "cpu" and res == {"num_cpus": 1.0} and "num_gpus" not in res
    w, res, dev = _resources(FakeRay(CPU=2), fake_backend, 2)
    assert w == 2 and w * res["num_cpus"] + AU_STAGE_CPUS <= 2  # the AU stage still fits
    with pytest.raises(ConfigError, match="--workers"):
        _resources(FakeRay(CPU=0.2), fake_backend, 1)


def test_a_small_cache_of_landmarks_the_rows_carry_is_built_without_ray(tmp_path, monkeypatch, make_manifest,
                                                                         fake_backend):
    """Ray Data's start-up costs more than such a cache (SERIAL_MAX_ROWS); a detector, a
    larger dataset or an explicit worker count still goes through Ray."""
    import orchestrator.preprocess as pp
    import orchestrator.ray_utils

    def no_ray(*a, **k):
        raise AssertionError("Ray was started")

    monkeypatch.setattr(orchestrator.ray_utils, "init_ray", no_ray)
    given = type("GivenLandmarks", (fake_backend,), {"detects": False})
    m = make_manifest(tmp_path / "data", n=8)
    info = pp.preprocess(_cfg(), cache_root=tmp_path / "a", manifest=m, backend=given, progress=False, echo=None)
    assert not info.hit and info.meta["pipeline"] == "serial"
    for root, kw in (("b", dict(backend=fake_backend)), ("c", dict(backend=given, num_workers=1))):
        with pytest.raises(AssertionError, match="Ray was started"):
            pp.preprocess(_cfg(), cache_root=tmp_path / root, manifest=m, progress=False, echo=None, **kw)
    monkeypatch.setattr(pp, "SERIAL_MAX_ROWS", len(m.samples) - 1)
    with pytest.raises(AssertionError, match="Ray was started"):
        pp.preprocess(_cfg(), cache_root=tmp_path / "d", manifest=m, backend=given, progress=False, echo=None)


def test_the_backends_that_read_given_landmarks_say_so():
    from fer_models.registry import LANDMARKS

    assert {n: LANDMARKS.get(n).detects for n in ("synthetic", "dataset", "dlib", "face-alignment")} == {
        "synthetic": False, "dataset": False, "dlib": True, "face-alignment": True}
