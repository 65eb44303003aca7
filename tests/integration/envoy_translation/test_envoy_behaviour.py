"""What a client observes through a real Envoy running the translation: the Envoy-specific
choices of the translator (headers Envoy must not add, cookie regexes, element prefixes,
rewrites, TLS chains, PROXY protocol), one Envoy for the whole module."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from string import Template
from typing import Any

import pytest

from controlplane.model import load_text
from tests.harness.backends import CERTS_DIR, BackendFleet, BackendSpec
from tests.harness.clients import CookieJar, http, tcp, tls, websocket
from tests.harness.ports import free_port
from tests.harness.targets_envoy import EnvoyTarget

pytestmark = pytest.mark.envoy
LOCAL = "127.0.0.1"


@dataclass
class Lab:
    envoy: EnvoyTarget
    ports: dict[str, int]


CONFIG = Template("""
listeners:
  - name: main
    address: 127.0.0.1:$main
    protocol: http
    request_id: true
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - {match: {path: {exact: /api/exact}}, backends: [{cluster: b}]}
          - {match: {path: {prefix: /api/}}, backends: [{cluster: a}]}
          - {match: {path: {prefix: /api/v2}}, backends: [{cluster: b}]}
          - {match: {path: {prefix: /m}, method: POST}, backends: [{cluster: b}]}
          - match:
              path: {prefix: /h}
              headers:
                - {name: X-Exact, exact: "yes"}
                - {name: x-re, regex: "v[0-9]+"}
                - {name: x-present, present: true}
                - {name: x-absent, present: false}
            backends: [{cluster: b}]
          - match:
              path: {prefix: /q}
              query: [{name: v, exact: "2"}, {name: t, present: true}]
            backends: [{cluster: b}]
          - match:
              path: {prefix: /c}
              cookies:
                - {name: flavour, exact: a.b}
                - {name: id, regex: "[0-9]+"}
                - {name: seen, present: true}
                - {name: out, present: false}
            backends: [{cluster: b}]
          - match: {path: {prefix: /mutate}}
            backends: [{cluster: a}]
            request_headers:
              remove: [x-secret]
              set: {x-tier: edge}
              add: {x-seen: proxy}
            response_headers: {set: {x-answer: set}, add: {x-extra: added}}
          - match: {path: {prefix: /old/}}
            backends: [{cluster: a}]
            prefix_rewrite: /new
          - {match: {path: {prefix: /strip}}, backends: [{cluster: a}], prefix_rewrite: /}
          - match: {path: {exact: /go}}
            redirect: {scheme: https, host: example.com, path: /gone, status: 301}
          - match: {path: {exact: /direct}}
            direct_response: {status: 418, body: teapot, content_type: application/json}
            response_headers: {set: {x-answer: direct}}
          - {match: {path: {prefix: /ws}}, backends: [{cluster: ws}], websocket: true}
          - {match: {path: {prefix: /nows}}, backends: [{cluster: ws}]}
          - match: {path: {prefix: /retry}}
            backends: [{cluster: half-dead}]
            retries: {attempts: 2, retry_on: [connect_failure]}
          - {match: {path: {prefix: /sticky}}, backends: [{cluster: sticky}]}
          - backends: [{cluster: d}]
  - name: plain
    address: 127.0.0.1:$plain
    protocol: http
    forwarded_for: false
    virtual_hosts:
      - {name: only, domains: [only.test], routes: [{backends: [{cluster: a}]}]}
      - {name: wild, domains: ["*.wild.test"], routes: [{backends: [{cluster: b}]}]}
  - name: https
    address: 127.0.0.1:$https
    protocol: https
    certificates:
      - {server_names: [example.com], cert: $certs/example.com.crt, key: $certs/example.com.key}
      - server_names: [api.example.com]
        cert: $certs/api.example.com.crt
        key: $certs/api.example.com.key
    virtual_hosts:
      - {name: all, domains: ["*"], routes: [{backends: [{cluster: a}]}]}
  - name: passthrough
    address: 127.0.0.1:$passthrough
    protocol: tls
    sni_routes: [{server_names: [api.example.com], cluster: tls-api}]
    default_cluster: tls-other
  - name: tcp
    address: 127.0.0.1:$tcp
    protocol: tcp
    accept_proxy_protocol: true
    default_cluster: tcp-pp
