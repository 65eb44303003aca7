"""Hostile strings in every string field of the model, and what must hold when one is accepted.

`SLOTS` lists every place a string sits in `full_config()`, a config that sets every string
field of every model class at least once (`uncovered_fields()` names any it misses, so a new
field fails the tests until the config holds it). `place()` puts a value into a slot.

A config the model accepts is rendered for HAProxy and compared, word by word, with the
renders of the same config holding two *stand-ins* of the value (its special characters
replaced by `x`, then by `q`): the words where the two stand-ins differ are the value's own;
everywhere else the hostile render must say exactly what the stand-ins say, with the same
lines and the same number of words on each (`structure_problems`).
"""

from __future__ import annotations

import copy
import re
import string
import types
import typing
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from controlplane.haproxy.bundle import Bundle
from controlplane.haproxy.render import render
from controlplane.model import Config

from .haproxy_text import HAProxySyntaxError, config_lines, map_line

CERTS = Path(__file__).resolve().parents[1] / "certs"
PathPart = str | int


def full_config(ports: Sequence[int] = (18101, 18102, 18103, 18104, 18105)) -> dict[str, Any]:
    """A valid config setting every string field of the model at least once; listeners on
    127.0.0.1 at `ports` (five), endpoints on loopback ports nothing listens on."""
    cert, key = (CERTS / "example.com.crt").read_text(), (CERTS / "example.com.key").read_text()
    web, secure, db, passthrough, endpoint = ports
    return {
        "listeners": [
            {
                "name": "web",
                "address": f"127.0.0.1:{web}",
                "protocol": "http",
                "request_id": True,
                "addresses": {"allow": ["127.0.0.0/8", "::1"], "deny": ["127.0.0.9"]},
                "firewall": {
                    "methods": ["GET", "POST"],
                    "user_agents": [{"contains": "sqlmap"}, {"regex": "^nikto"}],
                    "file_extensions": ["exe"],
                    "rules": [
                        {
                            "name": "sqli",
                            "target": "header",
                            "field": "x-q",
                            "transforms": ["url_decode", "lowercase"],
                            "regex": "union[ ]+select",
                        },
                        {"name": "xss", "target": "body", "phrases": ["<script"]},
                    ],
                    "crs": {
                        "paranoia_level": 2,
                        "exclusions": [942190],
                        "service": "127.0.0.1:9470",
                    },
                },
                "virtual_hosts": [
                    {
                        "name": "regexes",
                        "domains": ["regex.example.com"],
                        "routes": [
                            {
                                "match": {
                                    "path": {"regex": "/r/[0-9]+"},
                                    "headers": [{"name": "x-env", "exact": "canary"}],
                                    "cookies": [{"name": "session", "regex": "[a-z]+"}],
                                },
                                "backends": [{"cluster": "api"}],
                            },
                            {"backends": [{"cluster": "web"}]},
                        ],
                    },
                    {
                        "name": "site",
                        "domains": ["example.com", "*.example.org"],
                        "routes": [
                            {
                                "name": "api",
                                "match": {
                                    "path": {"prefix": "/api"},
                                    "method": "GET",
                                    "headers": [{"name": "x-h", "regex": "[a-z]+"}],
                                    "query": [{"name": "q", "exact": "one"}],
                                    "cookies": [{"name": "c", "present": True}],
                                },
                                "backends": [
                                    {"cluster": "api", "weight": 90},
                                    {"cluster": "web", "weight": 10},
                                ],
                                "timeout": "30s",
                                "retries": {"attempts": 2, "retry_on": ["connect_failure"]},
                                "prefix_rewrite": "/v2",
                                "websocket": True,
                                "rate_limit": {
                                    "requests": 10,
                                    "per": "1s",
                                    "key": {"header": "x-user"},
                                },
                                "request_headers": {
                                    "set": {"x-set": "one"},
                                    "add": {"x-add": "two"},
                                    "remove": ["x-remove"],
                                },
                                "response_headers": {
                                    "set": {"x-rset": "three"},
                                    "add": {"x-radd": "four"},
                                    "remove": ["x-rremove"],
                                },
                            },
                            {
                                "name": "status",
                                "match": {"path": {"exact": "/status"}},
                                "direct_response": {
                                    "status": 200,
                                    "body": "ok",
                                    "content_type": "text/plain",
                                },
                            },
                            {"name": "default", "backends": [{"cluster": "web"}]},
                        ],
                    },
                    {
                        "name": "extras",
                        "domains": ["extras.example.com"],
                        "routes": [
                            {
                                "name": "moved",
                                "match": {"path": {"prefix": "/old"}},
                                "redirect": {
                                    "scheme": "https",
                                    "host": "www.example.com",
                                    "port": 8443,
                                    "path": "/new",
                                    "status": 301,
                                },
                            },
                            {
                                "name": "sticky",
                                "match": {"path": {"prefix": "/sticky"}},
                                "backends": [{"cluster": "sticky"}],
                            },
                            {
                                "name": "hashed",
                                "match": {"path": {"prefix": "/hashed"}},
                                "backends": [{"cluster": "hashed"}],
                            },
                            {"backends": [{"cluster": "web"}]},
                        ],
                    },
                    {
                        "name": "fallback",
                        "domains": ["*"],
                        "routes": [{"backends": [{"cluster": "web"}]}],
                    },
                ],
            },
            {
                "name": "secure",
                "address": f"127.0.0.1:{secure}",
                "protocol": "https",
                "certificates": [
                    {"server_names": ["secure.example.com"], "cert": cert, "key": key}
                ],
                "virtual_hosts": [
                    {
                        "name": "all",
                        "domains": ["*"],
                        "routes": [{"backends": [{"cluster": "web"}]}],
                    }
                ],
            },
            {
                "name": "db",
                "address": f"127.0.0.1:{db}",
                "protocol": "tcp",
                "default_cluster": "postgres",
            },
            {
                "name": "passthrough",
                "address": f"127.0.0.1:{passthrough}",
                "protocol": "tls",
                "sni_routes": [{"server_names": ["db.example.com"], "cluster": "postgres"}],
                "default_cluster": "postgres",
            },
        ],
        "clusters": [
            {
                "name": "api",
                "endpoints": [{"address": f"127.0.0.1:{endpoint}"}],
                "health_check": {"kind": "http", "path": "/health?full=1"},
            },
            {"name": "web", "endpoints": [{"address": "web.internal:80"}]},
            {
                "name": "sticky",
                "lb_policy": "ring_hash",
                "hash_on": {"cookie": {"name": "sid", "ttl": "1h", "path": "/app"}},
                "endpoints": [{"address": "[::1]:18099"}],
            },
            {
                "name": "hashed",
                "lb_policy": "ring_hash",
                "hash_on": {"header": "x-user"},
                "endpoints": [{"address": "127.0.0.1:18098"}],
            },
            {"name": "postgres", "protocol": "tcp", "endpoints": [{"address": "127.0.0.1:18097"}]},
        ],
        "node_groups": [
            {"name": "edge", "listeners": ["web", "secure"]},
            {"name": "l4", "listeners": ["db", "passthrough"]},
        ],
    }


