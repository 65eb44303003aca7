"""`explain`'s firewall checks (`controlplane.model.firewall_checks`, the model's meaning in
Python) name the same rules as the shared Lua core both proxies run, on both Lua runtimes: for
the corpus through `examples/firewall.yaml`'s firewall, and for generated evasions (encodings,
entities, case, blanks) through rules with every transform."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controlplane.model import Firewall, parse_text
from controlplane.model.firewall import AddressRules
from controlplane.model.firewall_checks import address_refusal, matched_rules, protocol_problem
from tests.firewall.corpus import EXAMPLE, HOST, CorpusRequest, corpus
from tests.unit.firewall.test_lua_core import RUNTIMES, Core


@pytest.fixture(params=sorted(RUNTIMES), scope="module")
def core(request: pytest.FixtureRequest) -> Iterator[Core]:
    yield Core(request.param)


def _headers(request: CorpusRequest) -> tuple[tuple[str, str], ...]:
    seen = [("host", HOST)] + [(k.lower(), v) for k, v in request.headers.items()]
    if request.body is not None:
        seen.append(("content-length", str(len(request.body))))
    return tuple(seen)


_LISTENER_FIREWALL = parse_text(EXAMPLE.read_text(), str(EXAMPLE))["listeners"][0]["firewall"]
EXAMPLE_FIREWALL = Firewall.model_validate(
    {k: v for k, v in _LISTENER_FIREWALL.items() if k != "crs"}
)


@pytest.mark.parametrize("request_", corpus(), ids=lambda r: r.id)
def test_the_corpus_gets_the_same_rules_from_the_model_and_the_core(
    core: Core, request_: CorpusRequest
) -> None:
    headers = _headers(request_)
    body = request_.body or b""
    expected = core.check(EXAMPLE_FIREWALL, request_.path, request_.method, headers, body)
    assert matched_rules(EXAMPLE_FIREWALL, request_.method, request_.path, headers, body) == (
        expected
    )


PIECES = [
    "union",
    "UnIoN",
    "select",
    " ",
    "+",
    "%20",
    "%2520",
    "%09",
    "%0a",
    "'",
    "%27",
    "%2527",
    "or",
    "1=1",
    "&lt;",
    "&LT;",
    "&#60;",
    "&#x3C",
    "&#x3c;",
    "&amp;",
    "&nbsp;",
    "&#233;",
    "script",
    "%3C",
    "%3c",
    "<",
    "%",
    "%zz",
    "%2",
    "a",
    "=",
    "&",
    "é",
    "\t",
    "..",
    "/",
]
EVASION_FIREWALL = Firewall.model_validate(
    {
        "file_extensions": ["exe"],
        "protocol": True,
        "rules": [
            {
                "name": "sqli",
                "target": "query",
                "transforms": ["url_decode", "url_decode", "lowercase", "compress_whitespace"],
                "regex": r"union\s?select|'\s?or\s?'?1'?\s?=\s?'?1",
            },
            {
                "name": "xss",
                "target": "query",
                "transforms": ["url_decode", "html_entity_decode", "lowercase"],
                "phrases": ["<script"],
            },
            {"name": "raw", "target": "path", "phrases": ["%2e%2e", ".."]},
            {
                "name": "agent",
                "target": "header",
                "field": "User-Agent",
                "transforms": ["lowercase", "compress_whitespace"],
                "regex": r"^curl ",
            },
        ],
    }
)


@settings(max_examples=300, deadline=None)
@given(
    path=st.lists(st.sampled_from([*PIECES, "x.exe", "x.EXE", "x%2Eexe"]), max_size=5),
    query=st.none() | st.lists(st.sampled_from(PIECES), max_size=10),
    agent=st.lists(st.sampled_from(["curl", "CURL", " ", "\t", "/7"]), max_size=4),
)
def test_generated_evasions_get_the_same_rules_from_the_model_and_the_core(
    core: Core, path: list[str], query: list[str] | None, agent: list[str]
) -> None:
    target = "/" + "".join(path) + ("" if query is None else "?" + "".join(query))
    headers = (("host", HOST), ("user-agent", "".join(agent)))
    expected = core.check(EVASION_FIREWALL, target, "GET", headers)
    assert matched_rules(EVASION_FIREWALL, "GET", target, headers) == expected


@pytest.mark.parametrize(
    ("headers", "target", "problem"),
    [
        ((), "/", "no Host header"),
        ((("host", ""),), "/", "no Host header"),
        ((("host", "a"), ("host", "b")), "/", "several Host headers"),
        ((("host", "a"),), "/a%zz", "an invalid % escape in the path"),
        ((("host", "a"),), "/?q=100%", "an invalid % escape in the query"),
        ((("host", "a"),), "/%41?q=%2541", None),
    ],
)
def test_protocol_problems_are_named(
    core: Core, headers: tuple[tuple[str, str], ...], target: str, problem: str | None
) -> None:
    found = protocol_problem(target, headers)
    assert (found or "").startswith(problem or "") and (found is None) == (problem is None)
    assert (core.check(Firewall(protocol=True), target, headers=headers) != []) == bool(problem)


def test_address_rules_deny_first_then_allow() -> None:
    rules = AddressRules(allow=["127.0.0.0/29", "::1"], deny=["127.0.0.6"])
    assert address_refusal(rules, "127.0.0.5") is None
    assert address_refusal(rules, "::1") is None
    assert address_refusal(rules, "127.0.0.6") == "127.0.0.6 is in deny 127.0.0.6/32"
    assert address_refusal(rules, "127.0.0.9") == "127.0.0.9 is in none of allow"
    assert address_refusal(None, "192.0.2.1") is None
