"""The firewall's shared Lua core, run on both Lua runtimes the proxies embed (LuaJIT for
Envoy, Lua 5.3 for HAProxy): its regex engine agrees with Python's `re` on the model's dialect,
its transforms decode as documented, and a policy's checks name the rules a request matches."""

from __future__ import annotations

import re
from collections.abc import Iterator

import lupa.lua53
import lupa.luajit21
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controlplane.firewall.nfa import compile_program
from controlplane.firewall.policy import policy_text
from controlplane.firewall.sources import lua_source
from controlplane.model import Firewall

RUNTIMES = {"luajit": lupa.luajit21.LuaRuntime, "lua5.3": lupa.lua53.LuaRuntime}
CORE = (lua_source("envoy").split("end)()\n", 1)[0] + "end)()").removeprefix("local firewall = ")


class Core:
    """The core loaded in one runtime, called with bytes."""

    def __init__(self, runtime: str) -> None:
        self.lua = RUNTIMES[runtime](encoding=None)
        self.module = self.lua.eval(CORE)
        self.request_of = self.lua.eval(
            "function(method, target, headers, body) "
            "local q = string.find(target, '?', 1, true) "
            "local list = {} "
            "for i = 1, #headers, 2 do list[#list + 1] = {headers[i], headers[i + 1]} end "
            "local function header(name) local values = {} "
            "for _, pair in ipairs(list) do "
            "if pair[1] == name then values[#values + 1] = pair[2] end end "
            "return values end "
            "return {method = method, target = target, "
            "path = q and string.sub(target, 1, q - 1) or target, "
            "query = q and string.sub(target, q + 1) or nil, header = header, "
            "headers = function() return list end, body = function() return body end} end"
        )

    def search(self, pattern: str, value: bytes, caseless: bool = False) -> bool:
        return bool(self.module.search(compile_program(pattern, caseless).encode(), value))

    def check(
        self,
        firewall: Firewall,
        target: str,
        method: str = "GET",
        headers: tuple[tuple[str, str], ...] = (("host", "example.com"),),
        body: bytes = b"",
    ) -> list[str]:
        text = policy_text(firewall)
        assert text is not None
        flat = self.lua.table(*[part.encode() for pair in headers for part in pair])
        request = self.request_of(method.encode(), target.encode(), flat, body)
        hits = self.module.check(self.module.policy(text.encode()), request)
        return [hit.decode() for hit in hits.values()]


@pytest.fixture(params=sorted(RUNTIMES), scope="module")
def core(request: pytest.FixtureRequest) -> Iterator[Core]:
    yield Core(request.param)


ATOMS = ["a", "b", "ab", ".", "[a-c]", "[^a]", r"\d", r"\w", r"\s", r"\.", " ", "x"]


@st.composite
def patterns(draw: st.DrawFn, depth: int = 0) -> str:
    pieces = []
    for _ in range(draw(st.integers(1, 4))):
        if depth < 2 and draw(st.booleans()):
            inner = "|".join(draw(st.lists(patterns(depth + 1), min_size=1, max_size=3)))
            atom = f"({inner})"
        else:
            atom = draw(st.sampled_from(ATOMS))
        atom += draw(st.sampled_from(["", "", "*", "+", "?", "{2}", "{1,3}", "{0,2}"]))
        pieces.append(atom)
    anchors = draw(st.sampled_from([("", ""), ("^", ""), ("", "$"), ("^", "$"), (r"\b", r"\b")]))
    return anchors[0] + "".join(pieces) + anchors[1]


@settings(max_examples=300, deadline=None)
@given(pattern=patterns(), value=st.text("ab1 .x_\n", max_size=12), caseless=st.booleans())
def test_the_regex_engine_finds_what_python_finds(
    core: Core, pattern: str, value: str, caseless: bool
) -> None:
    expected = re.search(pattern, value, re.IGNORECASE if caseless else 0) is not None
    assert core.search(pattern, value.encode(), caseless) == expected, (pattern, value)


@pytest.mark.parametrize(
    ("pattern", "value", "found"),
    [
        (r"union\s+select", "1 UNION   select", False),
        (r"(?i)union\s+select", "1 UNION \t select", True),
        (r"^/admin$", "/admin", True),
        (r"^/admin$", "/admin\n", True),
        (r"(?m)^b$", "a\nb\nc", True),
        (r"a.c", "a\nc", False),
        (r"(?s)a.c", "a\nc", True),
        (r"\bselect\b", "selecting", False),
        ("(a|aa)*b" + "", "a" * 40, False),
    ],
)
def test_regex_examples(core: Core, pattern: str, value: str, found: bool) -> None:
    assert core.search(pattern, value.encode()) is found