# -- where the strings are --------------------------------------------------------------------


@dataclass(frozen=True)
class Slot:
    """One string of the config: its path in the data, and whether it is a mapping's key."""

    label: str
    """The path with indices left out: `listeners[].virtual_hosts[].domains[]`."""
    path: tuple[PathPart, ...]
    model: type[BaseModel]
    """The model class holding the string, at `owner` in the data."""
    owner: tuple[PathPart, ...]
    field: str
    key: bool = False

    def get(self, data: dict[str, Any]) -> str:
        holder = _at(data, self.path[:-1])
        return self.path[-1] if self.key else holder[self.path[-1]]  # type: ignore[return-value]


def _at(data: Any, path: Sequence[PathPart]) -> Any:
    for part in path:
        data = data[part]
    return data


def fits(data: dict[str, Any], slot: Slot) -> bool:
    """Whether the model object holding `slot` accepts what `data` has there (a quick check:
    whole-config rules aside)."""
    try:
        slot.model.model_validate(_at(data, slot.owner))
    except ValueError:
        return False
    return True


def place(data: dict[str, Any], slot: Slot, value: str) -> dict[str, Any]:
    """A copy of `data` with `value` in `slot`."""
    result = copy.deepcopy(data)
    holder = _at(result, slot.path[:-1])
    if slot.key:
        items = list(holder.items())
        holder.clear()
        for key, item in items:
            holder[value if key == slot.path[-1] else key] = item
    else:
        holder[slot.path[-1]] = value
    return result


