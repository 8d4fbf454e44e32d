"""Starting or joining Ray the same way from every command, and where a Ray node is."""

from __future__ import annotations

import ipaddress
import os
import urllib.parse
from typing import Any


def init_ray(address: str | None = None, num_cpus: int | None = None, **kwargs):
    """Join the cluster at ``address`` (or ``$RAY_ADDRESS``), else start a local instance.

    A plain local run always says ``address="local"`` so it never attaches to a stray
    cluster that happens to be running on the machine. Returns the ``ray`` module.
    """
    import ray

    if ray.is_initialized():
        return ray
    address = address or os.environ.get("RAY_ADDRESS") or "local"
    opts = {"include_dashboard": False, "log_to_driver": False, **kwargs}
    if address == "local" and num_cpus is not None:
        opts["num_cpus"] = num_cpus
    if address not in ("local", "auto"):
        probe_address(address)  # Ray itself retries an unreachable head for minutes
    try:
        ray.init(address=address, **opts)
    except ConnectionError as e:
        if address == "local":
            raise
        raise join_error(address, e) from None
    return ray


#: Seconds to wait for a head to accept a connection, then for it to speak gRPC.
JOIN_TIMEOUT_S = 10.0


def probe_address(address: str, timeout: float = JOIN_TIMEOUT_S) -> None:
    """One sentence, within ``2 * timeout`` seconds, when nothing at ``address`` answers as a
    Ray head (GCS or Ray client server): ``ray.init`` would retry it for minutes, in native
    code that a SIGTERM does not interrupt. A TCP connect, then the first step of the HTTP/2
    handshake every gRPC server answers (the server's SETTINGS frame, RFC 9113 Sec. 3.4):
    written here because Ray no longer ships the ``grpc`` Python package; skipped under
    ``RAY_USE_TLS``, whose handshake starts with TLS."""
    import socket

    from fer_models.errors import FerOrchError

    hostport = address.split("://", 1)[-1].rstrip("/")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise FerOrchError(f"the Ray address {address} is not HOST:PORT: fix --address / $RAY_ADDRESS (or use auto)")
    host = host.strip("[]")
    try:
        conn = socket.create_connection((host, int(port)), timeout=timeout)
    except OSError as e:
        raise FerOrchError(f"could not join the Ray cluster at {address} ({e.strerror or 'no answer'}): start it there "
                           f"(`ray start --head`) or fix --address / $RAY_ADDRESS") from None
    with conn:
        if os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true"):
            return
        try:  # HTTP/2 client preface + an empty SETTINGS frame; a gRPC server answers with its SETTINGS
            conn.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
            head = conn.recv(9)
        except OSError:
            head = b""
    if len(head) < 4 or head[3] != 0x04:
        raise FerOrchError(f"{address} accepts connections but does not answer as a Ray cluster within {timeout:g} s: "
                           f"fix --address / $RAY_ADDRESS (the head's GCS port, 6379 by default)")


def join_error(address: str, err: BaseException):
    """One sentence for a cluster that could not be joined (Ray's own is a long traceback
    after 20 s of retries; a missing auth token reads like an unreachable address)."""
    from fer_models.errors import FerOrchError

    text = " ".join(str(x) for x in (err, err.__cause__, err.__context__) if x is not None)
    if "InvalidAuthToken" in text or "AuthenticationError" in text:
        return FerOrchError(
            f"the Ray cluster at {address} requires token authentication: set RAY_AUTH_MODE=token and give fer-orch "
            f"the cluster's token (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token, as on the head node)"
        )
    return FerOrchError(
        f"could not join the Ray cluster at {address}: start it there (`ray start --head`) or fix --address / $RAY_ADDRESS"
    )


def is_loopback(host: str | None) -> bool:
    """``localhost``, ``127.x.y.z`` or ``::1``: a name that means "this machine" only here."""
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def driver_host(ray: Any) -> str:
    """The address the cluster knows this process's machine by: the address of the Ray node
    this driver is attached to (``ray.util.get_node_ip_address()`` would instead guess the
    machine's outward address, which is wrong for nodes started with ``--node-ip-address
    127.0.0.1``)."""
    here = ray.get_runtime_context().get_node_id()
    for n in ray.nodes():
        if n.get("NodeID") == here:
            return n["NodeManagerAddress"]
    return ray.util.get_node_ip_address()


def hosts_elsewhere(ray: Any, origin: str) -> list[str]:
    """The addresses of the live nodes that are on another machine than ``origin``."""
    if is_loopback(origin):  # a cluster whose head is on loopback cannot span machines
        return []
    return sorted({n["NodeManagerAddress"] for n in ray.nodes() if n.get("Alive")} - {origin})


