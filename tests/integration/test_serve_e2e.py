"""The whole server on real proxies: `start_server` with its REST API, xDS server and a local
HAProxy, a real Envoy fed over xDS, and backends that say who they are.

Every change is made through the REST API (or `controlplane apply` as a subprocess) and proven
by traffic through both proxies, while `/v1/status` and `/v1/status/wait` must tell the same
story. Envoy listens on the config's address (127.0.0.1); the local HAProxy runs the same group
relocated onto 127.0.0.2, same ports (what `make run` does).

The tests share one server and run in file order; each leaves the config the way the next
expects it (the head serving `/api` from `api`, everything else from `web`), and the restart
comes last.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from controlplane.proxies.haproxy.manager import HAProxyManager
from controlplane.serve import ServeOptions
from tests.harness.backends import BackendFleet, BackendSpec
from tests.harness.clients import http
from tests.harness.envoy import EnvoyProcess, wait_for
from tests.harness.loop_thread import LoopThread
from tests.harness.ports import free_port
from tests.harness.served import ServedServer

pytestmark = [pytest.mark.envoy, pytest.mark.haproxy, pytest.mark.timeout(120)]

T = TypeVar("T")

ENVOY_HOST = "127.0.0.1"
HAPROXY_HOST = "127.0.0.2"
TOKEN = "e2e-token-0123456789abcdef"
ENVOY_ID = "e2e-envoy"
HAPROXY_ID = "local-haproxy-default"
WAIT = 15.0
ENVOY_RE2_LIMIT = 100
"""The lab's Envoy keeps Envoy's own RE2 program size limit (`envoy-bootstrap` raises it to
10,000), as an Envoy the control plane did not bootstrap would: a way to make it NACK what
the model accepts."""
RE2_TOO_BIG = "/nack/[a-z]{200}"
"""A path regex the model accepts and HAProxy (PCRE) takes, whose RE2 program exceeds the lab
Envoy's limit: Envoy NACKs it."""

ENVOY_LISTENER_STATS = (
    "listener_manager.listener_added",
    "listener_manager.listener_modified",
    "listener_manager.listener_removed",
    "listener_manager.total_listeners_draining",
)

CONFIG = """\
listeners:
  - name: web
    address: {envoy}:{port}
    protocol: http
    virtual_hosts:
      - name: site
        domains: ["*"]
        routes:
          - name: api
            match: {{path: {{prefix: /api}}}}
            backends: [{{cluster: api}}]
          - name: spread  # keeps every cluster in use, so changes above stay runtime updates
            match: {{path: {{prefix: /spread}}}}
            backends: [{{cluster: api}}, {{cluster: v2}}, {{cluster: web}}]
          - name: default
            backends: [{{cluster: web}}]
clusters:
  - {{name: api, endpoints: [{{address: "{api}"}}]}}
  - {{name: v2, endpoints: [{{address: "{v2}"}}]}}
  - {{name: web, endpoints: [{{address: "{web}"}}]}}
"""