def _slots(model: BaseModel, data: dict[str, Any], path: tuple[PathPart, ...]) -> Iterator[Slot]:
    for name in type(model).model_fields:
        if name not in data:
            continue
        owner = (type(model), path, name)
        yield from _value_slots(getattr(model, name), data[name], (*path, name), owner)


def _value_slots(
    value: Any, raw: Any, path: tuple[PathPart, ...], owner: tuple[Any, Any, str]
) -> Iterator[Slot]:
    if isinstance(value, BaseModel):
        yield from _slots(value, raw, path)
    elif isinstance(raw, str):
        yield Slot(_label(path), path, *owner)
    elif isinstance(raw, list):
        for i, item in enumerate(raw):
            yield from _value_slots(value[i], item, (*path, i), owner)
    elif isinstance(raw, dict):
        for key, item in raw.items():
            yield Slot(_label((*path, "{key}")), (*path, key), *owner, key=True)
            if isinstance(item, str):
                yield Slot(_label((*path, "{value}")), (*path, key), *owner)


def _label(path: Sequence[PathPart]) -> str:
    text = ""
    for part in path:
        text += "[]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def slots(data: dict[str, Any]) -> list[Slot]:
    """The first place of every distinct string path in `data` (a valid config)."""
    config = Config.model_validate(data)
    seen: dict[str, Slot] = {}
    for slot in _slots(config, data, ()):
        seen.setdefault(slot.label, slot)
    return list(seen.values())


def _is_text(annotation: Any) -> bool:
    """Whether a field's type holds strings (directly, in a list, or in a mapping)."""
    if annotation is str:
        return True
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return False
    if origin is typing.Annotated:
        return _is_text(typing.get_args(annotation)[0])
    return any(_is_text(arg) for arg in typing.get_args(annotation)) if origin else False


def string_fields(model: type[BaseModel] = Config) -> set[tuple[str, str]]:
    """Every (class, field) of the model whose type holds strings."""
    found: set[tuple[str, str]] = set()
    todo: list[type[BaseModel]] = [model]
    done: set[type[BaseModel]] = set()
    while todo:
        cls = todo.pop()
        if cls in done:
            continue
        done.add(cls)
        for name, info in cls.model_fields.items():
            if _is_text(info.annotation):
                found.add((cls.__name__, name))
            todo.extend(_models_in(info.annotation))
    return found


