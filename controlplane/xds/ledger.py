"""The ledger: which proxy runs which version, with every ACK and NACK.

Envoys are recorded by the xDS server as they connect, receive, ACK and NACK; HAProxy
instances are recorded by whatever applies their configuration (`record_apply`). Queries
return copies, so callers can read them from any thread.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

ProxyKind = Literal["envoy", "haproxy"]

EVENTS_KEPT = 200
"""How many recent protocol events are kept per proxy."""


@dataclass
class Nack:
    """A refused version: what was refused, the proxy's error text (opaque), and when."""

    version: str
    error: str
    at: float


@dataclass
class TypeStatus:
    """One resource type as one proxy holds it.

    `snapshot` is the version of the group snapshot this type is known to match (ACKed
    content equal to what that snapshot selects for the proxy), None until it matches one.
    """

    version_sent: str | None = None
    sent_at: float | None = None
    version_acked: str | None = None
    acked_at: float | None = None
    last_nack: Nack | None = None
    snapshot: str | None = None


@dataclass(frozen=True)
class Event:
    """One protocol event: `sent`, `ack` or `nack` of a version of a type (or `apply`)."""

    at: float
    type_url: str
    action: str
    version: str


@dataclass
class ProxyStatus:
    """One proxy: who it is, since when, and what it runs per resource type.

    For HAProxy (`kind == "haproxy"`) the applied configuration is recorded as the single
    type `"haproxy"`; `detail` holds what the applier reported.
    """

    node_id: str
    group: str
    kind: ProxyKind
    connected_since: float
    last_seen: float
    connected: bool = True
    streams: int = 0
    types: dict[str, TypeStatus] = field(default_factory=dict)
    detail: dict[str, Any] = field(default_factory=dict)
    events: deque[Event] = field(default_factory=lambda: deque(maxlen=EVENTS_KEPT))

    def runs(self, version: str, required_types: Iterable[str] | None = None) -> bool:
        """True when every required type (default: every type it has) matches `version`."""
        wanted = list(required_types) if required_types is not None else list(self.types)
        if not wanted:
            return False
        return all((s := self.types.get(t)) is not None and s.snapshot == version for t in wanted)

    def copy(self) -> ProxyStatus:
        """An independent copy (events are immutable and shared)."""
        return replace(
            self,
            types={t: replace(s) for t, s in self.types.items()},
            detail=dict(self.detail),
            events=deque(self.events, maxlen=EVENTS_KEPT),
        )


Observer = Callable[[str, str, ProxyKind, Event, dict[str, Any]], None]
"""Told of each ledger event: node id, group, kind, the event, what the applier reported."""

HAPROXY_TYPE = "haproxy"
"""The pseudo type under which HAProxy applies are recorded."""


