"""Fleet drift on real proxies: `serve` with a local HAProxy and an Envoy that announces its
admin address; `POST /v1/status:verify` (and `controlplane status --verify`) finds both running
what was intended, then finds what was changed behind the control plane's back: a map entry
set through HAProxy's runtime API, and an Envoy fed another route table by a rogue snapshot."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from controlplane.fleet import EnvoyPlane
from controlplane.model import load_text
from controlplane.serve import Running, ServeOptions, start_server
from tests.harness.envoy import EnvoyProcess, wait_for
from tests.harness.loop_thread import LoopThread
from tests.harness.ports import free_port

pytestmark = [pytest.mark.envoy, pytest.mark.haproxy, pytest.mark.timeout(120)]

TOKEN = "drift-token-0123456789abcdef"
CONFIG = """\
listeners:
  - name: web
    address: 127.0.0.1:{port}
    protocol: http
    virtual_hosts:
      - name: site
        domains: ["*"]
        routes:
          - {{name: api, match: {{path: {{prefix: /api}}}}, backends: [{{cluster: api}}]}}
          - {{name: default, backends: [{{cluster: web}}]}}
clusters:
  - {{name: api, endpoints: [{{address: "127.0.0.1:{api}"}}]}}
  - {{name: web, endpoints: [{{address: "127.0.0.1:{web}"}}]}}
"""


@dataclass
class Fleet:
    running: Running
    envoy: EnvoyProcess
    api: httpx.Client
    text: str

    def verify(self) -> dict[str, Any]:
        reply = self.api.post("/v1/status:verify")
        assert reply.status_code == 200, reply.text
        checks: dict[str, Any] = {p["id"]: p for p in reply.json()["proxies"]}
        return checks


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    tmp = tmp_path_factory.mktemp("drift")
    text = CONFIG.format(port=free_port(), api=free_port(), web=free_port())
    (tmp / "config.yaml").write_text(text)
    (tmp / "tokens.yaml").write_text(f"- {{name: ops, token: {TOKEN}, scopes: [read, write]}}\n")
    options = ServeOptions(
        db=tmp / "store.db",
        config=tmp / "config.yaml",
        api="127.0.0.1:0",
        xds="127.0.0.1:0",
        tokens_file=tmp / "tokens.yaml",
        haproxy_groups=("default",),
        haproxy_bind="127.0.0.2",
        workdir=tmp / "run",
    )
    thread = LoopThread()
    running = thread.run(start_server(options))
    envoy = EnvoyProcess(
        tmp, "drift-envoy", "default", running.xds.port or 0, admin_port=free_port()
    )
    api = httpx.Client(
        base_url=running.api.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30
    )
    try:
        envoy.start()
        wait_for("both proxies", lambda: running.ledger.count() == 2, 15)
        assert api.get("/v1/status/wait", params={"revision": 1, "timeout": 15}).json()["converged"]
        yield Fleet(running, envoy, api, text)
    finally:
        try:
            envoy.stop()
            api.close()
            thread.run(running.stop())
        finally:
            thread.close()


def test_both_proxies_run_what_was_intended(fleet: Fleet) -> None:
    checks = fleet.verify()
    print(checks)
    envoy, haproxy = checks["drift-envoy"], checks["local-haproxy-default"]
    assert envoy["verified"] and envoy["differences"] == []
    assert set(envoy["running"]["versions"]) == {"clusters", "endpoints", "listeners", "routes"}
    assert haproxy["verified"] and haproxy["differences"] == []
    status = fleet.api.get("/v1/status").json()
    assert status["verification"]["drifted"] == []


def test_a_map_entry_changed_through_the_runtime_api_is_drift(fleet: Fleet) -> None:
    manager = fleet.running.local[0].manager
    [ref] = [m for m in manager.runtime.show_maps() if m.file.endswith("web.prefix.map")]
    entries = dict((e.key, e.value) for e in manager.runtime.show_map(f"#{ref.id}"))
    intended = entries["/api/"]
    manager.runtime.set_map(f"#{ref.id}", "/api/", intended.replace("api", "web"))
    try:
        checks = fleet.verify()
        haproxy = checks["local-haproxy-default"]
        print(haproxy)
        assert haproxy["differences"] == [
            f"map web.prefix.map: /api/ = {intended.replace('api', 'web')!r}, intended {intended!r}"
        ]
        assert checks["drift-envoy"]["differences"] == []
        shown = fleet.api.get("/v1/status").json()["verification"]
        assert shown["drifted"] == ["local-haproxy-default"]
        cli = subprocess.run(
            [
                *(sys.executable, "-m", "controlplane.cli", "status", "--verify"),
                *("--server", fleet.running.api.url, "--token", TOKEN),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        print(cli.stdout)
        assert cli.returncode == 1, cli.stderr
        assert "haproxy local-haproxy-default (default): DRIFT, 1 differences" in cli.stdout
        assert "envoy drift-envoy (default): runs what was intended" in cli.stdout
    finally:
        manager.runtime.set_map(f"#{ref.id}", "/api/", intended)
    assert fleet.verify()["local-haproxy-default"]["differences"] == []


def test_an_envoy_fed_another_route_table_is_drift(fleet: Fleet) -> None:
    rogue = load_text(fleet.text.replace("prefix: /api", "prefix: /rogue"))
    plane = EnvoyPlane(fleet.running.xds.cache)  # a rogue publisher of the server's cache
    plane.publish(0, {"default": plane.compile(rogue, "default")}, frozenset())

    def routes_rogue() -> bool:
        return "/rogue" in fleet.envoy.admin("/config_dump?resource=dynamic_route_configs")

    wait_for("Envoy to run the rogue routes", routes_rogue, 15)
    try:
        envoy = fleet.verify()["drift-envoy"]
        print(envoy)
        assert envoy["count"] == 1
        assert envoy["differences"][0].startswith("route web: runs other content (version ")
        # routes[0] of every virtual host refuses a Host holding a comma; the /api route follows
        assert envoy["differences"][0].endswith(
            "at virtual_hosts[0].routes[1].match.path_separated_prefix"
        )
    finally:
        head = fleet.running.store.head()
        assert head is not None
        plane.publish(0, {"default": plane.compile(head.config, "default")}, frozenset())
        wait_for("Envoy back on the head", lambda: not routes_rogue(), 15)
    assert fleet.verify()["drift-envoy"]["differences"] == []