class Lab(ServedServer):
    """The server (stopped and started again by the tests), its Envoy and HAProxy, the
    backends' port, and an API client."""

    def __init__(self, thread: LoopThread, options: ServeOptions, port: int) -> None:
        super().__init__(thread, options, TOKEN)
        self.port = port
        self.envoy: EnvoyProcess | None = None

    def close(self) -> None:
        try:
            if self.envoy is not None:
                self.envoy.stop()
        finally:
            try:
                self.stop()
            finally:
                self.api.close()

    @property
    def haproxy(self) -> HAProxyManager:
        return self.local

    def listener_stats(self) -> dict[str, int]:
        """Envoy's listener-manager statistics that move when a listener is touched."""
        assert self.envoy is not None
        return {k: v for k, v in self.envoy.stats().items() if k in ENVOY_LISTENER_STATS}

    def head(self) -> int:
        head = self.running.store.head()
        assert head is not None
        return head.number

    def answers(self, host: str, path: str) -> str | None:
        """Which backend answered `path` through the proxy on `host`."""
        return http(host, self.port, path, timeout=5).backend

    def served(self, path: str) -> tuple[str | None, str | None]:
        """(Envoy's answer, HAProxy's answer) to `path`."""
        return self.answers(ENVOY_HOST, path), self.answers(HAPROXY_HOST, path)

    def wait_served(self, path: str, envoy: str, haproxy: str | None = None) -> None:
        """Wait until Envoy answers `path` from backend `envoy` and HAProxy from `haproxy`
        (the same one by default). An ACK reaches Envoy's workers a moment later."""
        wanted = (envoy, haproxy or envoy)
        wait_for(f"{path} served by {wanted}", lambda: self.served(path) == wanted, WAIT)

    def wait_revision(self, revision: int) -> dict[str, Any]:
        reply = self.api.get("/v1/status/wait", params={"revision": revision, "timeout": WAIT})
        assert reply.status_code == 200, reply.text
        result: dict[str, Any] = reply.json()
        return result

    def status(self) -> dict[str, dict[str, Any]]:
        """`/v1/status`'s proxies by id."""
        reply = self.api.get("/v1/status")
        assert reply.status_code == 200, reply.text
        return {p["id"]: p for p in reply.json()["proxies"]}

    def write(self, method: str, path: str, body: Any = None) -> int:
        """A write through the API; returns the revision it made (its ETag)."""
        reply = self.api.request(method, path, json=body)
        assert reply.status_code in (200, 201, 204), reply.text
        return int(reply.headers["etag"].strip('"'))


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    tmp = tmp_path_factory.mktemp("serve")
    port = free_port()
    tokens = tmp / "tokens.yaml"
    tokens.write_text(f"- {{name: e2e, token: {TOKEN}, scopes: [read, write]}}\n")
    with BackendFleet() as backends:
        found = backends.start_all(BackendSpec(name) for name in ("api", "v2", "web"))
        config = tmp / "config.yaml"
        addresses = {name: backend.address for name, backend in found.items()}
        config.write_text(CONFIG.format(envoy=ENVOY_HOST, port=port, **addresses))
        options = ServeOptions(
            db=tmp / "store.db",
            config=config,
            api="127.0.0.1:0",
            xds="127.0.0.1:0",
            tokens_file=tokens,
            haproxy_groups=("default",),
            haproxy_bind=HAPROXY_HOST,
            haproxy_threads=2,
            workdir=tmp / "run",
        )
        thread = LoopThread()
        lab = Lab(thread, options, port)
        try:
            lab.start()
            lab.envoy = EnvoyProcess(
                tmp,
                ENVOY_ID,
                "default",
                lab.running.xds.port or 0,
                re2_max_program_size=ENVOY_RE2_LIMIT,
            )
            lab.envoy.start()
            # `wait` counts the proxies connected: let the Envoy connect first.
            wait_for("Envoy to connect", lambda: lab.running.ledger.count() == 2, WAIT)
            assert lab.wait_revision(1)["converged"]
            yield lab
        finally:
            try:
                lab.close()
            finally:
                thread.close()


def test_a_route_change_through_the_api_is_served_by_both_proxies(lab: Lab) -> None:
    lab.wait_served("/api/x", "api")
    before = lab.head()

    revision = lab.write(
        "PATCH",
        "/v1/listeners/web/virtual_hosts/site/routes/api",
        {"backends": [{"cluster": "v2"}]},
    )

    assert revision == before + 1
    waited = lab.wait_revision(revision)
    assert waited["converged"] and (waited["acked"], waited["total"]) == (2, 2), waited
    lab.wait_served("/api/x", "v2")
    assert lab.served("/other") == ("web", "web")
    proxies = lab.status()
    assert set(proxies) == {ENVOY_ID, HAPROXY_ID}
    for proxy in proxies.values():
        assert proxy["connected"] and proxy["current"], proxy
        assert proxy["revision"] == revision and proxy["last_nack"] is None, proxy
    assert proxies[ENVOY_ID]["kind"] == "envoy" and proxies[HAPROXY_ID]["kind"] == "haproxy"
    assert proxies[HAPROXY_ID]["detail"]["mode"] == "runtime"  # a map update, no reload

    lab.write(
        "PATCH",
        "/v1/listeners/web/virtual_hosts/site/routes/api",
        {"backends": [{"cluster": "api"}]},
    )
    lab.wait_served("/api/x", "api")


