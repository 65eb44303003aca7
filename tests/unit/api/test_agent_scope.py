"""The HAProxy agents' feed is for agents only: the `agent` scope, bound to node groups.

A read or write token gets 403 there and never touches the ledger; an agent gets its own
groups' bundles (and with them only their private keys), reports only for itself, and reads
nothing else of the API.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from controlplane.api import TokenFileError, TokenSet, create_app
from controlplane.feed.bundles import GroupBundles
from controlplane.feed.http import agent_router
from controlplane.fleet import AgentLedger
from controlplane.fleet.ledger import Ledger
from controlplane.model import parse_config
from controlplane.store import SQLiteStore
from tests.harness.feed import publish

from .conftest import ADMIN_TOKEN, READ_TOKEN, WRITE_TOKEN, TestClient, bearer

CERTS = Path(__file__).resolve().parents[2] / "certs"
EDGE_TOKEN = "edge-agent-secret-0123456789"
BOTH_TOKEN = "both-agent-secret-0123456789"
TOKENS = TokenSet.from_data(
    [
        {"name": "reader", "token": READ_TOKEN, "scopes": ["read"]},
        {"name": "writer", "token": WRITE_TOKEN, "scopes": ["write"]},
        {"name": "admin", "token": ADMIN_TOKEN, "scopes": ["read", "write"]},
        {"name": "edge-agent", "token": EDGE_TOKEN, "scopes": ["agent"], "groups": ["edge"]},
        {
            "name": "both-agent",
            "token": BOTH_TOKEN,
            "scopes": ["agent"],
            "groups": ["edge", "inner"],
        },
    ],
    "tests",
)


def https(name: str, port: int, cert: str) -> dict[str, Any]:
    return {
        "name": name,
        "address": f"127.0.0.1:{port}",
        "protocol": "https",
        "certificates": [
            {
                "cert": (CERTS / f"{cert}.crt").read_text(),
                "key": (CERTS / f"{cert}.key").read_text(),
            }
        ],
        "virtual_hosts": [
            {"name": "all", "domains": ["*"], "routes": [{"backends": [{"cluster": "web"}]}]}
        ],
    }


def two_secret_groups() -> dict[str, Any]:
    """Group `edge` terminates TLS for example.com, group `inner` for other.test."""
    return {
        "listeners": [https("edge", 8443, "example.com"), https("inner", 9443, "other.test")],
        "clusters": [{"name": "web", "endpoints": [{"address": "127.0.0.1:9001"}]}],
        "node_groups": [
            {"name": "edge", "listeners": ["edge"]},
            {"name": "inner", "listeners": ["inner"]},
        ],
    }


@pytest.fixture
def ledger() -> Ledger:
    return Ledger()


@pytest.fixture
def api(store: SQLiteStore, ledger: Ledger) -> Iterator[TestClient]:
    """An API serving the agents' feed of both groups; no token by default."""
    config = parse_config(two_secret_groups())
    store.commit(config, None, "seed", "seed")
    bundles = GroupBundles()
    publish(bundles, 1, config)
    app = create_app(store, tokens=TOKENS, agents=[agent_router(bundles, AgentLedger(ledger))])
    with TestClient(app) as client:
        yield client


def report(instance: str) -> dict[str, Any]:
    return {
        "instance_id": instance,
        "version": "0123456789abcdef",
        "ok": False,
        "mode": "rejected",
        "error": "forged",
        "duration": 0.1,
    }


@pytest.mark.parametrize("token", [READ_TOKEN, WRITE_TOKEN, ADMIN_TOKEN])
def test_read_and_write_tokens_are_refused_on_the_feed_and_never_touch_the_ledger(
    api: TestClient, ledger: Ledger, token: str
) -> None:
    ledger.record_apply("agent-1", "edge", "haproxy", "v1", True, detail={"via": "agent"})
    seen = ledger.get("agent-1").last_seen  # type: ignore[union-attr]

    fetched = api.get("/v1/haproxy/edge/bundle?instance=agent-1", headers=bearer(token))
    reported = api.post("/v1/haproxy/edge/status", json=report("agent-2"), headers=bearer(token))

    assert fetched.status_code == 403, fetched.text
    assert "'agent' scope for node group 'edge'" in fetched.json()["error"]
    assert reported.status_code == 403, reported.text
    assert ledger.get("agent-2") is None
    assert ledger.get("agent-1").last_seen == seen  # type: ignore[union-attr]