def _models_in(annotation: Any) -> Iterator[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
    for arg in typing.get_args(annotation):
        if not isinstance(arg, str | int | types.NoneType):
            yield from _models_in(arg)


def uncovered_fields(data: dict[str, Any]) -> set[tuple[str, str]]:
    """String fields of the model that no slot of `data` holds."""
    return string_fields() - {(slot.model.__name__, slot.field) for slot in slots(data)}


# -- stand-ins ------------------------------------------------------------------------------

_PLAIN = frozenset(string.ascii_letters + string.digits)
_SHAPE = frozenset("*/.:[]-_")
"""Characters that give a value its shape (a wildcard, path segments, an address)."""


def stand_ins(value: str, benign: str) -> Iterator[tuple[str, str]]:
    """Pairs of stand-ins for `value`, most faithful first: the same characters where they
    are letters, digits, shape characters or characters of the benign value, `x` and `q`
    elsewhere."""
    for keep in (_PLAIN | _SHAPE | set(benign), _PLAIN | set(benign), _PLAIN):
        yield (_stand_in(value, keep, "x"), _stand_in(value, keep, "q"))


def _stand_in(value: str, keep: set[str] | frozenset[str], letter: str) -> str:
    """`value` with `letter` for each character outside `keep`, and for a leading '-' (which
    an ACL would read as a flag)."""
    text = "".join(c if c in keep else letter for c in value)
    return letter + text[1:] if text.startswith("-") else text


# -- comparing renders ----------------------------------------------------------------------


def bundles(config: Config) -> list[tuple[str, Bundle]]:
    """Every group's HAProxy bundle."""
    return [(group, render(config, group)) for group in config.group_names()]


def _control_problems(where: str, text: str) -> list[str]:
    bad = sorted({c for c in text if (ord(c) < 0x20 and c != "\n") or 0x7F <= ord(c) <= 0x9F})
    return [f"{where}: raw control characters {bad!r}"] if bad else []


def _map_rows(where: str, text: str, problems: list[str]) -> list[list[str]]:
    rows = []
    for line in text.split("\n")[:-1] if text.endswith("\n") else text.split("\n"):
        entry = map_line(line)
        if entry is None:
            problems.append(f"{where}: line {line!r} is not an entry")
            rows.append([])
            continue
        key, value = entry
        if line not in (f"{key} {value}", key, f"{key} "):
            problems.append(f"{where}: {line!r} reads back as key {key!r}, value {value!r}")
        rows.append([key, value])
    return rows


def _rows(bundle: Bundle, problems: list[str]) -> list[tuple[str, list[list[str]]]]:
    """A bundle as (file, rows of words): the configuration, each map, each other file."""
    problems.extend(_control_problems("haproxy.cfg", bundle.cfg))
    try:
        result = [("haproxy.cfg", config_lines(bundle.cfg))]
    except HAProxySyntaxError as exc:
        problems.append(f"haproxy.cfg: {exc}")
        return []
    for name, text in sorted(bundle.maps.items()):
        problems.extend(_control_problems(name, text))
        result.append((f"map {name}", _map_rows(name, text, problems)))
    for name, text in sorted(bundle.files.items()):
        if name.endswith(".crtlist"):
            problems.extend(_control_problems(name, text))
            result.append(("crt-list", config_lines(text)))
        else:
            result.append(("PEM file", []))
    return [
        (name, [[_DIGEST.sub(".<hash>.", w) for w in row] for row in rows]) for name, rows in result
    ]


_DIGEST = re.compile(r"\.[0-9a-f]{12}\.(?=pem|crtlist)")
"""The content hash in the names of certificate files and crt-lists."""


def structure_problems(
    hostile: list[tuple[str, Bundle]],
    first: list[tuple[str, Bundle]],
    second: list[tuple[str, Bundle]],
) -> list[str]:
    """How the hostile renders say something else than the stand-ins' renders (empty when
    they agree everywhere but on the value's own words)."""
    problems: list[str] = []
    if not len(hostile) == len(first) == len(second):
        return [f"{len(hostile)} groups rendered, the stand-ins give {len(first)}"]
    for (group, h), (_, a), (_, b) in zip(hostile, first, second, strict=True):
        h_files, a_files, b_files = _rows(h, problems), _rows(a, []), _rows(b, [])
        if [f for f, _ in h_files] != [f for f, _ in a_files]:
            problems.append(f"group {group}: files {[f for f, _ in h_files]}")
            continue
        for (name, h_rows), (_, a_rows), (_, b_rows) in zip(h_files, a_files, b_files, strict=True):
            where = f"group {group}, {name}"
            if not len(h_rows) == len(a_rows) == len(b_rows):
                problems.append(f"{where}: {len(h_rows)} lines, the stand-ins give {len(a_rows)}")
                continue
            for number, (h_row, a_row, b_row) in enumerate(
                zip(h_rows, a_rows, b_rows, strict=True), start=1
            ):
                if not len(h_row) == len(a_row) == len(b_row):
                    problems.append(f"{where}, line {number}: {h_row} against {a_row}")
                    continue
                problem = _row_problem(h_row, a_row, b_row, in_config=name == "haproxy.cfg")
                if problem:
                    problems.append(f"{where}, line {number}: {problem}")
    return problems


def _row_problem(hostile: list[str], first: list[str], second: list[str], in_config: bool) -> str:
    """Why a hostile row says more than its stand-ins: a word other than the value's own
    differs, or, inside an ACL's braces, the value's word starts with '-' without a '--'
    before it (HAProxy would read it as a flag)."""
    depth = 0
    for i, (h_word, a_word, b_word) in enumerate(zip(hostile, first, second, strict=True)):
        if a_word == b_word:
            if h_word != a_word:
                return f"{hostile} against {first}"
            depth += 1 if a_word in ("{", "!{") else -1 if a_word == "}" else 0
        elif in_config and depth and h_word.startswith("-") and hostile[i - 1] != "--":
            return f"{h_word!r} reads as an ACL flag in {hostile}"
    return ""
