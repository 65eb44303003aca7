"""A config's parts: their plain data and JSON text made once per part, and what a change left
as it was.

A model object is immutable, and what Pydantic checks of a part depends on the part's content
alone (the rules that look across parts run on the whole config, `validate.RULES`). So when a
change is validated, every part of the new plain data equal to the plain data of the part at
the same place in the config it changes (or of the same name, or the same content) can be that
validated object itself: Pydantic takes model objects as they are and checks what is left.
`Parts` keeps the plain data and JSON text of the parts of the recent configs, so that finding
the unchanged parts compares dicts, and the plain data and text of the new config are made
from those of the parts it kept.
"""

from __future__ import annotations

import json
import threading
import types
import typing
from collections.abc import Callable, Iterable
from functools import cache
from typing import Any, TypeVar

from pydantic import BaseModel

from .config import Config
from .listener import Listener
from .route import VirtualHost
from .types import Model

P = TypeVar("P", bound=Model)
T = TypeVar("T")

ASSEMBLED = (Config, Listener, VirtualHost)
"""The parts made of parts: those holding the lists a write changes one item of. Their plain
data and text are made from those of the parts they hold, and a change is looked into down to
the items of their lists; any other part (a route, a cluster) is one piece, kept or made whole
by Pydantic."""

KEPT_CONFIGS = 2
"""Configs whose parts are remembered: the head and the one before it (a write and a read)."""


@cache
def part_fields(cls: type[BaseModel]) -> tuple[str, ...]:
    """The fields of `cls` that hold objects of one model class (one, optional, or a list of
    them). A field that may hold several model classes is not one: it is kept whole."""
    return tuple(name for name, f in cls.model_fields.items() if len(_models_in(f.annotation)) == 1)


def _models_in(annotation: Any) -> set[type[Model]]:
    if isinstance(annotation, type):
        return {annotation} if issubclass(annotation, Model) else set()
    if typing.get_origin(annotation) is typing.Annotated:
        return _models_in(typing.get_args(annotation)[0])
    if typing.get_origin(annotation) in (list, tuple, typing.Union, types.UnionType):
        return set().union(*(_models_in(a) for a in typing.get_args(annotation)))
    return set()


class Parts:
    """The plain data (`model_dump(mode="json")`) and JSON text (`model_dump_json()`) of the
    parts of recent configs, each made once. What `plain` returns is shared: callers must not
    change it. Parts no longer in the last `KEPT_CONFIGS` configs asked about are dropped once
    they are as many as those configs' own (so that dropping costs a walk now and then)."""

    def __init__(self) -> None:
        self._plain: dict[int, tuple[Model, dict[str, Any]]] = {}
        self._json: dict[int, tuple[Model, str]] = {}
        self._derived: dict[tuple[Callable[[Any], Any], int], tuple[Model, Any]] = {}
        self._recent: list[Model] = []
        self._size = 0
        self._lock = threading.RLock()

    def plain(self, config: Model) -> dict[str, Any]:
        """The plain data of `config`, made from that of its parts known already."""
        with self._lock:
            found = self._plain_of(config)
            self._asked(config)
            return found

    def json(self, config: Model) -> str:
        """The JSON text of `config`, as `model_dump_json()` writes it."""
        with self._lock:
            found = self._json_of(config)
            self._asked(config)
            return found

    def derived(self, compute: Callable[[P], T], part: P) -> T:
        """`compute(part)`, computed once per part (a part never changes): for what a rule
        reads of a part, so that checking a changed config looks only at what changed."""
        key = (compute, id(part))
        found = self._derived.get(key)
        if found is not None and found[0] is part:
            return found[1]
        value = compute(part)
        self._derived[key] = (part, value)
        return value

    def known(self, part: Model) -> dict[str, Any] | None:
        """The plain data of `part` when it is a part of a recent config."""
        found = self._plain.get(id(part))
        return found[1] if found is not None and found[0] is part else None

    def _asked(self, config: Model) -> None:
        if not any(c is config for c in self._recent):
            self._recent = [config, *self._recent][:KEPT_CONFIGS]
        sizes = (len(self._plain), len(self._json), len(self._derived))
        if max(sizes) > 2 * max(self._size, 1000):
            alive: set[int] = set()
            for kept in self._recent:
                _walk(kept, alive)
            self._size = len(alive)
            self._plain = {k: v for k, v in self._plain.items() if k in alive}
            self._json = {k: v for k, v in self._json.items() if k in alive}
            self._derived = {k: v for k, v in self._derived.items() if k[1] in alive}

    def _plain_of(self, part: Model) -> dict[str, Any]:
        found = self._plain.get(id(part))
        if found is not None and found[0] is part:
            return found[1]
        if isinstance(part, ASSEMBLED):
            children = part_fields(type(part))
            own = part.model_dump(mode="json", exclude=set(children))
            data = {
                name: self._plain_value(getattr(part, name)) if name in children else own[name]
                for name in type(part).model_fields
            }
        else:
            data = part.model_dump(mode="json")
        self._plain[id(part)] = (part, data)
        return data

    def _plain_value(self, value: Any) -> Any:
        if isinstance(value, Model):
            return self._plain_of(value)
        if isinstance(value, list | tuple):
            return [self._plain_of(v) for v in value]
        return value  # None

    def _json_of(self, part: Model) -> str:
        found = self._json.get(id(part))
        if found is not None and found[0] is part:
            return found[1]
        if not isinstance(part, ASSEMBLED):
            made = part.model_dump_json()
            self._json[id(part)] = (part, made)
            return made
        children = part_fields(type(part))
        own = part.model_dump(mode="json", exclude=set(children))
        pieces = ["{"]
        for name in type(part).model_fields:
            pieces += (json.dumps(name), ":")
            if name in children:
                self._json_pieces(getattr(part, name), pieces)
            else:
                # What Pydantic writes for JSON-mode data of strings, integers, booleans and
                # null (the model has no floats, and no control characters but line breaks).
                pieces.append(json.dumps(own[name], ensure_ascii=False, separators=(",", ":")))
            pieces.append(",")
        _close(pieces, "}")
        made = "".join(pieces)  # one copy of the parts' texts, however large
        self._json[id(part)] = (part, made)
        return made

    def _json_pieces(self, value: Any, pieces: list[str]) -> None:
        if isinstance(value, Model):
            pieces.append(self._json_of(value))
        elif isinstance(value, list | tuple):
            pieces.append("[")
            for item in value:
                pieces += (self._json_of(item), ",")
            _close(pieces, "]")
        else:
            pieces.append("null")