def test_the_local_haproxy_runs_the_threads_serve_was_told(lab: Lab) -> None:
    (local,) = lab.running.local
    assert local.manager.runtime.show_info()["Nbthread"] == "2"


def test_a_change_envoy_refuses_is_reported_and_the_rest_still_runs(lab: Lab) -> None:
    good = lab.head()
    path = "/nack/" + "a" * 200
    assert lab.served(path) == ("web", "web")

    refused = lab.write(
        "POST",
        "/v1/listeners/web/virtual_hosts/site/routes?position=0",
        {"name": "big", "match": {"path": {"regex": RE2_TOO_BIG}}, "backends": [{"cluster": "v2"}]},
    )
    try:
        waited = lab.wait_revision(refused)
        assert not waited["converged"] and (waited["acked"], waited["total"]) == (1, 2), waited
        assert waited["pending"] == []
        [nack] = waited["refused"]
        assert (nack["id"], nack["kind"], nack["refused_revision"]) == (ENVOY_ID, "envoy", refused)
        assert nack["revision"] == good
        assert "RE2" in nack["error"] and "program size" in nack["error"], nack
        # HAProxy runs the new route; Envoy keeps serving the previous revision.
        lab.wait_served(path, envoy="web", haproxy="v2")
        assert lab.served("/api/x") == ("api", "api")
        proxies = lab.status()
        assert proxies[ENVOY_ID]["revision"] == good and not proxies[ENVOY_ID]["current"]
        assert proxies[ENVOY_ID]["last_nack"]["revision"] == refused
        assert proxies[HAPROXY_ID]["revision"] == refused and proxies[HAPROXY_ID]["current"]
    finally:
        fixed = lab.write("DELETE", "/v1/listeners/web/virtual_hosts/site/routes/big")
    waited = lab.wait_revision(fixed)
    assert waited["converged"] and waited["acked"] == 2, waited
    lab.wait_served(path, "web")


def test_a_rollback_is_a_new_revision_served_by_both_proxies(lab: Lab) -> None:
    target = lab.head()
    changed = lab.write(
        "PATCH",
        "/v1/listeners/web/virtual_hosts/site/routes/default",
        {"backends": [{"cluster": "v2"}]},
    )
    assert lab.wait_revision(changed)["converged"]
    lab.wait_served("/other", "v2")

    reply = lab.api.post(f"/v1/revisions/{target}:rollback")

    assert reply.status_code in (200, 201), reply.text
    rolled = int(reply.headers["etag"].strip('"'))
    assert rolled == changed + 1
    assert (
        lab.api.get(f"/v1/config?revision={rolled}").json()
        == lab.api.get(f"/v1/config?revision={target}").json()
    )
    waited = lab.wait_revision(rolled)
    assert waited["converged"] and waited["acked"] == 2, waited
    lab.wait_served("/other", "web")
    assert {p["revision"] for p in lab.status().values()} == {rolled}


def test_writes_that_would_leave_both_proxies_with_nothing_are_refused(lab: Lab) -> None:
    head = lab.head()
    refusals = (
        ("PUT", "/v1/config", b"", "application/yaml"),
        ("PUT", "/v1/config", b"null", "application/json"),
        ("PUT", "/v1/config", b"clusters: []\n", "application/yaml"),
        ("DELETE", "/v1/listeners/web", b"", "application/json"),
    )
    for method, path, body, content_type in refusals:
        reply = lab.api.request(method, path, content=body, headers={"Content-Type": content_type})
        assert reply.status_code == 422, (method, path, body, reply.text)
    emptied = reply.json()["issues"]
    assert emptied == [
        {
            "path": "listeners",
            "message": "node group 'default' would be left without listeners (no listener); "
            f"its connected proxies: {ENVOY_ID}, {HAPROXY_ID}",
        }
    ]
    assert lab.head() == head
    assert lab.served("/api/x") == ("api", "api")
    assert all(p["current"] for p in lab.status().values())


def controlplane_command() -> str:
    return str(Path(sys.executable).with_name("controlplane"))


