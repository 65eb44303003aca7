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

import itertools
import json
import operator
import threading
import types
import typing
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, TypeVar

from pydantic import BaseModel

from .config import Config
from .listener import Listener
from .route import VirtualHost
from .types import Model

P = TypeVar("P", bound=Model)
T = TypeVar("T")
K = TypeVar("K", bound=Hashable)

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
        self._derived: dict[tuple[Any, int], tuple[Model, Any]] = {}
        self._lineage: dict[int, tuple[Model, Model]] = {}
        self._texts: dict[int, tuple[Model, dict[str, Any]]] = {}
        self._pieces: dict[int, tuple[Model, list[str]]] = {}
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

    def follows(self, new: Model, old: Model) -> None:
        """Note that `new` is a change of `old` (a validated config of the one it changes):
        each part made of parts is matched with the old part of its name, so that the facts
        of a changed part (`positions`, `tally`) are made from the old part's by looking at
        the items that changed."""
        with self._lock:
            self._follows(new, old)

    def _follows(self, new: Model, old: Model) -> None:
        """`follows` (lock held)."""
        if new is old or not isinstance(new, ASSEMBLED) or type(new) is not type(old):
            return
        self._lineage[id(new)] = (new, old)
        self._lineage.pop(id(old), None)  # one step back at most: no chain of old parts
        for name in part_fields(type(new)):
            items, olds = getattr(new, name), getattr(old, name)
            if not isinstance(items, list | tuple) or not isinstance(olds, list | tuple):
                continue
            if not olds or not isinstance(olds[0], ASSEMBLED):
                continue  # routes and clusters: facts are made of their lists, not in them
            named = {n: o for o in olds if isinstance(n := getattr(o, "name", None), str)}
            for item in items:
                counterpart = named.get(getattr(item, "name", None))  # type: ignore[arg-type]
                if counterpart is not None:
                    self._follows(item, counterpart)

    def positions(self, test: Callable[[Any], bool], part: Model, field: str) -> tuple[int, ...]:
        """The positions of the items of `part`'s list `field` for which `test` holds: computed
        once per part, and for a part that `follows` another from that one's, testing only the
        items between the two lists' common start and common end."""

        def full(items: Sequence[Any]) -> tuple[int, ...]:
            return tuple(i for i, item in enumerate(items) if test(item))

        def update(found: tuple[int, ...], edit: Edit) -> tuple[int, ...]:
            shift = len(edit.new) - len(edit.old)
            old_end = len(edit.old) - edit.end
            return (
                *(i for i in found if i < edit.start),
                *(edit.start + i for i, item in enumerate(edit.added) if test(item)),
                *(i + shift for i in found if i >= old_end),
            )

        with self._lock:
            found: tuple[int, ...] = self._fact(
                ("positions", field, test), part, field, full, update
            )
        return found

    def tally(self, keys: Callable[[Any], Iterable[K]], part: Model, field: str) -> Mapping[K, int]:
        """How many times each key comes out of `keys(item)` over the items of `part`'s list
        `field` (keys counted zero times are absent): computed once per part, as `positions`
        is. Callers must not change what it returns."""

        def full(items: Sequence[Any]) -> Counter[K]:
            return Counter(k for item in items for k in keys(item))

        def update(found: Counter[K], edit: Edit) -> Counter[K]:
            counts = found.copy()
            counts.subtract(k for item in edit.removed for k in keys(item))
            counts.update(k for item in edit.added for k in keys(item))
            for k in [k for item in edit.removed for k in keys(item) if counts[k] <= 0]:
                counts.pop(k, None)
            return counts

        with self._lock:
            found: Counter[K] = self._fact(("tally", field, keys), part, field, full, update)
        return found

    def _fact(
        self,
        kind: tuple[str, str, Callable[..., Any]],
        part: Model,
        field: str,
        full: Callable[[Sequence[Any]], Any],
        update: Callable[[Any, Edit], Any],
    ) -> Any:
        key = (kind, id(part))
        found = self._derived.get(key)
        if found is not None and found[0] is part:
            return found[1]
        lineage = self._lineage.get(id(part))
        if lineage is not None and lineage[0] is part:
            old = lineage[1]
            before = self._fact(kind, old, field, full, update)
            value = update(before, Edit.of(getattr(old, field), getattr(part, field)))
        else:
            value = full(getattr(part, field))
        self._derived[key] = (part, value)
        return value

    def known(self, part: Model) -> dict[str, Any] | None:
        """The plain data of `part` when it is a part of a recent config."""
        with self._lock:
            found = self._plain.get(id(part))
        return found[1] if found is not None and found[0] is part else None

    def _asked(self, config: Model) -> None:
        if not any(c is config for c in self._recent):
            left = self._recent[KEPT_CONFIGS - 1 :]
            self._recent = [config, *self._recent][:KEPT_CONFIGS]
            self._forget_assembled(left)
        sizes = (len(self._plain), len(self._json), len(self._derived), len(self._lineage))
        if max(sizes) > 2 * max(self._size, 1000):
            alive: set[int] = set()
            for kept in self._recent:
                _walk(kept, alive)
            self._size = len(alive)
            self._plain = {k: v for k, v in self._plain.items() if k in alive}
            self._json = {k: v for k, v in self._json.items() if k in alive}
            self._texts = {k: v for k, v in self._texts.items() if k in alive}
            self._pieces = {k: v for k, v in self._pieces.items() if k in alive}
            self._derived = {k: v for k, v in self._derived.items() if k[1] in alive}
            self._lineage = {k: v for k, v in self._lineage.items() if k in alive}

    def _forget_assembled(self, configs: list[Model]) -> None:
        """Drop at once what was made of the parts made of parts of `configs` (no longer
        recent) and not of a recent config: the text of a whole config and of its large lists
        is megabytes, to be kept for the recent configs only; the parts they hold are dropped
        by the walk of `_asked` now and then."""
        if not configs:
            return
        kept: set[int] = set()
        for config in self._recent:
            _walk_assembled(config, kept)
        gone: set[int] = set()
        for config in configs:
            _walk_assembled(config, gone)
        gone -= kept
        for made in (self._plain, self._json, self._texts, self._pieces, self._lineage):
            for key in gone:
                made.pop(key, None)
        self._derived = {k: v for k, v in self._derived.items() if k[1] not in gone}

    def _plain_of(self, part: Model) -> dict[str, Any]:
        found = self._plain.get(id(part))
        if found is not None and found[0] is part:
            return found[1]
        if isinstance(part, ASSEMBLED):
            children = part_fields(type(part))
            own = part.model_dump(mode="json", exclude=set(children))
            before = self._before(part, self._plain)
            data = {
                name: self._plain_value(part, name, before) if name in children else own[name]
                for name in type(part).model_fields
            }
        else:
            data = part.model_dump(mode="json")
        self._plain[id(part)] = (part, data)
        return data

    def _plain_value(
        self, part: Model, name: str, before: tuple[Model, dict[str, Any]] | None
    ) -> Any:
        value = getattr(part, name)
        if isinstance(value, Model):
            return self._plain_of(value)
        if isinstance(value, list | tuple):
            return self._items(value, name, before, self._plain_of)
        return value  # None

    def _items(
        self,
        items: Sequence[Model],
        name: str,
        before: tuple[Model, dict[str, Any]] | None,
        make: Callable[[Model], T],
    ) -> list[T]:
        """`make(item)` for each item of `items`, a list field of a part: for a part that
        follows another (`before`: the old part and what was made of its lists), the old
        list's where the two lists are the same objects, made anew only between."""
        if before is None:
            return [make(item) for item in items]
        made: list[T] = before[1][name]
        edit = Edit.of(getattr(before[0], name), items)
        return [*made[: edit.start], *map(make, edit.added), *made[len(made) - edit.end :]]

    def _before(
        self, part: Model, made: dict[int, tuple[Model, dict[str, Any]]]
    ) -> tuple[Model, dict[str, Any]] | None:
        """The part `part` follows and what `made` holds of it, when it holds something."""
        lineage = self._lineage.get(id(part))
        if lineage is None or lineage[0] is not part:
            return None
        found = made.get(id(lineage[1]))
        return (lineage[1], found[1]) if found is not None and found[0] is lineage[1] else None

    def _json_of(self, part: Model) -> str:
        found = self._json.get(id(part))
        if found is not None and found[0] is part:
            return found[1]
        if isinstance(part, ASSEMBLED):
            made = "".join(self._pieces_of(part))  # one copy of the parts' texts, however large
        else:
            made = part.model_dump_json()
        self._json[id(part)] = (part, made)
        return made

    def _pieces_of(self, part: Model) -> list[str]:
        """The pieces of text whose concatenation is the JSON text of `part`, a part made of
        parts: its own fields' and, in place, its parts' texts (a part made of parts in
        pieces), so that the text of a whole config is joined once."""
        found = self._pieces.get(id(part))
        if found is not None and found[0] is part:
            return found[1]
        children = part_fields(type(part))
        own = part.model_dump(mode="json", exclude=set(children))
        before = self._before(part, self._texts)
        texts: dict[str, list[Any]] = {}
        pieces = ["{"]
        for name in type(part).model_fields:
            pieces += (json.dumps(name), ":")
            value = getattr(part, name)
            if name not in children:
                # What Pydantic writes for JSON-mode data of strings, integers, booleans and
                # null (the model has no floats, and no control characters but line breaks).
                pieces.append(json.dumps(own[name], ensure_ascii=False, separators=(",", ":")))
            elif isinstance(value, ASSEMBLED):
                pieces += self._pieces_of(value)
            elif isinstance(value, Model):
                pieces.append(self._json_of(value))
            elif isinstance(value, list | tuple):
                pieces.append("[")
                if value and isinstance(value[0], ASSEMBLED):
                    assembled = texts[name] = self._items(value, name, before, self._pieces_of)
                    for item in assembled:
                        pieces += item
                        pieces.append(",")
                else:
                    leaves = texts[name] = self._items(value, name, before, self._json_of)
                    pieces += itertools.chain.from_iterable(zip(leaves, itertools.repeat(",")))
                if value:
                    pieces.pop()  # the last comma
                pieces.append("]")
            else:
                pieces.append("null")
            pieces.append(",")
        pieces[-1] = "}"
        self._pieces[id(part)] = (part, pieces)
        self._texts[id(part)] = (part, texts)
        return pieces


