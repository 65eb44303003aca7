"""A firewall's triggers over-approximate its L7 rules: every request the shared core names a
rule for fires a trigger (so skipping the core for the others changes no verdict), while the
plain requests of real traffic fire none (so they skip it). `fires` is the meaning the
module's docstring gives the triggers; the proxies' compiled forms are played against real
Envoy and HAProxy by the firewall-l7-triggers scenario."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controlplane.firewall.triggers import BLANKS, Triggers, Watch, triggers
from controlplane.model import Firewall, parse_text
from tests.firewall.corpus import EXAMPLE
from tests.unit.firewall.test_lua_core import RUNTIMES, Core

Headers = tuple[tuple[str, str], ...]


def _watched(watch: Watch, value: str) -> bool:
    if watch.present:
        return True
    lowered = value.lower()
    return any(p.lower() in lowered for p in watch.phrases) or (
        watch.blanks and any(b in value for b in BLANKS)
    )


def fires(found: Triggers, method: str, target: str, headers: Headers) -> bool:
    """Whether a request fires one of `found` (controlplane.firewall.triggers)."""
    values = {name: [v for n, v in headers if n == name] for name, _ in headers}
    hosts = values.get("host", [])
    lengths = [int(v) for v in values.get("content-length", []) if v.isdigit()]
    return (
        found.always
        or (found.methods is not None and method not in found.methods)
        or _watched(found.target, target)
        or any(_watched(w, v) for name, w in found.headers for v in values.get(name, []))
        or (found.target_longer is not None and len(target.encode()) > found.target_longer)
        or (
            found.headers_longer is not None
            and sum(len(n) + len(v.encode()) for n, v in headers) > found.headers_longer - 2
        )
        or (
            found.content_length_above is not None
            and any(n > found.content_length_above for n in lengths)
        )
        or (found.host_missing and (len(hosts) != 1 or hosts[0] == ""))
    )


PIECES = ["a", "b", "B", ".", "/", "+", "%", "&", "<", "%2e", "%252e", "&#46;"]
"""Pieces of values, with the phrases below written in the ways the transforms decode."""
PIECES += ["a+b", "a%20b", "a  b", "%3Ca", "&lt;a", "&#60;a", "..%2f", "%2e%2e/", "%252e./"]
phrases = st.lists(
    st.sampled_from(["a", "B", ".", "/", "a b", "<a", "../", "a+b", "&"]), min_size=1
)


def text(pieces: list[str], size: int = 6) -> st.SearchStrategy[str]:
    return st.lists(st.sampled_from(pieces), max_size=size).map("".join)


transforms = st.lists(
    st.sampled_from(["url_decode", "lowercase", "compress_whitespace", "html_entity_decode"]),
    max_size=3,
)


@st.composite
def rules(draw: st.DrawFn) -> dict[str, Any]:
    target = draw(st.sampled_from(["path", "query", "header", "cookie", "body"]))
    rule: dict[str, Any] = {"name": f"r{draw(st.integers(0, 10**6))}", "target": target}
    if target in ("header", "cookie"):
        rule["field"] = "x-a" if target == "header" else "c"
    rule["transforms"] = draw(transforms)
    if draw(st.booleans()):
        rule["phrases"] = draw(phrases)
    else:
        rule["regex"] = draw(st.sampled_from(["ab|ba", "^a", "b+", "a.b"]))
    return rule


KINDS = ["methods", "user_agents", "file_extensions", "max_sizes", "protocol", "rules"]


@st.composite
def firewalls(draw: st.DrawFn) -> Firewall:
    """Firewalls of one or two kinds of rule, so that a request is seldom matched by one rule
    whatever another's triggers."""
    data: dict[str, Any] = {}
    for kind in draw(st.sets(st.sampled_from(KINDS), min_size=1, max_size=2)):
        if kind == "methods":
            data["methods"] = draw(st.lists(st.sampled_from(["GET", "POST"]), min_size=1))
        elif kind == "user_agents":
            agent = st.sampled_from([{"contains": "aB"}, {"regex": "ab|x"}, {"regex": "^b"}])
            data["user_agents"] = [draw(agent)]
        elif kind == "file_extensions":
            data["file_extensions"] = ["ab"]
        elif kind == "max_sizes":
            size = st.integers(10, 60)
            data["max_sizes"] = draw(
                st.dictionaries(st.sampled_from(["url", "header", "body"]), size, min_size=1)
            )
        elif kind == "protocol":
            data["protocol"] = True
        else:
            data["rules"] = draw(
                st.lists(rules(), min_size=1, max_size=2, unique_by=lambda r: r["name"])
            )
    return Firewall.model_validate(data)