def test_controlplane_apply_waits_for_both_acks(lab: Lab, tmp_path: Path) -> None:
    config = lab.api.get("/v1/config", headers={"Accept": "application/yaml"}).text
    changed = tmp_path / "changed.yaml"
    changed.write_text(config.replace("cluster: web", "cluster: v2"))
    head = lab.head()

    applied = subprocess.run(
        [controlplane_command(), "apply", str(changed), "--server", lab.url, "--token", TOKEN],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert applied.stdout.strip().splitlines()[-1] == "acked by 2/2", applied.stdout
    assert lab.head() == head + 1
    lab.wait_served("/other", "v2")

    invalid = tmp_path / "invalid.yaml"
    invalid.write_text(
        config.replace("name: v2", "name: v 2").replace("name: spread", "name: Spread")
    )
    refused = subprocess.run(
        [controlplane_command(), "apply", str(invalid), "--server", lab.url, "--token", TOKEN],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert refused.returncode == 2, refused.stdout + refused.stderr
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith(f"{invalid}: ") for line in lines), lines
    assert lab.head() == head + 1

    back = tmp_path / "back.yaml"
    back.write_text(config)
    restored = subprocess.run(
        [controlplane_command(), "apply", str(back), "--server", lab.url, "--token", TOKEN],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert restored.returncode == 0, restored.stdout + restored.stderr
    lab.wait_served("/other", "web")


def test_metrics_show_the_fleet(lab: Lab) -> None:
    text = lab.api.get("/metrics").text
    lines = text.splitlines()

    assert 'controlplane_connected_proxies{group="default",kind="envoy"} 1.0' in lines
    assert 'controlplane_connected_proxies{group="default",kind="haproxy"} 1.0' in lines

    def total(family: str, *labels: str) -> float:
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in lines
            if line.startswith(family + "{") and all(label in line for label in labels)
        )

    assert total("controlplane_pushes_total", 'kind="envoy"', 'type="rds"') >= 5
    assert total("controlplane_acks_total", 'kind="envoy"', 'type="rds"') >= 5
    assert total("controlplane_nacks_total", 'kind="envoy"', 'type="rds"') == 1
    assert total("controlplane_acks_total", 'kind="haproxy"') >= 5
    for kind in ("envoy", "haproxy"):
        count = total("controlplane_push_to_ack_seconds_count", f'kind="{kind}"')
        assert count >= 5
        assert (
            total("controlplane_push_to_ack_seconds_bucket", f'kind="{kind}"', 'le="+Inf"') == count
        )
    assert total("controlplane_haproxy_applies_total", 'mode="start"') == 1
    assert total("controlplane_haproxy_applies_total", 'mode="runtime"') >= 3
    assert total("controlplane_haproxy_applies_total", 'mode="reload"') >= 1  # the regex route


def test_a_restart_keeps_the_store_and_neither_proxy_flaps(lab: Lab) -> None:
    head = lab.head()
    revisions = lab.api.get("/v1/revisions").json()
    before = lab.listener_stats()
    assert set(before) == set(ENVOY_LISTENER_STATS)
    bundle = lab.haproxy.current
    assert bundle is not None
    haproxy_master = lab.haproxy.processes().master.pid
    reloads = lab.haproxy.reload_count()

    lab.stop(keep_proxies=True)
    # With the server gone, both proxies keep serving what they have.
    assert lab.answers(ENVOY_HOST, "/api/x") == "api"
    assert lab.answers(HAPROXY_HOST, "/api/x") == "api"
    lab.start()

    assert lab.head() == head
    assert lab.api.get("/v1/revisions").json() == revisions
    # `wait` counts connected proxies: give Envoy its reconnection (backoff up to 0.5 s) first.
    wait_for("Envoy to reconnect", lambda: lab.running.ledger.count() == 2, WAIT)
    waited = lab.wait_revision(head)
    assert waited["converged"] and waited["acked"] == 2, waited
    lab.wait_served("/api/x", "api")
    assert lab.served("/other") == ("web", "web")
    after = lab.listener_stats()
    assert after == before
    assert {p["revision"] for p in lab.status().values()} == {head}
    # The restarted server adopted the running HAProxy: same master, same bundle, no reload.
    adopted = lab.haproxy.current
    assert adopted is not None and adopted.version == bundle.version
    assert lab.haproxy.processes().master.pid == haproxy_master
    assert lab.haproxy.reload_count() == reloads
