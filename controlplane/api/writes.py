"""Every change of the config goes through here: read head, change plain data, validate the
whole result (model rules and what each served proxy can express), commit or refuse."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..model import Config, ConfigError, ProxyKind, parse_config, target_issues
from ..model.parts import PARTS
from ..store import Conflict, Revision, Store
from .errors import ApiError, bad_input, invalid, issue_json
from .objects import editable
from .safeguards import ConnectedProxies, refuse_emptied_groups
from .secrets import restore_keys

Change = Callable[[dict[str, Any]], Any]
"""Changes the plain data in place; may raise ApiError (404, 409, 422)."""

ATTEMPTS = 3
"""Unconditional writes retry this many times when another replica commits in between."""


@dataclass(frozen=True)
class Precondition:
    """An If-Match header: the revisions the client accepts as head (`any_revision` for `*`)."""

    revisions: frozenset[int]
    any_revision: bool = False

    def holds(self, head: int) -> bool:
        return self.any_revision or head in self.revisions

    @classmethod
    def parse(cls, header: str | None) -> Precondition | None:
        """The precondition of an If-Match header (None when absent); 422 when malformed."""
        if header is None:
            return None
        if header.strip() == "*":
            return cls(frozenset(), any_revision=True)
        revisions = set()
        for tag in header.split(","):
            text = tag.strip().removeprefix("W/").strip('"')
            if not text.isdigit():
                raise bad_input(
                    ("headers", "If-Match"), f'expected an ETag such as "12", not {tag.strip()!r}'
                )
            revisions.add(int(text))
        return cls(frozenset(revisions))


@dataclass(frozen=True)
class WriteResult:
    """The head after a write; `changed` is False when the result equalled the head."""

    revision: int
    changed: bool
    config: Config


def head_number(revision: Revision | None) -> int:
    """A revision's number, 0 for the empty store (the ETag of "nothing yet")."""
    return revision.number if revision else 0


def plain(config: Config) -> dict[str, Any]:
    """A config's full plain data, made once per part and shared: read it, or change
    `objects.editable(plain(config))`."""
    return PARTS.plain(config)


def need_config(body: Any) -> dict[str, Any]:
    """A body that can be a whole config: a mapping (422 for an empty body or `null`)."""
    if body is None:
        raise bad_input(
            ("body",), "the body is empty (or null); send the whole config, which is a mapping"
        )
    if not isinstance(body, dict):
        raise bad_input((), "a config is a mapping with listeners and clusters")
    return body


class ConfigWriter:
    """Applies changes to the head of a store, one at a time in this process.

    `connected` tells which proxies are connected in each node group, for the safeguards
    (see `safeguards`); without it no group counts as having proxies.
    """

    def __init__(
        self,
        store: Store,
        targets: Sequence[ProxyKind],
        connected: ConnectedProxies | None = None,
    ) -> None:
        self.store = store
        self.targets = tuple(targets)
        self.connected: ConnectedProxies = connected or (lambda: {})
        self._lock = threading.Lock()

    def check(self, data: Any, like: Config | None = None) -> Config:
        """The validated config of `data`, or a 422 listing every issue (model, then proxies).

        `like`, the config `data` changes, spares checking again what the change left as it
        was (`parse_config`); the result is the same."""
        data = need_config(data)
        try:
            config = parse_config(data, like)
        except ConfigError as exc:
            raise invalid(exc) from None
        issues = [
            issue_json(issue, proxy=target)
            for target in self.targets
            for issue in target_issues(config, target)
        ]
        if issues:
            proxies = sorted({str(i["proxy"]) for i in issues})
            raise ApiError(422, f"{' and '.join(proxies)} cannot express this config", issues)
        return config

    def guard(self, old: Config | None, new: Config, allow_empty_groups: bool = False) -> None:
        """A 422 when going from `old` to `new` needs asking for explicitly."""
        if not allow_empty_groups:
            refuse_emptied_groups(old, new, self.connected())

    def write(
        self,
        change: Change,
        precondition: Precondition | None,
        author: str,
        message: str,
        allow_empty_groups: bool = False,
    ) -> WriteResult:
        """Apply `change` to the head and commit the validated result; nothing on failure.

        With a precondition, a head other than the one named is a 412. Without one, the
        write applies to whatever the head is (last writer wins; 409 when other writers
        keep committing in between). A change the safeguards stop is a 422 unless
        `allow_empty_groups`.
        """
        with self._lock:
            for _ in range(ATTEMPTS):
                head = self.store.head()
                number = head_number(head)
                if precondition is not None and not precondition.holds(number):
                    raise stale(number)
                data = editable(plain(head.config if head else Config()))
                change(data)
                restore_keys(data, head.config if head else None)
                config = self.check(data, head.config if head else None)
                if head is not None and config == head.config:
                    return WriteResult(number, False, head.config)
                self.guard(head.config if head else None, config, allow_empty_groups)
                try:
                    revision = self.store.commit(
                        config, head.number if head else None, author, message
                    )
                except Conflict as exc:
                    if precondition is not None:
                        raise stale(exc.head or 0) from None
                    continue
                return WriteResult(revision.number, True, revision.config)
        raise ApiError(409, "the config kept changing under this write; try again")


def stale(head: int) -> ApiError:
    """The 412 of a write whose If-Match names a revision that is not the head (RFC 9110)."""
    return ApiError(
        412,
        f"the config changed: the head revision is {head}; read it again and retry",
        headers={"ETag": f'"{head}"'},
    )
