"""A secured deployment end to end: `serve` with mutual-TLS xDS and an HTTPS API, a real Envoy
bootstrapped by `controlplane envoy-bootstrap` with its client certificate, the local HAProxy,
and a `HAProxyAgent` that verifies the API with the CA; certificates from a throwaway PKI.

Group `edge` (the Envoy and the local HAProxy, relocated onto 127.0.0.2) terminates TLS for
example.com; group `inner` (the agent's HAProxy) for other.test. Simulated xDS clients try
what an attacker would: no certificate, another CA's certificate, a certificate of one group
claiming another group or another node id.
"""

from __future__ import annotations

import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from controlplane.proxies.haproxy.agent import BundleClient, HAProxyAgent, ServerProblem
from controlplane.serve import Running, ServeOptions, TlsFiles, start_server
from controlplane.xds import types
from controlplane.xds.identity import node_uri
from tests.harness.backends import BackendFleet, BackendSpec
from tests.harness.clients import Response, http
from tests.harness.envoy import EnvoyProcess, wait_for
from tests.harness.loop_thread import LoopThread
from tests.harness.pki import Issued, TestPki
from tests.harness.ports import free_port

pytestmark = [pytest.mark.envoy, pytest.mark.haproxy, pytest.mark.timeout(180)]

CERTS = Path(__file__).resolve().parents[1] / "certs"
EDGE_KEY = (CERTS / "example.com.key").read_text()
INNER_KEY = (CERTS / "other.test.key").read_text()
ADMIN_TOKEN = "secure-admin-0123456789abcdef"
READ_TOKEN = "secure-reader-0123456789abcdef"
AGENT_TOKEN = "secure-agent-0123456789abcdef"
ENVOY_ID = "edge-1"
AGENT_ID = "inner-agent-1"
LOCAL_ID = "local-haproxy-edge"
WAIT = 20.0

CONFIG = """\
listeners:
  - name: edge
    address: 127.0.0.1:{edge_port}
    protocol: https
    certificates:
      - {{server_names: [example.com], cert: {certs}/example.com.crt, key: {certs}/example.com.key}}
    virtual_hosts:
      - {{name: all, domains: ["*"], routes: [{{backends: [{{cluster: web}}]}}]}}
  - name: inner
    address: 127.0.0.1:{inner_port}
    protocol: https
    certificates:
      - {{server_names: [other.test], cert: {certs}/other.test.crt, key: {certs}/other.test.key}}
    virtual_hosts:
      - {{name: all, domains: ["*"], routes: [{{backends: [{{cluster: web}}]}}]}}
clusters:
  - {{name: web, endpoints: [{{address: "{web}"}}]}}
node_groups:
  - {{name: edge, listeners: [edge]}}
  - {{name: inner, listeners: [inner]}}
"""


def controlplane(*args: str) -> subprocess.CompletedProcess[str]:
    command = str(Path(sys.executable).with_name("controlplane"))
    return subprocess.run([command, *args], capture_output=True, text=True, timeout=60)


