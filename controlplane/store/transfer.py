"""A store's whole history as a file, to move it between stores (SQLite, PostgreSQL).

The file is JSON Lines: a header line `{"format": "controlplane-history", "version": 1}`,
then one revision per line, oldest first, numbered 1, 2, 3, …:
`{"number": 1, "created_at": "2026-01-02T03:04:05.678901+00:00", "author": "…",
"message": "…", "config": {…}}`. Importing validates every config as a commit does and
writes the whole history in one transaction, or nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any, TextIO

from ..model import ConfigError, parse_config
from .base import Revision, Store, StoreError
from .content import config_json, content_hash

FORMAT = "controlplane-history"
VERSION = 1
HEADER = {"format": FORMAT, "version": VERSION}
FIELDS = ("number", "created_at", "author", "message", "config")


class HistoryError(StoreError):
    """A history file that cannot be imported; the message names the line."""


def export_history(store: Store, out: TextIO, page: int = 500) -> int:
    """Write every revision of `store` to `out`, oldest first; how many were written."""
    numbers: list[int] = []
    before: int | None = None
    while batch := store.list(limit=page, before=before):
        numbers.extend(meta.number for meta in batch)
        before = batch[-1].number
    out.write(json.dumps(HEADER) + "\n")
    for number in reversed(numbers):
        revision = store.get(number)
        line = {
            "number": revision.number,
            "created_at": revision.created_at.isoformat(),
            "author": revision.author,
            "message": revision.message,
            "config": json.loads(config_json(revision.config)),
        }
        out.write(json.dumps(line, ensure_ascii=False) + "\n")
    return len(numbers)


def import_history(store: Store, lines: Iterable[str], name: str, replace: bool = False) -> int:
    """Make the history in `lines` (read from the file `name`) the whole history of `store`;
    how many revisions it holds. HistoryError names the first bad line; NotEmpty when the
    store holds revisions and not `replace`. Nothing is written on any error."""
    count = 0

    def counted() -> Iterator[Revision]:
        nonlocal count
        for revision in read_history(lines, name):
            count += 1
            yield revision

    store.load_history(counted(), replace=replace)
    return count


def read_history(lines: Iterable[str], name: str) -> Iterator[Revision]:
    """The revisions of a history file, checked line by line (HistoryError)."""
    numbered = enumerate(lines, start=1)
    first = next(numbered, None)
    if first is None or _json(first[1], name, 1) != HEADER:
        raise HistoryError(
            f"{name}:1: not a controlplane history (expected the header {json.dumps(HEADER)})"
        )
    expected = 1
    for lineno, text in numbered:
        if not text.strip():
            continue
        yield _revision(_json(text, name, lineno), expected, f"{name}:{lineno}")
        expected += 1


def _json(text: str, name: str, lineno: int) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise HistoryError(f"{name}:{lineno}: not JSON: {exc}") from None


def _revision(data: Any, expected: int, where: str) -> Revision:
    if not isinstance(data, dict) or sorted(data) != sorted(FIELDS):
        raise HistoryError(f"{where}: expected an object with exactly {', '.join(FIELDS)}")
    number = data["number"]
    if type(number) is not int or number != expected:
        raise HistoryError(f"{where}: expected revision number {expected}, found {number!r}")
    for text_field in ("created_at", "author", "message"):
        if not isinstance(data[text_field], str) or "\x00" in data[text_field]:
            raise HistoryError(f"{where}: {text_field} must be a string without NUL")
    try:
        created_at = datetime.fromisoformat(data["created_at"])
    except ValueError:
        created_at = None
    if created_at is None or created_at.tzinfo is None:
        raise HistoryError(
            f"{where}: created_at {data['created_at']!r} is not an ISO 8601 time with an offset"
        )
    try:
        config = parse_config(data["config"])
    except ConfigError as exc:
        more = f" (and {len(exc.issues) - 1} more)" if len(exc.issues) > 1 else ""
        first = exc.issues[0] if exc.issues else exc
        raise HistoryError(f"{where}: revision {number}: config {first}{more}") from None
    return Revision(
        number, created_at, data["author"], data["message"], content_hash(config), config
    )