header_names = st.sampled_from(["host", "user-agent", "cookie", "x-a", "content-length"])


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, str, Headers, bytes]:
    method = draw(st.sampled_from(["GET", "POST", "PUT"]))
    target = "/" + draw(text(PIECES))
    if draw(st.booleans()):
        target += "?" + draw(text([*PIECES, "="]))
    headers = [("host", "shop.example.com")] if draw(st.integers(0, 9)) else []
    for name in draw(st.lists(header_names, max_size=5)):
        if name == "content-length":
            value = str(draw(st.integers(0, 60)))
        elif name == "cookie":
            value = "c=" + draw(text(PIECES))
        else:
            value = draw(text([*PIECES, " ", "  ", "\t"])).strip(" \t")
        headers.append((name, value))
    return method, target, tuple(headers), draw(st.binary(max_size=8))


CORES = {name: Core(name) for name in sorted(RUNTIMES)}


@settings(max_examples=1500, deadline=None)
@given(firewall=firewalls(), request=requests())
def test_a_request_a_rule_matches_fires_a_trigger(
    firewall: Firewall, request: tuple[str, str, Headers, bytes]
) -> None:
    method, target, headers, body = request
    for core in CORES.values():
        if core.check(firewall, target, method, headers, body):
            assert fires(triggers(firewall), method, target, headers)


EXAMPLE_FIREWALL = Firewall.model_validate(
    parse_text(EXAMPLE.read_text(), str(EXAMPLE))["listeners"][0]["firewall"]
)
BROWSER = (
    ("host", "shop.example.com"),
    ("user-agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36"),
    ("accept", "text/html,application/xhtml+xml"),
    ("cookie", "session=3f9a0c; theme=dark"),
)


def test_plain_browser_and_api_requests_fire_none_of_the_example_s_triggers() -> None:
    found = triggers(EXAMPLE_FIREWALL)
    for method, target in [
        ("GET", "/api/v1/products?page=2&sort=price&category=shoes"),
        ("GET", "/static/app.js"),
        ("POST", "/api/v1/cart"),
    ]:
        assert not fires(found, method, target, BROWSER)


def test_what_the_example_s_triggers_watch_for() -> None:
    found = triggers(EXAMPLE_FIREWALL)
    assert found.always is False
    assert {"%", "+", "../", ".exe"} <= set(found.target.phrases)
    assert dict(found.headers)["user-agent"].phrases[:2] == ("acunetix", "dirbuster")


def test_rules_the_proxies_cannot_prefilter_make_every_request_fire() -> None:
    on_body = Firewall.model_validate(
        {"rules": [{"name": "b", "target": "body", "phrases": ["<script"]}]}
    )
    path_regex = Firewall.model_validate(
        {"rules": [{"name": "p", "target": "path", "regex": "^/a.b"}]}
    )
    assert triggers(on_body).always and triggers(path_regex).always
    header_regex = Firewall.model_validate(
        {"rules": [{"name": "h", "target": "header", "field": "X-A", "regex": "^a.b"}]}
    )
    assert dict(triggers(header_regex).headers)["x-a"] == Watch(present=True)


@pytest.mark.parametrize(
    ("transforms", "target", "field", "written"),
    [
        (["url_decode"], "query", None, "/?q=a+b"),
        (["url_decode"], "path", None, "/a%20b"),
        (["url_decode", "url_decode"], "query", None, "/?q=a%2520b"),
        (["html_entity_decode"], "header", "x-a", "a&#32;b"),
        (["compress_whitespace"], "header", "x-a", "a  b"),
        (["compress_whitespace"], "header", "x-a", "a\tb"),
        (["lowercase", "url_decode"], "cookie", "c", "A%20B"),
    ],
)
def test_a_phrase_written_as_its_transforms_decode_it_fires_a_trigger(
    transforms: list[str], target: str, field: str | None, written: str
) -> None:
    rule: dict[str, Any] = {"name": "r", "target": target, "transforms": transforms}
    rule |= {"phrases": ["a b"]} | ({"field": field} if field else {})
    firewall = Firewall.model_validate({"rules": [rule]})
    headers: Headers = (("host", "shop.example.com"),)
    path = written if written.startswith("/") else "/"
    if target == "header":
        headers += (("x-a", written),)
    elif target == "cookie":
        headers += (("cookie", f"c={written}"),)
    for core in CORES.values():
        assert core.check(firewall, path, "GET", headers) == ["r"]
    assert fires(triggers(firewall), "GET", path, headers)