@dataclass
class Lab:
    running: Running
    pki: TestPki
    envoy: EnvoyProcess
    agent: HAProxyAgent
    api: httpx.Client
    edge_port: int
    inner_port: int

    @property
    def url(self) -> str:
        return self.running.api.url

    @property
    def xds_port(self) -> int:
        assert self.running.xds.port is not None
        return self.running.xds.port

    def status(self) -> dict[str, dict[str, Any]]:
        reply = self.api.get("/v1/status")
        assert reply.status_code == 200, reply.text
        return {p["id"]: p for p in reply.json()["proxies"]}

    def wait_revision(self, revision: int) -> None:
        wait_for("three proxies", lambda: self.running.ledger.count() == 3, WAIT)
        reply = self.api.get("/v1/status/wait", params={"revision": revision, "timeout": WAIT})
        assert reply.status_code == 200 and reply.json()["converged"], reply.text

    def https(self, host: str, port: int, sni: str) -> Response:
        return http(host, port, "/", tls=True, sni=sni, timeout=5)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    tmp = tmp_path_factory.mktemp("secure")
    pki = TestPki(tmp / "pki")
    server = pki.server("controlplane")
    edge_cert = pki.client("edge-1", (node_uri("edge", ENVOY_ID),))
    tokens = tmp / "tokens.yaml"
    tokens.write_text(
        f"- {{name: admin, token: {ADMIN_TOKEN}, scopes: [read, write]}}\n"
        f"- {{name: reader, token: {READ_TOKEN}, scopes: [read]}}\n"
        f"- {{name: inner-agents, token: {AGENT_TOKEN}, scopes: [agent], groups: [inner]}}\n"
    )
    edge_port, inner_port = free_port(), free_port()
    with BackendFleet() as backends:
        web = backends.start(BackendSpec("web"))
        config = tmp / "config.yaml"
        config.write_text(
            CONFIG.format(edge_port=edge_port, inner_port=inner_port, certs=CERTS, web=web.address)
        )
        options = ServeOptions(
            db=tmp / "store.db",
            config=config,
            api="127.0.0.1:0",
            xds="127.0.0.1:0",
            tokens_file=tokens,
            haproxy_groups=("edge",),
            haproxy_bind="127.0.0.2",
            workdir=tmp / "run",
            xds_tls=TlsFiles(server.cert, server.key, pki.ca),
            api_tls=TlsFiles(server.cert, server.key),
        )
        thread = LoopThread()
        running = thread.run(start_server(options))
        agent: HAProxyAgent | None = None
        agent_thread: threading.Thread | None = None
        envoy: EnvoyProcess | None = None
        api = httpx.Client(
            base_url=running.api.url,
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            verify=ssl.create_default_context(cafile=pki.ca),
            timeout=30,
        )
        try:
            bootstrap = controlplane(
                "envoy-bootstrap",
                *("--node-id", ENVOY_ID, "--group", "edge"),
                *("--xds", f"127.0.0.1:{running.xds.port}", "--admin-port", str(free_port())),
                *("--xds-ca", str(pki.ca)),
                *("--tls-cert", str(edge_cert.cert), "--tls-key", str(edge_cert.key)),
            )
            assert bootstrap.returncode == 0, bootstrap.stderr
            envoy = EnvoyProcess(tmp, ENVOY_ID, "edge", 0, bootstrap=bootstrap.stdout)
            envoy.start()
            agent = HAProxyAgent(
                running.api.url,
                "inner",
                tmp / "agent",
                haproxy_bin="/usr/sbin/haproxy",
                instance_id=AGENT_ID,
                token=AGENT_TOKEN,
                ca=str(pki.ca),
                poll_wait=1.0,
                backoff_initial=0.05,
                backoff_max=0.5,
            )
            agent_thread = threading.Thread(target=agent.run, name="agent", daemon=True)
            agent_thread.start()
            lab = Lab(running, pki, envoy, agent, api, edge_port, inner_port)
            lab.wait_revision(1)
            yield lab
        finally:
            try:
                if agent is not None and agent_thread is not None:
                    agent.stop()
                    agent_thread.join(WAIT)
                    agent.manager.stop()
                if envoy is not None:
                    envoy.stop()
            finally:
                api.close()
                thread.run(running.stop())
                thread.close()


def test_an_envoy_bootstrapped_over_mutual_tls_serves_traffic(lab: Lab) -> None:
    for host in ("127.0.0.1", "127.0.0.2"):  # the Envoy, and the local HAProxy
        answer = lab.https(host, lab.edge_port, "example.com")
        assert answer.status == 200 and answer.backend == "web", answer
        assert answer.peer_cert is not None and answer.peer_cert.common_name == "example.com"
    envoy = lab.status()[ENVOY_ID]
    assert envoy["connected"] and envoy["current"] and envoy["group"] == "edge", envoy
    assert lab.envoy.stats()["cluster.controlplane_xds.ssl.handshake"] >= 1  # xDS over TLS