def _close(pieces: list[str], bracket: str) -> None:
    """End a JSON object or array whose items are each followed by a comma."""
    if pieces[-1] == ",":
        pieces[-1] = bracket
    else:
        pieces.append(bracket)


PARTS = Parts()
"""The parts of the configs this process reads and writes."""


def _walk(part: Model, found: set[int]) -> None:
    found.add(id(part))
    if not isinstance(part, ASSEMBLED):
        return
    for name in part_fields(type(part)):
        value = getattr(part, name)
        for child in value if isinstance(value, list | tuple) else (value,):
            if isinstance(child, Model):
                _walk(child, found)


def reuse(data: Any, like: Model, parts: Parts) -> Any:
    """`data` (plain data meant for a `type(like)`) with each part equal to the plain data of
    the part of `like` at the same place, or of the same name or content, replaced by that
    model object. `data` itself is not changed."""
    if not isinstance(data, dict):
        return data
    known = parts.known(like)
    if known is not None and (data is known or data == known):
        return like
    if not isinstance(like, ASSEMBLED):
        return data
    out = dict(data)
    for name in part_fields(type(like)):
        value, old = data.get(name), getattr(like, name)
        if isinstance(value, list) and isinstance(old, list | tuple):
            out[name] = _reuse_list(value, old, parts)
        elif isinstance(value, dict) and isinstance(old, Model):
            out[name] = reuse(value, old, parts)
    return out


def _reuse_list(values: list[Any], olds: Iterable[Any], parts: Parts) -> list[Any]:
    """Each value matched with the old part at its place, or one place off (a part inserted
    or removed before it shifts the rest by one). A value that matches none is new, or, when
    the parts are made of parts, checked against the old part of its name (else at its place)
    for the parts inside it."""
    olds = list(olds)
    knowns = [parts.known(old) for old in olds]
    out: list[Any] = []
    named: dict[str, Model] | None = None
    shift = 0
    for i, value in enumerate(values):
        if i + shift < len(olds) and value is knowns[i + shift]:
            out.append(olds[i + shift])  # the very data of the old part: the usual case
            continue
        if not isinstance(value, dict):
            out.append(value)
            continue
        match = None
        for j in (i + shift, i + shift - 1, i + shift + 1):
            if 0 <= j < len(olds) and _same(value, knowns[j]):
                match, shift = olds[j], j - i
                break
        if match is not None:
            out.append(match)
            continue
        if not olds or not isinstance(olds[0], ASSEMBLED):
            out.append(value)
            continue
        if named is None:
            named = {n: o for o in olds if isinstance(n := getattr(o, "name", None), str)}
        name = value.get("name")
        counterpart = named.get(name) if isinstance(name, str) else None
        if counterpart is None and 0 <= i + shift < len(olds):
            counterpart = olds[i + shift]
        out.append(reuse(value, counterpart, parts) if counterpart is not None else value)
    return out


def _same(value: dict[str, Any], known: dict[str, Any] | None) -> bool:
    return value is known or (known is not None and value == known)
