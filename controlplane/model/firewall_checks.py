"""What a firewall's rules say of one connection or request, as `model.firewall` defines them.

The model's meaning in Python, for `explain`: the proxies run the same checks in the shared
Lua core (`controlplane/firewall/lua/core.lua`), and the scenario runner holds every request it
sends through them to what these functions say. The CRS verdict is the verdict service's; the
model cannot foresee it.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Sequence
from functools import lru_cache

from .firewall import BODY_INSPECTED_BYTES, AddressRules, Firewall, Rule

Headers = Sequence[tuple[str, str]]
"""A request's headers as the proxy sees them, in order: lower-case names, repeats kept."""


def address_refusal(rules: AddressRules | None, client_ip: str) -> str | None:
    """Why `rules` refuse a connection from `client_ip` (None: it is let in)."""
    if rules is None:
        return None
    address = ipaddress.ip_address(client_ip)
    for cidr in rules.deny:
        if address in ipaddress.ip_network(cidr):
            return f"{client_ip} is in deny {cidr}"
    if rules.allow and not any(address in ipaddress.ip_network(c) for c in rules.allow):
        return f"{client_ip} is in none of allow"
    return None


_ESCAPE = re.compile(rb"%([0-9A-Fa-f]{2})")
_ENTITY = re.compile(rb"&(#?[0-9A-Za-z]+)(;?)")
_ENTITIES = {b"lt": b"<", b"gt": b">", b"amp": b"&", b"quot": b'"', b"apos": b"'"}
_ENTITIES[b"nbsp"] = "\u00a0".encode()


def _unpercent(value: bytes) -> bytes:
    return _ESCAPE.sub(lambda m: bytes([int(m[1], 16)]), value)


def _entity(found: re.Match[bytes]) -> bytes:
    """An entity's character (UTF-8), or the entity as written when it names none."""
    body, semicolon = found[1], found[2]
    if re.fullmatch(rb"#[xX][0-9A-Fa-f]+", body):
        code = int(body[2:], 16)
    elif re.fullmatch(rb"#[0-9]+", body):
        code = int(body[1:])
    else:
        named = _ENTITIES.get(body.lower()) if semicolon else None
        return named if named is not None else found[0]
    if not 1 <= code <= 0x10FFFF:
        return found[0]
    return chr(code).encode("utf-8", "surrogatepass")


TRANSFORMS: dict[str, Callable[[bytes], bytes]] = {
    "url_decode": lambda value: _unpercent(value.replace(b"+", b" ")),
    "lowercase": bytes.lower,
    "compress_whitespace": lambda value: re.sub(rb"[ \t\r\n\f\v]+", b" ", value),
    "html_entity_decode": lambda value: _ENTITY.sub(_entity, value),
}


@lru_cache(maxsize=1024)
def _regex(pattern: str, caseless: bool) -> re.Pattern[bytes]:
    return re.compile(pattern.encode(), re.IGNORECASE if caseless else 0)


def _values(
    rule: Rule, path: bytes, query: bytes | None, headers: Headers, body: bytes
) -> list[bytes]:
    if rule.target == "path":
        return [path]
    if rule.target == "query":
        return [] if query is None else [query]
    if rule.target == "header":
        assert rule.field is not None
        return [value.encode() for name, value in headers if name == rule.field.lower()]
    if rule.target == "cookie":
        cookie = _cookie(headers, str(rule.field))
        return [] if cookie is None else [cookie]
    return [body[:BODY_INSPECTED_BYTES]]


def _cookie(headers: Headers, name: str) -> bytes | None:
    for header, line in headers:
        if header != "cookie":
            continue
        for part in line.split(";"):
            key, sep, value = part.partition("=")
            if sep and key.strip() == name:
                return value.strip().encode()
    return None


def _rule_matches(rule: Rule, values: list[bytes]) -> bool:
    for value in values:
        for transform in rule.transforms:
            value = TRANSFORMS[transform](value)
        if rule.regex is not None and _regex(str(rule.regex), False).search(value):
            return True
        if rule.phrases is not None and any(p.encode() in value for p in rule.phrases):
            return True
    return False


def _bad_escape(value: bytes | None) -> bool:
    return value is not None and b"%" in _ESCAPE.sub(b"", value)


def _extension(path: bytes) -> str | None:
    segment = _unpercent(path).rsplit(b"/", 1)[-1]
    if b"." not in segment:
        return None
    return segment.rsplit(b".", 1)[1].lower().decode("latin-1")


def protocol_problem(target: str, headers: Headers) -> str | None:
    """What `protocol: true` refuses in a request (`target` the path and query as sent):
    both proxies would otherwise read it differently. None when there is nothing. (Several
    Content-Length values never reach the rules: both proxies' parsers refuse them or merge
    identical ones into one.)"""
    path, sep, query = target.encode().partition(b"?")
    hosts = [value for name, value in headers if name == "host"]
    if len(hosts) != 1 or hosts[0] == "":
        return "no Host header" if not hosts or hosts == [""] else "several Host headers"
    if _bad_escape(path) or (sep and _bad_escape(query)):
        return "an invalid % escape in the " + ("path" if _bad_escape(path) else "query")
    return None


def matched_rules(
    firewall: Firewall, method: str, target: str, headers: Headers, body: bytes = b""
) -> list[str]:
    """The names of `firewall`'s L7 rules a request matches, in the order of `Firewall`'s
    fields and then of `rules`: `target` is the path and query as sent."""
    raw = target.encode()
    path, sep, query_text = raw.partition(b"?")
    query = query_text if sep else None
    hits = []
    if firewall.methods and method not in firewall.methods:
        hits.append("methods")
    agents = [value.encode().lower() for name, value in headers if name == "user-agent"]
    if any(
        (ua.contains is not None and ua.contains.encode().lower() in agent)
        or (ua.regex is not None and _regex(str(ua.regex), True).search(agent))
        for agent in agents
        for ua in firewall.user_agents
    ):
        hits.append("user_agents")
    if firewall.file_extensions and _extension(path) in firewall.file_extensions:
        hits.append("file_extensions")
    sizes = firewall.max_sizes
    if sizes.url is not None and len(raw) > sizes.url:
        hits.append("max_sizes.url")
    if sizes.header is not None and any(
        len(name) + 2 + len(value.encode()) > sizes.header for name, value in headers
    ):
        hits.append("max_sizes.header")
    lengths = [value for name, value in headers if name == "content-length"]
    if sizes.body is not None and any(_length(value) > sizes.body for value in lengths):
        hits.append("max_sizes.body")
    if firewall.protocol and protocol_problem(target, headers) is not None:
        hits.append("protocol")
    for rule in firewall.rules:
        if _rule_matches(rule, _values(rule, path, query, headers, body)):
            hits.append(rule.name)
    return hits


def _length(value: str) -> int:
    return int(value) if value.isdigit() else 0