def uri_seen_from(uri: str, origin: str | None, here: str | None) -> str:
    """``uri`` as given on the machine ``origin``, as it must be written on the machine ``here``.

    A loopback URI (``http://localhost:5000``, ``http://127.0.0.1:5000``) names the server
    on ``origin``; on another machine it would name that machine itself, so there the host
    is replaced by ``origin`` (the MLflow server must then listen on an outward interface:
    its private address, as cluster.yaml starts it). Everywhere else, and for
    every other URI, the user's URI is used as given: nodes on one machine (a cluster whose
    nodes all say ``--node-ip-address 127.0.0.1``, or a local Ray) never rewrite it.
    """
    parsed = urllib.parse.urlparse(uri)
    if (parsed.scheme not in ("http", "https") or not is_loopback(parsed.hostname) or not origin
            or not here or here == origin or is_loopback(origin) or is_loopback(here)):
        return uri
    host = f"[{origin}]" if ":" in origin else origin
    netloc = host if parsed.port is None else f"{host}:{parsed.port}"
    if "@" in parsed.netloc:
        netloc = parsed.netloc.rsplit("@", 1)[0] + "@" + netloc
    return parsed._replace(netloc=netloc).geturl()



#: Environment variables that are credentials: a trial gets them from its node (an instance
#: role, the node's own environment), never from the driver through Ray.
SECRET_ENV = frozenset({
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
    "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME",
    "GOOGLE_APPLICATION_CREDENTIALS", "AZURE_STORAGE_KEY", "RAY_AUTH_TOKEN",
})


def keep_secrets_out_of_trials() -> None:
    """Stop Ray Tune from copying the driver's cloud keys into every trial's ``runtime_env``.

    Tune's actor cache (``ray.tune.execution.class_cache``) adds ``AWS_ACCESS_KEY_ID``,
    ``AWS_SECRET_ACCESS_KEY`` and the session tokens of the driver's environment to the
    ``runtime_env`` of each trial actor; Ray then sends them through the GCS and writes them
    in plain text to its session logs (``runtime_env_agent.log``). Tune offers no option for
    this, so the module's set is narrowed here (a library internal: if it moves, nothing is
    narrowed and :func:`trial_env_leaks` says so in the tests).
    """
    try:
        from ray.tune.execution import class_cache
    except ImportError:
        return
    class_cache.ENV_VARS_TO_PROPAGATE = frozenset(class_cache.ENV_VARS_TO_PROPAGATE) - SECRET_ENV


def trial_env_leaks() -> set[str]:
    """The secret variables Tune would still hand a trial (empty once narrowed)."""
    from ray.tune.execution import class_cache

    return set(class_cache.ENV_VARS_TO_PROPAGATE) & SECRET_ENV


def check_feasible(ray: Any, need: dict[str, float], joined: bool = True) -> None:
    """One sentence before any trial when no node can ever offer one trial's resources.

    Tune would otherwise wait forever for them. A node counts when it is alive now, or is a
    node type the autoscaler may start (the cluster config it publishes in the GCS). On a
    cluster that autoscales but publishes no node types (the v1 autoscaler of ``ray up``),
    nothing is refused: its workers may not have started yet. A Ray this process started
    (``joined`` false) never grows: what its node offers is all there is.
    """
    import json

    from fer_models.errors import ConfigError

    want = {("CPU" if k == "cpu" else "GPU" if k == "gpu" else k): float(v) for k, v in need.items() if v}
    offers = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    try:
        from ray._private.state import state

        config = state.get_cluster_config()
        offers += [dict(g.resources) for g in config.node_group_configs] if config is not None else []
        from ray.experimental.internal_kv import _internal_kv_get

        status = json.loads(_internal_kv_get("__autoscaling_status") or b"{}")
        autoscaling = joined and (config is not None or "autoscaler_report" in status)
    except Exception:  # a private API that moved: never refuse on a guess
        return
    if any(all(o.get(k, 0.0) + 1e-9 >= v for k, v in want.items()) for o in offers):
        return
    if autoscaling and (config is None or not config.node_group_configs):
        return
    missing = sorted({k for k, v in want.items() if max((o.get(k, 0.0) for o in offers), default=0.0) < v})
    best = ", ".join(f"{k} {max((o.get(k, 0.0) for o in offers), default=0.0):g}" for k in missing)
    asked = ", ".join(f"{k} {want[k]:g}" for k in missing)
    raise ConfigError(f"each trial asks for {asked}, but no node of this Ray cluster offers that (the most one "
                      f"offers: {best}): lower --gpus-per-trial / --cpus-per-trial / --trial-resources, or add such a node")