clusters:
  - {name: a, endpoints: [{address: $a}]}
  - {name: b, endpoints: [{address: $b}]}
  - {name: d, endpoints: [{address: $d}]}
  - {name: ws, endpoints: [{address: $ws}]}
  - {name: half-dead, endpoints: [{address: $dead}, {address: $a}]}
  - name: sticky
    lb_policy: ring_hash
    hash_on: {cookie: {name: lb, ttl: 1h}}
    endpoints: [{address: $s1}, {address: $s2}, {address: $s3}]
  - {name: tls-api, protocol: tcp, endpoints: [{address: $tls_api}]}
  - {name: tls-other, protocol: tcp, endpoints: [{address: $tls_other}]}
  - {name: tcp-pp, protocol: tcp, send_proxy_protocol: true, endpoints: [{address: $tcp_pp}]}
""")


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with BackendFleet() as fleet:
        specs = [BackendSpec(n) for n in ("a", "b", "d", "s1", "s2", "s3")]
        specs += [
            BackendSpec("ws", kind="websocket"),
            BackendSpec("tls-api", kind="tls", cert="api.example.com"),
            BackendSpec("tls-other", kind="tls", cert="other.test"),
            BackendSpec("tcp-pp", kind="tcp", proxy_protocol=True),
        ]
        backends = {n.replace("-", "_"): b.address for n, b in fleet.start_all(specs).items()}
        ports = {n: free_port() for n in ("main", "plain", "https", "passthrough", "tcp")}
        text = CONFIG.substitute(backends, **ports, dead=f"{LOCAL}:{free_port()}", certs=CERTS_DIR)
        config = load_text(text, files_relative_to=CERTS_DIR)
        envoy = EnvoyTarget("sotw")
        envoy.start()
        try:
            envoy.apply(config, "default")
            yield Lab(envoy, ports)
        finally:
            envoy.stop()


def get(lab: Lab, path: str, listener: str = "main", **kwargs: Any) -> Any:
    return http(LOCAL, lab.ports[listener], path, **kwargs)


@pytest.mark.parametrize(
    ("path", "backend"),
    [
        ("/api", "a"),
        ("/api/", "a"),
        ("/api/x?y=1", "a"),
        ("/apix", "d"),
        ("/api/exact", "b"),
        ("/api/exact/more", "a"),
        ("/api/v2", "b"),
        ("/api/v2/x", "b"),
        ("/api/v22", "a"),
    ],
)
def test_paths_match_whole_elements_and_precedence(lab: Lab, path: str, backend: str) -> None:
    assert get(lab, path).backend == backend


def test_method_header_and_query_conditions(lab: Lab) -> None:
    assert get(lab, "/m", method="POST").backend == "b"
    assert get(lab, "/m").backend == "d"
    good = [("x-exact", "yes"), ("X-Re", "v12"), ("x-present", "")]
    assert get(lab, "/h", headers=good).backend == "b"
    assert get(lab, "/h", headers=[*good, ("x-absent", "1")]).backend == "d"
    assert (
        get(lab, "/h", headers=[("x-exact", "yes"), ("x-re", "v1x"), ("x-present", "1")]).backend
        == "d"
    )
    assert get(lab, "/q?t&v=2").backend == "b"
    assert get(lab, "/q?v=2").backend == "d"
    assert get(lab, "/q?v=22&t=1").backend == "d"


@pytest.mark.parametrize(
    ("cookie", "backend"),
    [
        ("flavour=a.b; id=42; seen=", "b"),
        ("seen=1;id=7;flavour=a.b", "b"),
        ("flavour=a.b; id=42; seen=1; other=2", "b"),
        ("flavour=axb; id=42; seen=1", "d"),
        ("flavour=a.b; id=42x; seen=1", "d"),
        ("flavour=a.b; id=42", "d"),
        ("xflavour=a.b; id=42; seen=1", "d"),
        ("flavour=a.b; id=42; seen=1; out=1", "d"),
    ],
)
def test_cookie_conditions(lab: Lab, cookie: str, backend: str) -> None:
    assert get(lab, "/c", headers=[("cookie", cookie)]).backend == backend


def test_envoy_adds_only_what_the_model_says(lab: Lab) -> None:
    answer = get(lab, "/api/x", headers=[("x-forwarded-for", "203.0.113.9")])
    seen = answer.json()["headers"]
    assert not [h for h in seen if h.startswith("x-envoy")], seen
    assert seen["x-forwarded-for"].replace(" ", "") == "203.0.113.9,127.0.0.1"
    assert seen["x-request-id"]
    assert "server" not in answer.headers
    assert not [h for h, _ in answer.headers.items() if h.startswith("x-envoy")]
    kept = get(lab, "/api/x", headers=[("x-request-id", "mine")]).json()["headers"]
    assert kept["x-request-id"] == "mine"
    plain = get(
        lab, "/", "plain", host_header="only.test", headers=[("x-forwarded-for", "203.0.113.9")]
    )
    assert plain.json()["headers"]["x-forwarded-for"] == "203.0.113.9"
    assert "x-request-id" not in plain.json()["headers"]
    assert not [h for h in plain.json()["headers"] if h.startswith("x-envoy")]


def test_domains(lab: Lab) -> None:
    assert get(lab, "/", "plain", host_header="ONLY.test:1234").backend == "a"
    assert get(lab, "/", "plain", host_header="x.y.wild.test").backend == "b"
    assert get(lab, "/", "plain", host_header="wild.test").status == 404


def test_header_mutations_and_direct_answers(lab: Lab) -> None:
    answer = get(
        lab, "/mutate", headers=[("x-secret", "s"), ("x-tier", "client"), ("x-seen", "client")]
    )
    seen = answer.json()["headers"]
    assert "x-secret" not in seen
    assert seen["x-tier"] == "edge"
    assert seen["x-seen"].replace(" ", "") == "client,proxy"
    assert answer.headers["x-answer"] == "set" and answer.headers["x-extra"] == "added"
    direct = get(lab, "/direct")
    assert (direct.status, direct.text) == (418, "teapot")
    assert direct.headers["content-type"] == "application/json"
    assert direct.headers["x-answer"] == "direct"
    moved = get(lab, "/go?k=v")
    assert moved.status == 301
    assert moved.headers["location"] == "https://example.com/gone?k=v"


@pytest.mark.parametrize(
    ("path", "upstream"),
    [("/old", "/new"), ("/old/x?q=1", "/new/x?q=1"), ("/strip", "/"), ("/strip/a/b", "/a/b")],
)
def test_prefix_rewrite_by_elements(lab: Lab, path: str, upstream: str) -> None:
    assert get(lab, path).json()["path"] == upstream


def test_websocket_only_where_enabled(lab: Lab) -> None:
    reply = websocket(LOCAL, lab.ports["main"], "/ws", "hi")
    assert (reply.status, reply.text) == (101, "ws:hi")
    assert websocket(LOCAL, lab.ports["main"], "/nows", "hi").status != 101


def test_retries_go_to_another_endpoint(lab: Lab) -> None:
    assert {get(lab, "/retry").status for _ in range(10)} == {200}


def test_cookie_affinity(lab: Lab) -> None:
    first = get(lab, "/sticky")
    assert any(c.startswith("lb=") for c in first.set_cookies)
    jar = CookieJar()
    jar.update(first.set_cookies)
    names = Counter(get(lab, "/sticky", cookies=jar).backend for _ in range(10))
    assert names == {first.backend: 10}


def test_tls_termination_picks_certificate_by_sni(lab: Lab) -> None:
    port = lab.ports["https"]
    for sni, name in [
        ("api.example.com", "api.example.com"),
        ("example.com", "example.com"),
        ("x.test", "example.com"),
    ]:
        answer = http(LOCAL, port, "/", tls=True, sni=sni)
        assert answer.backend == "a"
        assert answer.peer_cert is not None and name in answer.peer_cert.dns_names


def test_tls_passthrough_by_sni(lab: Lab) -> None:
    port = lab.ports["passthrough"]
    assert tls(LOCAL, port, "api.example.com").backend == "tls-api"
    assert tls(LOCAL, port, "x.test").backend == "tls-other"


def test_proxy_protocol_in_and_out(lab: Lab) -> None:
    reply = tcp(LOCAL, lab.ports["tcp"], proxy_protocol_v1_source="192.0.2.7:4242")
    assert reply.backend == "tcp-pp"
    assert reply.proxy_source == "192.0.2.7:4242"