def test_an_agent_gets_only_its_groups_bundle_and_only_its_keys(api: TestClient) -> None:
    edge_key = (CERTS / "example.com.key").read_text()
    inner_key = (CERTS / "other.test.key").read_text()

    def files(reply: Any) -> str:
        assert reply.status_code == 200, reply.text
        return "".join(reply.json()["files"].values())

    own = files(api.get("/v1/haproxy/edge/bundle", headers=bearer(EDGE_TOKEN)))
    other = api.get("/v1/haproxy/inner/bundle", headers=bearer(EDGE_TOKEN))

    assert edge_key in own and inner_key not in own
    assert other.status_code == 403, other.text
    inner = files(api.get("/v1/haproxy/inner/bundle", headers=bearer(BOTH_TOKEN)))
    assert inner_key in inner and edge_key not in inner


def test_an_agent_reports_for_its_groups_only(api: TestClient, ledger: Ledger) -> None:
    refused = api.post(
        "/v1/haproxy/inner/status", json=report("agent-1"), headers=bearer(EDGE_TOKEN)
    )
    accepted = api.post(
        "/v1/haproxy/edge/status", json=report("agent-1"), headers=bearer(EDGE_TOKEN)
    )

    assert refused.status_code == 403, refused.text
    assert accepted.status_code == 204, accepted.text
    recorded = ledger.get("agent-1")
    assert recorded is not None and recorded.group == "edge" and recorded.kind == "haproxy"


@pytest.mark.parametrize(
    ("instance", "kind", "group", "via"),
    [
        ("envoy-1", "envoy", "edge", None),  # an Envoy of the agent's own group
        ("local-haproxy-edge", "haproxy", "edge", None),  # the HAProxy `serve` runs itself
        ("agent-9", "haproxy", "inner", "agent"),  # another group's agent
    ],
)
def test_an_agent_cannot_report_as_another_proxy(
    api: TestClient, ledger: Ledger, instance: str, kind: str, group: str, via: str | None
) -> None:
    if kind == "envoy":
        ledger.connect(instance, group, "envoy")
    else:
        ledger.record_apply(instance, group, "haproxy", "v1", True, detail={"via": via})
    before = ledger.get(instance)

    reply = api.post("/v1/haproxy/edge/status", json=report(instance), headers=bearer(BOTH_TOKEN))

    assert reply.status_code == 409, reply.text
    assert "give this agent its own --instance-id" in reply.json()["error"]
    after = ledger.get(instance)
    assert after is not None and before is not None
    assert (after.kind, after.group, after.types.keys()) == (kind, group, before.types.keys())
    assert all(t.last_nack is None for t in after.types.values())


def test_an_agent_token_reads_nothing_else(api: TestClient) -> None:
    for url in ("/v1/config", "/v1/status", "/v1/listeners/edge"):
        reply = api.get(url, headers=bearer(EDGE_TOKEN))
        assert reply.status_code == 403, (url, reply.text)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("{name: a, token: long-enough-0123456789, scopes: [agent]}", "needs the list of node"),
        ("{name: a, token: long-enough-0123456789, scopes: [agent], groups: []}", "needs the list"),
        (
            "{name: a, token: long-enough-0123456789, scopes: [read], groups: [l4]}",
            "which it lacks",
        ),
    ],
)
def test_the_agent_scope_is_bound_to_named_groups(entry: str, message: str) -> None:
    with pytest.raises(TokenFileError, match=message):
        TokenSet.from_text(f"- {entry}\n", "tokens.yaml")