class Ledger:
    """Per connected proxy: identity, group, kind, and per type what was sent, ACKed, NACKed."""

    def __init__(self) -> None:
        self._proxies: dict[str, ProxyStatus] = {}
        self._observers: list[Observer] = []
        self._lock = threading.Lock()

    def observe(self, observer: Observer) -> Callable[[], None]:
        """Call `observer` after every sent/ack/nack event; returns the cancel function."""
        with self._lock:
            self._observers = [*self._observers, observer]

        def cancel() -> None:
            with self._lock:
                self._observers = [o for o in self._observers if o is not observer]

        return cancel

    # --- recording (xDS server) ---

    def connect(self, node_id: str, group: str, kind: ProxyKind = "envoy") -> None:
        """A stream of `node_id` opened."""
        now = time.time()
        with self._lock:
            p = self._proxies.get(node_id)
            if p is None or not p.connected:
                p = ProxyStatus(node_id, group, kind, connected_since=now, last_seen=now)
                self._proxies[node_id] = p
            p.group = group
            p.streams += 1
            p.last_seen = now

    def disconnect(self, node_id: str) -> None:
        """A stream of `node_id` closed; the proxy is disconnected when its last one closes."""
        with self._lock:
            p = self._proxies.get(node_id)
            if p is None:
                return
            p.streams = max(0, p.streams - 1)
            p.last_seen = time.time()
            if p.streams == 0:
                p.connected = False

    def seen(self, node_id: str) -> None:
        """The proxy said something."""
        p = self._proxies.get(node_id)
        if p is not None:
            p.last_seen = time.time()

    def subscribed(self, node_id: str, type_url: str) -> None:
        """The proxy subscribed to a type; from now on it counts in `runs`."""
        with self._lock:
            self._type(node_id, type_url)

    def sent(self, node_id: str, type_url: str, version: str) -> None:
        """A version of a type was sent to the proxy."""
        self._record(node_id, type_url, "sent", version)

    def acked(self, node_id: str, type_url: str, version: str) -> None:
        """The proxy accepted a version of a type."""
        self._record(node_id, type_url, "ack", version)

    def nacked(self, node_id: str, type_url: str, version: str, error: str) -> None:
        """The proxy refused a version of a type, saying `error`."""
        self._record(node_id, type_url, "nack", version, error)

    def synced(self, node_id: str, type_url: str, snapshot_version: str) -> None:
        """What the proxy holds of a type matches the group snapshot `snapshot_version`."""
        with self._lock:
            s = self._type(node_id, type_url)
            if s is not None:
                s.snapshot = snapshot_version

    # --- recording (HAProxy manager) ---

    def record_apply(
        self,
        node_id: str,
        group: str,
        kind: ProxyKind,
        version: str,
        ok: bool,
        error: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        """A configuration `version` was applied to a proxy (ok = ACK) or refused (NACK)."""
        now = time.time()
        with self._lock:
            p = self._proxies.get(node_id)
            if p is None or not p.connected:
                p = ProxyStatus(node_id, group, kind, connected_since=now, last_seen=now)
                self._proxies[node_id] = p
            p.group, p.kind, p.last_seen = group, kind, now
            p.detail = dict(detail or {})
            s = p.types.setdefault(HAPROXY_TYPE, TypeStatus())
            s.version_sent, s.sent_at = version, now
            if ok:
                s.version_acked, s.acked_at, s.snapshot = version, now, version
            else:
                s.last_nack = Nack(version, error or "", now)
            event = Event(now, HAPROXY_TYPE, "ack" if ok else "nack", version)
            p.events.append(event)
            observers, applied = self._observers, dict(p.detail)
        for observer in observers:
            observer(node_id, group, kind, event, applied)

    # --- queries ---

    def get(self, node_id: str) -> ProxyStatus | None:
        """A copy of one proxy's status."""
        with self._lock:
            p = self._proxies.get(node_id)
            return p.copy() if p is not None else None

    def proxies(self, group: str | None = None, connected_only: bool = True) -> list[ProxyStatus]:
        """Copies of the proxies (of one group, if given), sorted by node id."""
        with self._lock:
            chosen = [
                p
                for p in self._proxies.values()
                if (group is None or p.group == group) and (p.connected or not connected_only)
            ]
            return [p.copy() for p in sorted(chosen, key=lambda p: p.node_id)]

    def lagging(
        self, group: str, version: str, required_types: Iterable[str] | None = None
    ) -> list[str]:
        """Node ids of connected proxies of `group` that do not run `version` yet."""
        wanted = list(required_types) if required_types is not None else None
        with self._lock:
            return sorted(
                p.node_id
                for p in self._proxies.values()
                if p.connected and p.group == group and not p.runs(version, wanted)
            )

    def group_runs(
        self, group: str, version: str, required_types: Iterable[str] | None = None
    ) -> bool:
        """True when every connected proxy of `group` runs `version` (and there is one)."""
        wanted = list(required_types) if required_types is not None else None
        with self._lock:
            members = [p for p in self._proxies.values() if p.connected and p.group == group]
            return bool(members) and all(p.runs(version, wanted) for p in members)

    def count(self, group: str | None = None) -> int:
        """How many connected proxies (of one group, if given)."""
        with self._lock:
            return sum(
                1 for p in self._proxies.values() if p.connected and group in (None, p.group)
            )

    # --- internals ---

    def _type(self, node_id: str, type_url: str) -> TypeStatus | None:
        p = self._proxies.get(node_id)
        if p is None:
            return None
        s = p.types.get(type_url)
        if s is None:
            s = p.types[type_url] = TypeStatus()
        return s

    def _record(
        self, node_id: str, type_url: str, action: str, version: str, error: str = ""
    ) -> None:
        now = time.time()
        with self._lock:
            p = self._proxies.get(node_id)
            if p is None:
                return
            s = self._type(node_id, type_url)
            assert s is not None
            if action == "sent":
                s.version_sent, s.sent_at = version, now
            elif action == "ack":
                s.version_acked, s.acked_at = version, now
            else:
                s.last_nack = Nack(version, error, now)
            event = Event(now, type_url, action, version)
            p.events.append(event)
            observers, group, kind = self._observers, p.group, p.kind
        for observer in observers:
            observer(node_id, group, kind, event, {})
