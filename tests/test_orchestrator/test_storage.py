"""Tune's storage as a URI: string paths through pyarrow, checked on a loopback S3 server."""

from __future__ import annotations

import pytest

from fer_models.errors import ConfigError
from orchestrator import storage


def test_uri_paths_keep_their_scheme(tmp_path):
    assert storage.resolve("s3://bucket/fer-orch/", tmp_path) == "s3://bucket/fer-orch"
    assert storage.join("s3://bucket/fer-orch", "exp-main") == "s3://bucket/fer-orch/exp-main"
    assert storage.join("gs://b/x/", "/y") == "gs://b/x/y"
    assert storage.resolve(None, tmp_path) == str(tmp_path / "ray") and (tmp_path / "ray").is_dir()
    assert storage.resolve(f"file://{tmp_path}/t", tmp_path) == str(tmp_path / "t")
    with pytest.raises(ConfigError, match="names no bucket"):
        storage.resolve("s3:///x", tmp_path)


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    from tests.test_orchestrator.s3server import make_bucket, moto_server

    with moto_server(tmp_path_factory.mktemp("moto") / "moto.log") as env:
        make_bucket(env, "bucket")
        yield env


def test_storage_on_s3_exists_delete_and_check(s3, monkeypatch):
    import pyarrow.fs as pafs

    from tests.test_orchestrator.s3server import list_keys

    for k, v in s3.items():
        monkeypatch.setenv(k, v)
    root = storage.resolve("s3://bucket/fer-orch/", "/unused")
    storage.check(root)
    exp = storage.join(root, "exp")
    fs, p = pafs.FileSystem.from_uri(storage.join(exp, "trial", "f.txt"))
    with fs.open_output_stream(p) as f:
        f.write(b"x")
    assert list_keys(s3, "bucket", "fer-orch/") == ["fer-orch/exp/trial/f.txt"]
    assert storage.exists(exp) and storage.exists(storage.join(exp, "trial", "f.txt"))
    storage.delete_dir(exp)
    assert not storage.exists(exp) and list_keys(s3, "bucket", "fer-orch/exp") == []
    storage.delete_dir(exp)  # nothing there is fine
    with pytest.raises(ConfigError, match=r"bucket s3://nobucket, which does not exist") as e:
        storage.check("s3://nobucket/x")
    assert "\n" not in str(e.value)


def test_cli_refuses_a_missing_bucket_before_ray(s3, monkeypatch, tmp_path):
    from click.testing import CliRunner

    from orchestrator.cli import main

    for k, v in s3.items():
        monkeypatch.setenv(k, v)
    res = CliRunner().invoke(main, ["grid", "--methods", "cam", "--seeds", "1", "--no-ablations",
                                    "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}", "--storage", "s3://nobucket/x"])
    assert res.exit_code == 2, res.output
    assert "does not exist" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "fer-orch-out" / "ray").exists()