def test_an_agent_with_the_ca_follows_its_group_over_https(lab: Lab) -> None:
    assert lab.url.startswith("https://")
    answer = lab.https("127.0.0.1", lab.inner_port, "other.test")
    assert answer.status == 200 and answer.backend == "web", answer
    assert answer.peer_cert is not None and answer.peer_cert.common_name == "other.test"
    agent = lab.status()[AGENT_ID]
    assert agent["connected"] and agent["current"] and agent["group"] == "inner", agent

    unverified = BundleClient(lab.url, "inner", "someone", AGENT_TOKEN)
    try:
        with pytest.raises(ServerProblem, match="CERTIFICATE_VERIFY_FAILED"):
            unverified.fetch(None, 0)
    finally:
        unverified.close()


def test_the_cli_verifies_the_api_with_the_ca(lab: Lab) -> None:
    verified = controlplane(
        "status", "--server", lab.url, "--token", ADMIN_TOKEN, "--ca", str(lab.pki.ca)
    )
    assert verified.returncode == 0, verified.stderr
    assert ENVOY_ID in verified.stdout and AGENT_ID in verified.stdout

    unverified = controlplane("status", "--server", lab.url, "--token", ADMIN_TOKEN)
    assert unverified.returncode == 1
    assert "certificate verify failed" in unverified.stderr.lower(), unverified.stderr


def first_listeners(
    lab: Lab, credentials: grpc.ChannelCredentials | None, node_id: str, group: str
) -> discovery_pb2.DiscoveryResponse:
    """The first LDS answer over ADS to node (`node_id`, `group`); plain text without
    `credentials`. Raises grpc.RpcError when the server refuses."""
    target = f"127.0.0.1:{lab.xds_port}"
    channel = (
        grpc.secure_channel(target, credentials) if credentials else grpc.insecure_channel(target)
    )
    with channel:
        stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
        request = discovery_pb2.DiscoveryRequest(
            node=base_pb2.Node(id=node_id, cluster=group), type_url=types.LISTENER
        )
        reply: discovery_pb2.DiscoveryResponse = next(
            stub.StreamAggregatedResources(iter([request]), timeout=10)
        )
        return reply


def credentials(lab: Lab, issued: Issued | None) -> grpc.ChannelCredentials:
    ca = lab.pki.ca.read_bytes()
    if issued is None:
        return grpc.ssl_channel_credentials(ca)
    return grpc.ssl_channel_credentials(ca, issued.key_pem.encode(), issued.cert_pem.encode())


def fleet_view(lab: Lab) -> dict[str, tuple[Any, ...]]:
    """What /v1/status says of each proxy, leaving out when it was last seen."""
    return {
        pid: (p["group"], p["kind"], p["connected"], p["revision"], p["current"], p["last_nack"])
        for pid, p in lab.status().items()
    }


def test_a_client_without_a_certificate_of_the_ca_cannot_stream(lab: Lab) -> None:
    before = fleet_view(lab)
    stranger = TestPki(lab.pki.directory / "other", name="another CA").client(
        "stranger", (node_uri("edge", "stranger"),)
    )
    attempts = {
        "plain text": None,
        "TLS without a client certificate": credentials(lab, None),
        "a certificate of another CA": grpc.ssl_channel_credentials(
            lab.pki.ca.read_bytes(), stranger.key_pem.encode(), stranger.cert_pem.encode()
        ),
    }
    for what, creds in attempts.items():
        with pytest.raises(grpc.RpcError) as refused:
            first_listeners(lab, creds, "stranger", "edge")
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE, what
    assert fleet_view(lab) == before
    assert lab.running.ledger.get("stranger") is None