def test_a_value_is_bytes_and_a_dot_takes_one(core: Core) -> None:
    assert core.search("^..$", "é".encode())
    assert not core.search("^.$", "é".encode())


def _rule(transforms: list[str], phrase: str, target: str = "query") -> Firewall:
    return Firewall.model_validate(
        {"rules": [{"name": "r", "target": target, "transforms": transforms, "phrases": [phrase]}]}
    )


@pytest.mark.parametrize(
    ("transforms", "query", "phrase"),
    [
        (["url_decode"], "a=%27%20or+1", "' or 1"),
        (["url_decode", "url_decode"], "a=%2527", "'"),
        (["lowercase"], "A=SeLeCt", "select"),
        (["compress_whitespace"], "a \t\n b", "a b"),
        (["html_entity_decode"], "&lt;script&gt;", "<script>"),
        (["html_entity_decode"], "&#60;&#x3C;&#x3c", "<<<"),
        (["html_entity_decode"], "&#233;", "é"),
        (["url_decode", "html_entity_decode", "lowercase"], "%26LT%3BSCRIPT", "<script"),
    ],
)
def test_transforms_decode_as_documented(
    core: Core, transforms: list[str], query: str, phrase: str
) -> None:
    assert core.check(_rule(transforms, phrase), f"/?{query}") == ["r"]


def test_without_its_transforms_a_rule_sees_the_raw_value(core: Core) -> None:
    assert core.check(_rule([], "' or 1"), "/?a=%27%20or+1") == []
    assert core.check(_rule(["html_entity_decode"], "&lt"), "/?&lt") == ["r"]


def test_checks_name_every_rule_that_matches_in_the_policy_s_order(core: Core) -> None:
    firewall = Firewall.model_validate(
        {
            "methods": ["GET"],
            "user_agents": [{"contains": "SQLMap"}],
            "file_extensions": ["exe"],
            "max_sizes": {"url": 30, "header": 40, "body": 10},
            "protocol": True,
            "rules": [
                {"name": "cookie", "target": "cookie", "field": "role", "phrases": ["admin"]},
                {"name": "header", "target": "header", "field": "X-Q", "regex": "^drop"},
                {"name": "body", "target": "body", "phrases": ["<script"]},
            ],
        }
    )
    headers = (
        ("host", "example.com"),
        ("user-agent", "sqlmap/1.7"),
        ("content-length", "12"),
        ("cookie", "a=b; role=admin"),
        ("x-q", "drop table"),
        ("x-long", "y" * 40),
    )
    hits = core.check(firewall, "/files/setup.EXE?q=%zz", "POST", headers, b"x=<script>")
    assert hits == [
        "methods",
        "user_agents",
        "file_extensions",
        "max_sizes.header",
        "max_sizes.body",
        "protocol",
        "cookie",
        "header",
        "body",
    ]
    assert core.check(firewall, "/" + "a" * 40) == ["max_sizes.url"]
    assert core.check(firewall, "/ok?q=%41") == []


@pytest.mark.parametrize(
    "headers",
    [
        (),
        (("host", ""),),
        (("host", "a"), ("host", "b")),
    ],
)
def test_protocol_checks_refuse_what_proxies_would_read_differently(
    core: Core, headers: tuple[tuple[str, str], ...]
) -> None:
    assert core.check(Firewall(protocol=True), "/", headers=headers) == ["protocol"]


def test_policy_values_reach_the_core_as_data_only(core: Core) -> None:
    hostile = "x'];os.exit(1)--;=,+%20\\"
    firewall = Firewall.model_validate(
        {
            "user_agents": [{"contains": hostile}],
            "rules": [{"name": "r", "target": "header", "field": "x-h", "phrases": [hostile]}],
        }
    )
    text = policy_text(firewall)
    assert text is not None and "'" not in text and " " not in text
    hits = core.check(firewall, "/", headers=(("host", "a"), ("x-h", hostile)))
    assert hits == ["r"]
    hits = core.check(firewall, "/", headers=(("host", "a"), ("user-agent", hostile.upper())))
    assert hits == ["user_agents"]