@dataclass(frozen=True, slots=True)
class Edit:
    """How a list `new` differs from `old`: the items between their common start (`start`
    items, the same objects) and their common end (`end` items) were replaced."""

    old: Sequence[Any]
    new: Sequence[Any]
    start: int
    end: int

    @classmethod
    def of(cls, old: Sequence[Any], new: Sequence[Any]) -> Edit:
        short = min(len(old), len(new))
        start = _first_different(old, new, short)
        end = _first_different(reversed(old), reversed(new), short - start)
        return cls(old, new, start, end)

    @property
    def removed(self) -> Sequence[Any]:
        return self.old[self.start : len(self.old) - self.end]

    @property
    def added(self) -> Sequence[Any]:
        return self.new[self.start : len(self.new) - self.end]


def _first_different(a: Iterable[Any], b: Iterable[Any], most: int) -> int:
    """The position of the first item of `a` that is not the item of `b` at the same place,
    at most `most` (an identity scan at C speed)."""
    first = next(itertools.compress(itertools.count(), map(operator.is_not, a, b)), most)
    return min(first, most)


PARTS = Parts()
"""The parts of the configs this process reads and writes."""


def _walk_assembled(part: Model, found: set[int]) -> None:
    """The ids of `part` and of the parts made of parts below it."""
    if not isinstance(part, ASSEMBLED):
        return
    found.add(id(part))
    for name in part_fields(type(part)):
        value = getattr(part, name)
        for child in value if isinstance(value, list | tuple) else (value,):
            if not isinstance(child, ASSEMBLED):
                break  # a list of routes or clusters holds no part made of parts
            _walk_assembled(child, found)


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
            out[name] = _reuse_list(value, old, parts, known[name] if known else None)
        elif isinstance(value, dict) and isinstance(old, Model):
            out[name] = reuse(value, old, parts)
    return out


def _reuse_list(
    values: list[Any], olds: Iterable[Any], parts: Parts, knowns: list[Any] | None = None
) -> list[Any]:
    """Each value matched with the old part at its place, or one place off (a part inserted
    or removed before it shifts the rest by one). A value that matches none is new, or, when
    the parts are made of parts, checked against the old part of its name (else at its place)
    for the parts inside it. `knowns`: the plain data of `olds`, when known already."""
    olds = list(olds)
    if knowns is None:
        knowns = [parts.known(old) for old in olds]
    # The values at the start and at the end that are the very data of the old parts there
    # (the usual case: a write changes one part of a list) are those parts.
    edit = Edit.of(knowns, values)
    if edit.start + edit.end == len(values):
        return [*olds[: edit.start], *olds[len(olds) - edit.end :]]
    out: list[Any] = olds[: edit.start]
    named: dict[str, Model] | None = None
    shift = 0
    for i, value in enumerate(values):
        if i < edit.start:
            continue
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
