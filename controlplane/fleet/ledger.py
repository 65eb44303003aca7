"""The ledger: which proxy runs which version, with every ACK and NACK.

Envoys are recorded by the xDS server as they connect, receive, ACK and NACK; HAProxy
instances are recorded by whatever applies their configuration (`record_apply`), supervises
them (`record_health`) or serves their agents (`poll_started`). A configuration the control plane
could not produce for a proxy is recorded as its refusal too (`refused`). Proxies gone for
long are dropped by `forget`. Queries return copies, so callers can read them from any thread;
`read` and `each` look at the entries themselves, under the ledger's lock, copying nothing.

What changes is told, not scanned for: `changes()` hands out a feed of the node ids whose entry
changed since it was last taken, and calls its `notify` when the first change of a batch comes.
Version strings and the tuples of snapshots a type matches are shared between the proxies that
hold the same (`_shared`): ten thousand Envoys on one version hold one record of it.
"""

from __future__ import annotations

import threading
import time
from array import array
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from ..model import ProxyKind
from .records import Health

EVENTS_KEPT = 32
"""How many recent protocol events are kept per proxy (a bounded history, for diagnosis)."""
MATCHES_KEPT = 16
"""How many group snapshots a type's content is remembered to match."""
SHARED_KEPT = 100_000
"""How many shared versions and tuples of versions are kept before starting afresh."""


@dataclass
class Nack:
    """A refused version: what was refused, the proxy's error text (opaque), and when."""

    version: str
    error: str
    at: float


@dataclass(slots=True)
class TypeStatus:
    """One resource type as one proxy holds it.

    `snapshots` are the versions of the group snapshots this type's ACKed content is known
    to match (what each selects for the proxy, for what it subscribes to), oldest first: the
    content of a type that did not change matches several. A new ACKed content starts the
    list again; sending the content of a snapshot takes that snapshot off until it is ACKed.
    """

    version_sent: str | None = None
    sent_at: float | None = None
    version_acked: str | None = None
    acked_at: float | None = None
    last_nack: Nack | None = None
    snapshots: tuple[str, ...] = ()

    @property
    def snapshot(self) -> str | None:
        """The newest snapshot this type is known to match."""
        return self.snapshots[-1] if self.snapshots else None


@dataclass(frozen=True, slots=True)
class Event:
    """One protocol event: `sent`, `ack` or `nack` of a version of a type (or `apply`)."""

    at: float
    type_url: str
    action: str
    version: str


class History:
    """The last `EVENTS_KEPT` protocol events of one proxy, oldest first: per event its time,
    and what happened (type, action, version) as one tuple shared by every proxy it happened
    to (`Ledger._what`): ten thousand streams sent one version hold one record of it, and
    eight bytes each for when."""

    __slots__ = ("_at", "_next", "_what")

    def __init__(self) -> None:
        self._at = array("d")
        self._what: list[tuple[str, str, str]] = []
        self._next = 0

    def copy(self) -> History:
        """An independent copy (what happened stays shared)."""
        made = History()
        made._at, made._what, made._next = array("d", self._at), list(self._what), self._next
        return made

    def add(self, at: float, what: tuple[str, str, str]) -> None:
        """Record that `what` happened at `at`, forgetting the oldest event when full."""
        if len(self._what) < EVENTS_KEPT:
            self._at.append(at)
            self._what.append(what)
            return
        self._at[self._next], self._what[self._next] = at, what
        self._next = (self._next + 1) % EVENTS_KEPT

    def __len__(self) -> int:
        return len(self._what)

    def __iter__(self) -> Iterator[Event]:
        count = len(self._what)
        for k in range(count):
            i = (self._next + k) % count
            yield Event(self._at[i], *self._what[i])