def test_a_certificate_cannot_claim_another_group_or_node_id(
    lab: Lab, caplog: pytest.LogCaptureFixture
) -> None:
    edge_2 = credentials(lab, lab.pki.client("edge-2", (node_uri("edge", "edge-2"),)))
    before = fleet_view(lab)

    for node_id, group in [("edge-2", "inner"), (ENVOY_ID, "edge"), ("", "edge")]:
        with pytest.raises(grpc.RpcError) as refused:
            first_listeners(lab, edge_2, node_id, group)
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED, (node_id, group)
        assert "is not an identity its client certificate names" in str(refused.value.details())

    assert fleet_view(lab) == before
    assert lab.running.ledger.get("edge-2") is None
    refusals = [m for r in caplog.records if "refused an xDS stream" in (m := r.getMessage())]
    assert len(refusals) == 3 and "node 'edge-1' of group 'edge'" in refusals[1], refusals
    own = first_listeners(lab, edge_2, "edge-2", "edge")
    assert len(own.resources) == 1


def test_a_proxy_receives_only_its_own_groups_private_keys(lab: Lab) -> None:
    edge = credentials(lab, lab.pki.client("edge-3", (node_uri("edge", "edge-3"),)))
    inner_fleet = credentials(lab, lab.pki.client("inner-fleet", (node_uri("inner"),)))

    edge_listeners = first_listeners(lab, edge, "edge-3", "edge").SerializeToString()
    inner_listeners = first_listeners(lab, inner_fleet, "any-inner", "inner").SerializeToString()

    assert EDGE_KEY.encode() in edge_listeners and INNER_KEY.encode() not in edge_listeners
    assert INNER_KEY.encode() in inner_listeners and EDGE_KEY.encode() not in inner_listeners
    with pytest.raises(grpc.RpcError) as refused:
        first_listeners(lab, inner_fleet, "any-inner", "edge")
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_reads_show_no_private_key_and_the_feed_refuses_a_read_token(lab: Lab) -> None:
    reader = {"Authorization": f"Bearer {READ_TOKEN}"}
    for url in ("/v1/config", "/v1/listeners/edge", "/v1/listeners"):
        reply = lab.api.get(url, headers=reader)
        assert reply.status_code == 200 and "PRIVATE KEY" not in reply.text, url
    yaml_reply = lab.api.get("/v1/config", headers={**reader, "Accept": "application/yaml"})
    assert yaml_reply.status_code == 200 and "PRIVATE KEY" not in yaml_reply.text
    feed = lab.api.get("/v1/haproxy/edge/bundle", headers=reader)
    assert feed.status_code == 403 and "PRIVATE KEY" not in feed.text


def test_get_then_put_with_redacted_keys_keeps_every_proxy_serving_tls(lab: Lab) -> None:
    reply = lab.api.get("/v1/config")
    assert "PRIVATE KEY" not in reply.text
    data = reply.json()
    for listener in data["listeners"]:
        listener["request_id"] = True  # a change every proxy must take

    put = lab.api.put("/v1/config", json=data, headers={"If-Match": reply.headers["etag"]})

    assert put.status_code == 200 and put.json()["changed"], put.text
    revision = put.json()["revision"]
    lab.wait_revision(revision)
    head = lab.running.store.head()
    assert head is not None
    assert [c.key for x in head.config.listeners for c in x.certificates] == [EDGE_KEY, INNER_KEY]
    served = {
        "envoy": lab.https("127.0.0.1", lab.edge_port, "example.com"),
        "local haproxy": lab.https("127.0.0.2", lab.edge_port, "example.com"),
        "agent's haproxy": lab.https("127.0.0.1", lab.inner_port, "other.test"),
    }
    for proxy, answer in served.items():
        assert answer.status == 200 and answer.backend == "web", (proxy, answer)
    assert served["envoy"].peer_cert.common_name == "example.com"  # type: ignore[union-attr]
    assert served["agent's haproxy"].peer_cert.common_name == "other.test"  # type: ignore[union-attr]
