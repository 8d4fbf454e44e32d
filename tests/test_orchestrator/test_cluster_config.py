"""Every cluster-launcher config validates against Ray's own schema, offline."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = [ROOT / "cluster.yaml", *sorted((ROOT / "orchestrator" / "clusters").glob("*.yaml"))]


def _validate(cfg: dict) -> dict:
    # Ray validates with jsonschema (a `dev` dependency): a missing one fails, never skips
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(cfg)  # what `ray up` does before validating: merge defaults
    validate_config(prepared)
    return prepared


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_cluster_config_validates(path):
    cfg = yaml.safe_load(path.read_text())
    prepared = _validate(cfg)
    assert prepared["head_node_type"] in prepared["available_node_types"]
    text = path.read_text()
    # the head runs the MLflow server with artifact proxying before Ray
    head = " ".join(prepared["head_start_ray_commands"])
    assert "mlflow server" in head and "--serve-artifacts" in head
    assert head.index("mlflow server") < head.index("ray start --head")
    assert any("pip install" in c and "-e" in c for c in prepared["setup_commands"])
    assert "EDIT" in text  # tells the user what to change


def test_aws_cluster_autoscales_gpu_workers():
    cfg = _validate(yaml.safe_load((ROOT / "cluster.yaml").read_text()))
    workers = {k: v for k, v in cfg["available_node_types"].items() if k != cfg["head_node_type"]}
    assert workers and all(v.get("min_workers", 0) == 0 and v["max_workers"] > 0 for v in workers.values())
    assert any(str(v["node_config"]["InstanceType"]).startswith(("g", "p")) for v in workers.values())
    assert cfg["file_mounts"]


def test_broken_config_is_rejected():
    """The check has teeth: an unknown top-level field fails Ray's schema."""
    import jsonschema

    cfg = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    cfg["max_wokers"] = 3
    with pytest.raises(jsonschema.ValidationError):
        _validate(cfg)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_servers_listen_on_private_addresses_only(path):
    """The unauthenticated MLflow server binds the head's private address, not every
    interface; the Ray dashboard stays on loopback (docs/cluster.md, Security)."""
    import re
    import shlex

    cfg = yaml.safe_load(path.read_text())
    head = " ".join(cfg["head_start_ray_commands"])
    mlflow = head[head.index("mlflow server"):].split(">", 1)[0]
    host = shlex.split(mlflow)[shlex.split(mlflow).index("--host") + 1]
    if "--app-name basic-auth" not in mlflow:
        assert host not in ("0.0.0.0", "::", "[::]") and not host.startswith("127."), host
        assert host.startswith("$(hostname") or re.fullmatch(r"10\.\d+\.\d+\.\d+|192\.168\.\d+\.\d+", host), host
        if re.fullmatch(r"[\d.]+", host):
            assert host == cfg["provider"]["head_ip"]
    assert "--dashboard-host=0.0.0.0" not in head
