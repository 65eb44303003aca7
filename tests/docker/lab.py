"""What the Docker tests use to look at a running lab: its containers, its API, its proxies'
own counters, and a client that keeps sending requests through the L4 tier."""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

import docker
import httpx
from docker.models.containers import Container

from controlplane.lab import commands

L7_FLEET = ("l7-envoy-1", "l7-envoy-2", "l7-haproxy-1", "l7-haproxy-2")
HAPROXY_HOSTS = ("l4-haproxy", "l7-haproxy-1", "l7-haproxy-2")
ENVOYS = ("l4-envoy", "l7-envoy-1", "l7-envoy-2")

_SHOW_PROC = """
import json
import ssl
from controlplane.proxies.haproxy.manager import HAProxyManager
procs = HAProxyManager("/haproxy").processes()
print(json.dumps({"master": procs.master.pid, "reloads": procs.reloads}))
"""

_MANAGER_STATE = "print(open('/haproxy/manager-state.json').read())"

_ENVOY_STATS = """
import json, urllib.request
text = urllib.request.urlopen("http://127.0.0.1:9901/stats?format=json", timeout=5).read()
print(json.dumps({s["name"]: s["value"] for s in json.loads(text)["stats"] if "value" in s}))
"""

_WATCH_SERVER = """
import sys, time
from controlplane.proxies.haproxy.runtime import RuntimeAPI
api, address, wanted = RuntimeAPI("/haproxy/admin.sock"), sys.argv[1], int(sys.argv[2])
print("watching", flush=True)
while True:
    states = [s for s in api.show_servers_state("l7-fleet") if s.address == address]
    if states and states[0].operational_state == wanted:
        print("reached", time.time(), flush=True)
        break
    time.sleep(0.02)
"""


@dataclass
class LabHandle:
    """A lab started by `controlplane lab up` under compose project `project`."""

    client: docker.DockerClient
    project: str
    state: Path
    up_output: str

    @property
    def lab(self) -> commands.Lab:
        return commands.Lab(self.state, self.project)

    @property
    def settings(self) -> dict[str, str]:
        return self.lab.settings()

    def port(self, variable: str) -> int:
        return int(self.settings[variable])

    @property
    def http_port(self) -> int:
        """The published port of the L4 HAProxy."""
        return self.port("CP_LAB_HTTP_PORT")

    @property
    def envoy_l4_port(self) -> int:
        return self.port("CP_LAB_ENVOY_L4_PORT")

    def api(self) -> httpx.Client:
        """An admin client of the lab's REST API."""
        return httpx.Client(
            base_url=self.lab.api_url(),
            headers={"Authorization": f"Bearer {self.lab.admin_token()}"},
            verify=ssl.create_default_context(cafile=self.lab.secrets / "ca.crt"),
            timeout=30,
        )

    def container(self, service: str) -> Container:
        labels = [
            f"com.docker.compose.project={self.project}",
            f"com.docker.compose.service={service}",
        ]
        [found] = self.client.containers.list(all=True, filters={"label": labels})
        return found

    def address(self, service: str) -> str:
        """The service's static address on the lab network."""
        networks = self.container(service).attrs["NetworkSettings"]["Networks"]
        return str(networks[f"{self.project}_lab"]["IPAMConfig"]["IPv4Address"])

    def python(self, service: str, code: str, *args: str) -> str:
        """Run Python code inside a service's container; its standard output."""
        exit_code, output = self.container(service).exec_run(["python3", "-c", code, *args])
        text = output.decode(errors="replace")
        assert exit_code == 0, f"{service}: {text}"
        return text

    def haproxy_master(self, service: str) -> dict[str, int]:
        """`{"master": pid, "reloads": n}` of the HAProxy in a HAProxy container."""
        return dict(json.loads(self.python(service, _SHOW_PROC)))

    def haproxy_version(self, service: str) -> str:
        """The bundle version the HAProxy of a HAProxy container runs (its manager's record)."""
        state = json.loads(self.python(service, _MANAGER_STATE))
        return str(state["version"])

    def envoy_stats(self, service: str) -> dict[str, int]:
        """An Envoy's counters, read from its admin interface (127.0.0.1 of its own network
        namespace) by a short-lived container sharing that namespace."""
        output = self.client.containers.run(
            self.settings["CP_IMAGE"],
            ["python3", "-c", _ENVOY_STATS],
            network_mode=f"container:{self.container(service).id}",
            remove=True,
        )
        return dict(json.loads(output))

    def watch_l4_server(self, service: str, up: bool) -> Iterator[str]:
        """Lines from a watcher inside the L4 HAProxy: "watching", then "reached <time>" once
        its health check has put `service` in (`up`) or taken it out of the l7-fleet backend."""
        _, stream = self.container("l4-haproxy").exec_run(
            ["python3", "-c", _WATCH_SERVER, self.address(service), "2" if up else "0"],
            stream=True,
        )
        pending = ""
        for chunk in stream:
            pending += chunk.decode()
            *lines, pending = pending.split("\n")
            yield from lines

    def wait_converged(self, *proxies: str, timeout: float = 60) -> dict[str, Any]:
        """Wait until every proxy (or those named) reports the head revision in /v1/status."""
        return commands.wait_converged(
            self.lab, lambda line: None, timeout, proxies or commands.PROXIES
        )

    def run_client(self, code: str, *args: str) -> str:
        """Run Python code in a fresh container on the lab network (a client inside it)."""
        output = self.client.containers.run(
            self.settings["CP_IMAGE"],
            ["python3", "-c", code, *args],
            network=f"{self.project}_lab",
            dns=["127.0.0.1"],
            remove=True,
        )
        return output.decode()


