"""The agent's serving side: long-poll answers, status reports, and the rendered-bundle source."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from controlplane.feed.bundles import GroupBundles
from controlplane.feed.http import agent_router
from controlplane.fleet import AgentLedger
from controlplane.fleet.ledger import HAPROXY_TYPE, Ledger
from controlplane.haproxy.bundle import Bundle
from controlplane.model import Config, parse_config
from controlplane.proxies.haproxy.agent import Backoff, check_server_url, check_server_urls
from tests.harness.feed import publish


def two_groups(edge_port: int = 8080, edge_cluster: str = "a", inner_cluster: str = "b") -> Config:
    """Group `edge` runs listener `web`, group `inner` runs listener `api`."""

    def listener(name: str, port: int, cluster: str) -> dict[str, Any]:
        return {
            "name": name,
            "address": f"127.0.0.1:{port}",
            "protocol": "http",
            "virtual_hosts": [
                {"name": "site", "domains": ["*"], "routes": [{"backends": [{"cluster": cluster}]}]}
            ],
        }

    return parse_config(
        {
            "listeners": [listener("web", edge_port, edge_cluster), listener("api", 9090, "b")],
            "clusters": [
                {"name": n, "endpoints": [{"address": f"127.0.0.1:{9000 + i}"}]}
                for i, n in enumerate("abc")
            ],
            "node_groups": [
                {"name": "edge", "listeners": ["web"]},
                {"name": "inner", "listeners": ["api"]},
            ],
        }
    )


@pytest.fixture
def source() -> GroupBundles:
    bundles = GroupBundles()
    publish(bundles, 1, two_groups())
    return bundles


@pytest.fixture
def ledger() -> Ledger:
    return Ledger()


@pytest.fixture
def client(source: GroupBundles, ledger: Ledger) -> Iterator[TestClient]:
    app = FastAPI()
    app.include_router(agent_router(source, AgentLedger(ledger)), prefix="/v1")
    with TestClient(app) as test_client:
        yield test_client


def wait_until(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.005)


# --- GET bundle ----------------------------------------------------------------------------------


def test_without_known_the_bundle_comes_at_once(client: TestClient, source: GroupBundles) -> None:
    response = client.get("/v1/haproxy/edge/bundle", params={"wait": 30})
    assert response.status_code == 200
    body = response.json()
    current = source.current("edge")
    assert current is not None
    assert body["revision"] == 1
    assert body["version"] == current.bundle.version
    assert response.headers["etag"] == f'"{current.bundle.version}"'
    assert Bundle.from_json(response.content, envelope=("revision",)) == (
        current.bundle,
        {"revision": 1},
    )
    assert "frontend web" in body["cfg"]


def test_a_different_known_version_is_answered_at_once(client: TestClient) -> None:
    response = client.get("/v1/haproxy/edge/bundle", params={"known": "0123456789abcdef"})
    assert response.status_code == 200


def test_the_known_version_gets_304_without_body_after_wait(
    client: TestClient, source: GroupBundles
) -> None:
    current = source.current("edge")
    assert current is not None
    version = current.bundle.version
    response = client.get("/v1/haproxy/edge/bundle", params={"known": version, "wait": 0.2})
    assert response.status_code == 304
    assert response.content == b""
    assert response.headers["etag"] == f'"{version}"'


def test_if_none_match_stands_in_for_known(client: TestClient, source: GroupBundles) -> None:
    current = source.current("edge")
    assert current is not None
    etag = f'"{current.bundle.version}"'
    response = client.get("/v1/haproxy/edge/bundle", headers={"If-None-Match": etag})
    assert response.status_code == 304


def test_a_waiting_request_is_answered_when_the_group_changes(
    client: TestClient, source: GroupBundles
) -> None:
    before = source.current("edge")
    assert before is not None
    answers: list[httpx.Response] = []
    poll = threading.Thread(
        target=lambda: answers.append(
            client.get(
                "/v1/haproxy/edge/bundle", params={"known": before.bundle.version, "wait": 30}
            )
        )
    )
    poll.start()
    try:
        wait_until(lambda: source.waiting() == 1)
        publish(source, 2, two_groups(edge_cluster="c"))
    finally:
        poll.join(10)
    assert [a.status_code for a in answers] == [200]
    assert answers[0].json()["revision"] == 2
    assert answers[0].json()["version"] != before.bundle.version


def test_a_change_to_another_group_does_not_answer_a_waiting_request(
    client: TestClient, source: GroupBundles
) -> None:
    inner = source.current("inner")
    assert inner is not None
    answers: list[httpx.Response] = []
    params = {"known": inner.bundle.version, "wait": 1.0}
    poll = threading.Thread(
        target=lambda: answers.append(client.get("/v1/haproxy/inner/bundle", params=params))
    )
    poll.start()
    try:
        wait_until(lambda: source.waiting() == 1)
        publish(source, 2, two_groups(edge_cluster="c"))
    finally:
        poll.join(10)
    assert [a.status_code for a in answers] == [304]


def test_unknown_group_is_404(client: TestClient) -> None:
    assert client.get("/v1/haproxy/nope/bundle").status_code == 404
    assert (
        client.get("/v1/haproxy/nope/bundle", params={"known": "x", "wait": 1}).status_code == 404
    )


def test_nothing_published_yet_is_404(ledger: Ledger) -> None:
    app = FastAPI()
    app.include_router(agent_router(GroupBundles(), AgentLedger(ledger)), prefix="/v1")
    with TestClient(app) as client:
        assert client.get("/v1/haproxy/default/bundle").status_code == 404


@pytest.mark.parametrize("wait", ["-1", "61", "soon"])
def test_a_bad_wait_is_422(client: TestClient, wait: str) -> None:
    assert client.get("/v1/haproxy/edge/bundle", params={"wait": wait}).status_code == 422


def test_polling_marks_the_instance_seen(client: TestClient, ledger: Ledger) -> None:
    ledger.record_apply("agent-1", "edge", "haproxy", "v1", True)
    first = ledger.get("agent-1")
    assert first is not None
    client.get("/v1/haproxy/edge/bundle", params={"instance": "agent-1"})
    again = ledger.get("agent-1")
    assert again is not None and again.last_seen >= first.last_seen


# --- POST status ---------------------------------------------------------------------------------


def report(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "instance_id": "agent-1",
        "version": "0123456789abcdef",
        "ok": True,
        "mode": "reload",
        "reason": "listeners changed",
        "error": None,
        "duration": 0.05,
        "revision": 3,
    }
    body.update(overrides)
    return body


def test_an_ack_is_recorded(client: TestClient, ledger: Ledger) -> None:
    response = client.post("/v1/haproxy/edge/status", json=report())
    assert response.status_code == 204
    assert response.content == b""
    proxy = ledger.get("agent-1")
    assert proxy is not None
    assert (proxy.kind, proxy.group) == ("haproxy", "edge")
    assert proxy.types[HAPROXY_TYPE].version_acked == "0123456789abcdef"
    assert proxy.detail["mode"] == "reload"
    assert proxy.detail["revision"] == 3


def test_a_nack_is_recorded_with_the_error(client: TestClient, ledger: Ledger) -> None:
    client.post("/v1/haproxy/edge/status", json=report(version="v1"))
    body = report(version="v2", ok=False, mode="rejected", error="[ALERT] unknown keyword")
    assert client.post("/v1/haproxy/edge/status", json=body).status_code == 204
    proxy = ledger.get("agent-1")
    assert proxy is not None
    status = proxy.types[HAPROXY_TYPE]
    assert status.version_acked == "v1"
    assert status.last_nack is not None
    assert (status.last_nack.version, status.last_nack.error) == ("v2", "[ALERT] unknown keyword")


@pytest.mark.parametrize(
    "body",
    [
        {},
        report(mode="sideways"),
        report(instance_id=""),
        report(duration=-1),
        report(ok="maybe"),
        {k: v for k, v in report().items() if k != "version"},
    ],
)
def test_a_bad_report_is_422_and_records_nothing(
    client: TestClient, ledger: Ledger, body: dict[str, Any]
) -> None:
    assert client.post("/v1/haproxy/edge/status", json=body).status_code == 422
    assert ledger.proxies(connected_only=False) == []


# --- the bundles the feed serves ------------------------------------------------------------------


def test_an_unchanged_group_keeps_its_revision_and_version() -> None:
    source = GroupBundles()
    publish(source, 1, two_groups())
    inner_before = source.current("inner")
    publish(source, 2, two_groups(edge_cluster="c"))
    edge, inner = source.current("edge"), source.current("inner")
    assert inner == inner_before
    assert edge is not None and edge.revision == 2
    assert inner is not None and inner.revision == 1


def test_older_revisions_are_ignored_and_vanished_groups_removed() -> None:
    source = GroupBundles()
    publish(source, 5, two_groups())
    publish(source, 4, two_groups(edge_cluster="c"))
    edge = source.current("edge")
    assert edge is not None and edge.revision == 5
    single = parse_config(
        {
            "listeners": [
                {
                    "name": "web",
                    "address": "127.0.0.1:8080",
                    "protocol": "http",
                    "virtual_hosts": [
                        {
                            "name": "s",
                            "domains": ["*"],
                            "routes": [{"backends": [{"cluster": "a"}]}],
                        }
                    ],
                }
            ],
            "clusters": [{"name": "a", "endpoints": [{"address": "127.0.0.1:9000"}]}],
        }
    )
    publish(source, 6, single)
    assert source.groups() == ["default"]
    assert source.current("edge") is None


# --- agent helpers -------------------------------------------------------------------------------


def test_backoff_doubles_with_jitter_up_to_its_bound() -> None:
    backoff = Backoff(0.1, 1.0, rng=random.Random(7))
    delays = [backoff.next() for _ in range(10)]
    ceilings = [min(1.0, 0.1 * 2**i) for i in range(10)]
    assert all(c / 2 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    backoff.reset()
    assert backoff.next() <= 0.1


@pytest.mark.parametrize("url", ["ftp://h", "http://", "127.0.0.1:8080", "http://h/?x=1", ""])
def test_bad_server_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match="--server"):
        check_server_url(url)


def test_server_url_loses_its_trailing_slash() -> None:
    assert check_server_url("http://127.0.0.1:8080/") == "http://127.0.0.1:8080"


def test_several_servers_are_the_replicas_tried_in_turn() -> None:
    assert check_server_urls("http://a:8080/, https://b:8443,http://a:8080") == [
        "http://a:8080",
        "https://b:8443",
    ]
    with pytest.raises(ValueError, match="--server 'b:1'"):
        check_server_urls("http://a:8080,b:1")