@dataclass(slots=True)
class ProxyStatus:
    """One proxy: who it is, since when, and what it runs per resource type.

    For HAProxy (`kind == "haproxy"`) the applied configuration is recorded as the single
    type `"haproxy"`; `detail` holds what the applier reported (`"via": "agent"` for one an
    agent feeds). `health` is what its supervisor last reported; `failure` the last
    configuration the control plane could not produce for it. `ran` are the last group
    snapshots (configuration versions) it was seen running entirely, every type at once,
    oldest first.
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
    events: History = field(default_factory=History)
    health: Health | None = None
    failure: Nack | None = None
    ran: tuple[str, ...] = ()

    @property
    def last_ran(self) -> str | None:
        """The last group snapshot it was seen running entirely."""
        return self.ran[-1] if self.ran else None

    @property
    def via_agent(self) -> bool:
        """An HAProxy fed by an agent: it polls; nothing tells the ledger when it leaves."""
        return self.detail.get("via") == "agent"

    @property
    def down(self) -> bool:
        """Its supervisor saw it die and has not restarted it."""
        return self.health is not None and self.health.down

    def runs(self, version: str, required_types: Iterable[str] | None = None) -> bool:
        """True when it is not down and every required type (default: every type it has)
        matches `version`."""
        wanted = list(required_types) if required_types is not None else list(self.types)
        if not wanted or self.down:
            return False
        return all((s := self.types.get(t)) is not None and version in s.snapshots for t in wanted)

    def copy(self) -> ProxyStatus:
        """An independent copy (events are immutable and shared)."""
        return replace(
            self,
            types={t: replace(s) for t, s in self.types.items()},
            detail=dict(self.detail),
            events=self.events.copy(),
        )


Observer = Callable[[str, str, ProxyKind, Event, dict[str, Any]], None]
"""Told of each ledger event: node id, group, kind, the event, what the applier reported."""

HAPROXY_TYPE = "haproxy"
"""The pseudo type under which HAProxy applies are recorded."""
COMPILE_TYPE = "compile"
"""The pseudo type of the events of a configuration the control plane could not produce."""

T = TypeVar("T")


class Changes:
    """The node ids whose ledger entry changed since they were last taken (`take`).

    `notify` is called (outside the ledger's lock, in the thread that made the change) when a
    change arrives while none is waiting to be taken: once per batch, not once per change.
    """

    def __init__(self, notify: Callable[[], None]) -> None:
        self.notify = notify
        self._nodes: set[str] = set()

    def take(self) -> set[str]:
        """The node ids changed since the last call (an atomic swap: no lock needed)."""
        nodes, self._nodes = self._nodes, set()
        return nodes

    def _mark(self, node_id: str) -> bool:
        """Note a change of `node_id` (ledger lock held); True when `notify` is due."""
        due = not self._nodes
        self._nodes.add(node_id)
        return due


class Ledger:
    """Per connected proxy: identity, group, kind, and per type what was sent, ACKed, NACKed."""

    def __init__(self) -> None:
        self._proxies: dict[str, ProxyStatus] = {}
        self._observers: list[Observer] = []
        self._feeds: list[Changes] = []
        self._shared: dict[Any, Any] = {}
        self._lock = threading.Lock()

    def changes(self, notify: Callable[[], None]) -> Changes:
        """A feed of the node ids whose entry changes from now on (see `Changes`)."""
        feed = Changes(notify)
        with self._lock:
            self._feeds = [*self._feeds, feed]
        return feed

    def stop_changes(self, feed: Changes) -> None:
        """Stop feeding `feed`."""
        with self._lock:
            self._feeds = [f for f in self._feeds if f is not feed]

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
            due = self._changed(node_id)
        self._notify(due)

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
            due = self._changed(node_id)
        self._notify(due)

    def describe(self, node_id: str, detail: dict[str, Any]) -> None:
        """What a proxy says of itself (an Envoy's admin address), kept in its detail."""
        with self._lock:
            p = self._proxies.get(node_id)
            if p is not None:
                p.detail = {**p.detail, **detail}

    def seen(self, node_id: str) -> None:
        """The proxy said something."""
        p = self._proxies.get(node_id)
        if p is not None:
            p.last_seen = time.time()

    def poll_started(self, node_id: str, group: str, running: str | None) -> None:
        """An agent asks for its group's HAProxy configuration (until `poll_ended`), saying it
        runs `running` (None: nothing yet). One the ledger does not know (the server restarted
        since it last reported) is recorded at once as an agent-fed HAProxy running that
        version. `streams` counts the polls open."""
        now = time.time()
        with self._lock:
            p = self._proxies.get(node_id)
            if p is not None and p.connected:
                p.group, p.last_seen = group, now
                p.streams += 1
            else:
                p = ProxyStatus(node_id, group, "haproxy", connected_since=now, last_seen=now)
                p.streams, p.detail = 1, {"via": "agent"}
                held = p.types[HAPROXY_TYPE] = TypeStatus()
                if running is not None:
                    held.version_acked, held.acked_at = running, now
                    held.snapshots = self._one(running)
                    self._ran_entirely(p, running)
                self._proxies[node_id] = p
            due = self._changed(node_id)
        self._notify(due)

    def poll_ended(self, node_id: str) -> None:
        """A poll `poll_started` opened was answered, or its agent went away."""
        with self._lock:
            p = self._proxies.get(node_id)
            if p is not None:
                p.streams = max(0, p.streams - 1)
                p.last_seen = time.time()

    def subscribed(self, node_id: str, type_url: str) -> None:
        """The proxy subscribed to a type; from now on it counts in `runs`."""
        with self._lock:
            p = self._proxies.get(node_id)
            if p is None or type_url in p.types:
                return
            self._type(node_id, type_url)
            due = self._changed(node_id)
        self._notify(due)

    def sent(self, node_id: str, type_url: str, version: str, snapshot: str | None = None) -> None:
        """A version of a type was sent to the proxy: what group snapshot `snapshot` selects
        for it, so until it is ACKed the type does not match that snapshot."""
        self._record(node_id, type_url, "sent", version, snapshot=snapshot)

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
            if s is None:
                return
            p = self._proxies[node_id]
            before = (s.snapshots, p.ran)
            if snapshot_version not in s.snapshots:
                s.snapshots = self._tuple((*s.snapshots[-(MATCHES_KEPT - 1) :], snapshot_version))
            if p.runs(snapshot_version):
                self._ran_entirely(p, snapshot_version)
            if (s.snapshots, p.ran) == before:
                return
            due = self._changed(node_id)
        self._notify(due)

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
            p = self._member(node_id, group, kind, now)
            p.detail = dict(detail or {})
            s = p.types.setdefault(HAPROXY_TYPE, TypeStatus())
            s.version_sent, s.sent_at = version, now
            if ok:
                s.version_acked, s.acked_at, s.snapshots = version, now, self._one(version)
                self._ran_entirely(p, version)
            else:
                s.last_nack = Nack(version, error or "", now)
            event = self._event(p, now, HAPROXY_TYPE, "ack" if ok else "nack", version)
            observers, applied = self._observers, dict(p.detail)
            due = self._changed(node_id)
        self._notify(due)
        self._tell(observers, node_id, group, kind, event, applied)

    def record_health(
        self,
        node_id: str,
        group: str,
        kind: ProxyKind,
        health: Health,
        version: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        """What a proxy's supervisor saw: it is down, or restarted running `version`."""
        with self._lock:
            p = self._member(node_id, group, kind, time.time())
            p.health = health
            if detail is not None:
                p.detail = {**p.detail, **detail}
            if not health.down and version is not None:
                s = p.types.setdefault(HAPROXY_TYPE, TypeStatus())
                if s.version_acked != version:
                    s.version_acked, s.acked_at = version, health.at
                    s.snapshots = self._one(version)
                self._ran_entirely(p, version)
            event = self._event(p, health.at, HAPROXY_TYPE, health.state, version or "")
            observers = self._observers
            due = self._changed(node_id)
        self._notify(due)
        self._tell(observers, node_id, group, kind, event, {})

    def refused(self, node_id: str, group: str, kind: ProxyKind, version: str, error: str) -> None:
        """The control plane could not produce configuration `version` for a proxy (its
        compiler or applier failed): a refusal of that version, with `error`."""
        now = time.time()
        with self._lock:
            p = self._member(node_id, group, kind, now)
            p.failure = Nack(version, error, now)
            event = self._event(p, now, COMPILE_TYPE, "nack", version)
            observers = self._observers
            due = self._changed(node_id)
        self._notify(due)
        self._tell(observers, node_id, group, kind, event, {})

    def forget(self, older_than: float) -> list[str]:
        """Drop the proxies gone for more than `older_than` seconds: disconnected, or fed by
        an agent that stopped polling. Returns their node ids."""
        cutoff = time.time() - older_than
        with self._lock:
            gone = [
                node_id
                for node_id, p in self._proxies.items()
                if (not p.connected or (p.via_agent and p.streams == 0)) and p.last_seen < cutoff
            ]
            due = False
            for node_id in gone:
                del self._proxies[node_id]
                due = self._changed(node_id) or due
            if len(self._shared) > SHARED_KEPT:
                self._shared.clear()
        self._notify(due)
        return sorted(gone)

    # --- queries ---

    def get(self, node_id: str) -> ProxyStatus | None:
        """A copy of one proxy's status."""
        with self._lock:
            p = self._proxies.get(node_id)
            return p.copy() if p is not None else None

    def read(self, node_id: str, look: Callable[[ProxyStatus], T]) -> T | None:
        """`look` applied to the entry of `node_id` itself (None when unknown), under the lock:
        it must not keep the entry nor call the ledger."""
        with self._lock:
            p = self._proxies.get(node_id)
            return look(p) if p is not None else None

    def each(self, look: Callable[[ProxyStatus], T], nodes: Iterable[str] | None = None) -> list[T]:
        """`look` applied to every entry itself (or those of `nodes` still known), under the
        lock, as `read`."""
        with self._lock:
            if nodes is None:
                return [look(p) for p in self._proxies.values()]
            return [look(p) for n in nodes if (p := self._proxies.get(n)) is not None]

    def members(self, group: str, kind: ProxyKind | None = None) -> list[str]:
        """Node ids of the connected proxies of `group` (and `kind`, when given)."""
        with self._lock:
            return [
                p.node_id
                for p in self._proxies.values()
                if p.connected and p.group == group and kind in (None, p.kind)
            ]

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

    def _changed(self, node_id: str) -> bool:
        """Note that the entry of `node_id` changed (lock held); whether a feed is to be told."""
        due = False
        for feed in self._feeds:
            due = feed._mark(node_id) or due
        return due

    def _notify(self, due: bool) -> None:
        """Tell the feeds that a batch of changes began (outside the lock)."""
        if due:
            for feed in self._feeds:
                feed.notify()

    def _tuple(self, values: tuple[str, ...]) -> tuple[str, ...]:
        """One shared tuple (of shared strings) for equal tuples (lock held)."""
        found = self._shared.get(values)
        if found is None:
            found = self._shared[values] = tuple(self._str(v) for v in values)
        return found

    def _str(self, value: str) -> str:
        """One shared string for equal version strings (lock held): versions reported by
        other processes arrive as a copy per stream."""
        return self._shared.setdefault(value, value)

    def _event(self, p: ProxyStatus, at: float, type_url: str, action: str, version: str) -> Event:
        """Add an event to the history of `p` (lock held), what happened shared between the
        proxies it happened to; the event, for the observers."""
        what = (self._str(type_url), action, self._str(version))
        shared: tuple[str, str, str] = self._shared.setdefault(what, what)
        p.events.add(at, shared)
        return Event(at, *shared)

    def _one(self, version: str) -> tuple[str, ...]:
        return self._tuple((version,))

    def _ran_entirely(self, p: ProxyStatus, version: str) -> None:
        if p.ran[-1:] != (version,):
            kept = (v for v in p.ran[-(MATCHES_KEPT - 1) :] if v != version)
            p.ran = self._tuple((*kept, version))

    def _member(self, node_id: str, group: str, kind: ProxyKind, now: float) -> ProxyStatus:
        """The proxy's status, recorded anew when unknown or disconnected (lock held)."""
        p = self._proxies.get(node_id)
        if p is None or not p.connected:
            p = ProxyStatus(node_id, group, kind, connected_since=now, last_seen=now)
            self._proxies[node_id] = p
        p.group, p.kind, p.last_seen = group, kind, now
        return p

    @staticmethod
    def _tell(
        observers: list[Observer],
        node_id: str,
        group: str,
        kind: ProxyKind,
        event: Event,
        detail: dict[str, Any],
    ) -> None:
        for observer in observers:
            observer(node_id, group, kind, event, detail)

    def _type(self, node_id: str, type_url: str) -> TypeStatus | None:
        p = self._proxies.get(node_id)
        if p is None:
            return None
        s = p.types.get(type_url)
        if s is None:
            s = p.types[type_url] = TypeStatus()
        return s

    def _record(
        self,
        node_id: str,
        type_url: str,
        action: str,
        version: str,
        error: str = "",
        snapshot: str | None = None,
    ) -> None:
        now = time.time()
        with self._lock:
            p = self._proxies.get(node_id)
            if p is None:
                return
            s = self._type(node_id, type_url)
            assert s is not None
            version = self._str(version)
            due = False
            if action == "sent":
                s.version_sent, s.sent_at = version, now
                held = snapshot is not None and (snapshot in s.snapshots or snapshot in p.ran)
                if held and version != s.version_acked:
                    s.snapshots = self._tuple(tuple(v for v in s.snapshots if v != snapshot))
                    p.ran = self._tuple(tuple(v for v in p.ran if v != snapshot))
                    due = self._changed(node_id)
            elif action == "ack":
                if version != s.version_acked and s.snapshots:
                    s.snapshots = ()
                    due = self._changed(node_id)
                s.version_acked, s.acked_at = version, now
            else:
                s.last_nack = Nack(version, error, now)
                due = self._changed(node_id)
            event = self._event(p, now, type_url, action, version)
            observers, group, kind = self._observers, p.group, p.kind
        self._notify(due)
        self._tell(observers, node_id, group, kind, event, {})