@dataclass(frozen=True)
class Result:
    """One request of `Traffic`: when it started and ended, and what answered."""

    started: float
    ended: float
    ok: bool
    backend: str = ""
    peer: str = ""
    error: str = ""

    @property
    def peer_ip(self) -> str:
        return self.peer.rsplit(":", 1)[0]


def get(port: int, path: str = "/", headers: dict[str, str] | None = None) -> dict[str, Any]:
    """One request on a new connection to 127.0.0.1:port; the backend's JSON answer."""
    connection = HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", path, headers={"Connection": "close", **(headers or {})})
        response = connection.getresponse()
        body = response.read()
        assert response.status == 200, (response.status, body[:300])
        return dict(json.loads(body))
    finally:
        connection.close()


class Traffic:
    """Requests to 127.0.0.1:port, each on a new connection (so the L4 tier balances each),
    from `workers` threads one after the other, until stopped; every outcome is kept."""

    def __init__(self, port: int, path: str = "/", workers: int = 2, timeout: float = 3.0) -> None:
        self.port = port
        self.path = path
        self.timeout = timeout
        self.results: list[Result] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._loop, daemon=True) for _ in range(workers)]

    def __enter__(self) -> Traffic:
        for thread in self._threads:
            thread.start()
        self.wait_served(10)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def _loop(self) -> None:
        while not self._stop.is_set():
            started = time.time()
            connection = HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
            try:
                connection.request("GET", self.path, headers={"Connection": "close"})
                response = connection.getresponse()
                body = json.loads(response.read())
                ok = response.status == 200
                result = Result(
                    started,
                    time.time(),
                    ok,
                    body.get("backend", ""),
                    body.get("peer", ""),
                    "" if ok else f"HTTP {response.status}",
                )
            except (OSError, ValueError) as exc:
                result = Result(started, time.time(), False, error=f"{type(exc).__name__}: {exc}")
            finally:
                connection.close()
            with self._lock:
                self.results.append(result)

    def served(self) -> list[Result]:
        with self._lock:
            return [r for r in self.results if r.ok]

    def failed(self, started_after: float = 0.0) -> list[Result]:
        with self._lock:
            return [r for r in self.results if not r.ok and r.started >= started_after]

    def wait_served(self, count: int, timeout: float = 30.0) -> None:
        """Wait until `count` more requests than now have been answered."""
        target = len(self.served()) + count
        deadline = time.monotonic() + timeout
        while len(self.served()) < target:
            assert time.monotonic() < deadline, f"traffic stalled: {self.failed()[-3:]}"
            time.sleep(0.02)
