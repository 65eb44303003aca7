"""Snapshots of xDS resources per node group, their content-hash versions, and the cache.

A `Snapshot` is everything one node group should run: type URL → {name → message}. Every
resource is serialised once, deterministically, when the snapshot is built; its version is a
hash of those bytes, and a type's version is a hash of its sorted (name, version) pairs, so
identical content always yields identical versions, across restarts too.

What a stream sends is a `Selection`: the resources of one type a client is interested in.
Selections are memoised per snapshot and interest, and each keeps its encoded responses, so a
push to many streams encodes once and only appends a nonce per stream.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from types import MappingProxyType

from google.protobuf.message import Message

from controlplane.xds import wire
from controlplane.xds.collector import freeze_long_lived
from controlplane.xds.types import message_type, type_url_of

Interest = frozenset[str] | None
"""The names a client subscribed to, or None for a wildcard subscription (every resource)."""


def content_hash(data: bytes) -> str:
    """A short stable hash of some bytes, used as a version string."""
    return hashlib.blake2b(data, digest_size=8).hexdigest()


def pairs_hash(pairs: Iterable[tuple[str, str]]) -> str:
    """The version of a set of (name, version) pairs, independent of their order."""
    h = hashlib.blake2b(digest_size=8)
    for name, version in sorted(pairs):
        h.update(name.encode())
        h.update(b"\0")
        h.update(version.encode())
        h.update(b"\n")
    return h.hexdigest()


def resource_name(message: Message) -> str:
    """The xDS name of a resource: `name`, or `cluster_name` for a ClusterLoadAssignment."""
    for attr in ("name", "cluster_name"):
        if attr in message.DESCRIPTOR.fields_by_name:
            return str(getattr(message, attr))
    raise ValueError(f"{message.DESCRIPTOR.full_name} has no name field")


class Entry:
    """One resource at one version, serialised once and shared by every stream."""

    __slots__ = (
        "_delta_field",
        "_message",
        "name",
        "payload",
        "sotw_field",
        "type_url",
        "version",
    )

    def __init__(
        self, type_url: str, name: str, message: Message | None, payload: bytes | None = None
    ) -> None:
        """From the message, or from its deterministic serialisation `payload` (the message is
        then parsed when first asked for)."""
        self.type_url = type_url
        self.name = name
        self._message = message
        if payload is None:
            assert message is not None, "an entry needs its message or its payload"
            payload = message.SerializeToString(deterministic=True)
        self.payload: bytes = payload
        self.version = content_hash(self.payload)
        self.sotw_field = wire.field(2, wire.any_message(type_url, self.payload))
        """`DiscoveryResponse.resources` entry (an Any) as encoded bytes."""
        self._delta_field: bytes | None = None

    @property
    def message(self) -> Message:
        """The resource as a protobuf message."""
        if self._message is None:
            self._message = message_type(self.type_url).FromString(self.payload)
        return self._message

    @property
    def delta_field(self) -> bytes:
        """`DeltaDiscoveryResponse.resources` entry (a Resource) as encoded bytes."""
        if self._delta_field is None:
            resource = (
                wire.field(3, self.name.encode())
                + wire.field(1, self.version.encode())
                + wire.field(2, wire.any_message(self.type_url, self.payload))
            )
            self._delta_field = wire.field(2, resource)
        return self._delta_field


class Selection:
    """The resources of one type that one interest selects; its version names its content.

    Two selections with the same version hold the same (name, version) pairs. A selection
    keeps its encoded state-of-the-world body and the delta bodies computed from it, so every
    stream that receives it shares one encoding.
    """

    __slots__ = (
        "_delta_memo",
        "_keep_memo",
        "_sotw_body",
        "_sotw_shared",
        "_version_map",
        "entries",
        "type_url",
        "version",
    )

    def __init__(self, type_url: str, entries: Iterable[Entry]) -> None:
        ordered = sorted(entries, key=lambda e: e.name)
        self.type_url = type_url
        self.entries: Mapping[str, Entry] = {e.name: e for e in ordered}
        self.version = pairs_hash((e.name, e.version) for e in ordered)
        self._sotw_body: bytes | None = None
        self._sotw_shared: bytes | None = None
        self._keep_memo: dict[tuple[str, Interest], Selection] = {}
        self._delta_memo: dict[str, DeltaBody] = {}
        self._version_map: Mapping[str, str] | None = None

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def version_map(self) -> Mapping[str, str]:
        """Name → resource version, read-only: made once and shared by every stream."""
        if self._version_map is None:
            self._version_map = MappingProxyType({n: e.version for n, e in self.entries.items()})
        return self._version_map

    def versions(self) -> dict[str, str]:
        """Name → resource version, a copy of its own."""
        return dict(self.version_map)

    def sotw_body(self) -> bytes:
        """A DiscoveryResponse without nonce: version_info, resources, type_url."""
        if self._sotw_body is None:
            self._sotw_body = (
                wire.text_field(1, self.version)
                + b"".join(e.sotw_field for e in self.entries.values())
                + wire.text_field(4, self.type_url)
            )
        return self._sotw_body

    def sotw_response(self, nonce: str) -> bytes:
        """The complete serialised DiscoveryResponse carrying this selection."""
        return self.sotw_body() + wire.text_field(5, nonce)

    def sotw_shared(self) -> bytes:
        """The DiscoveryResponse whose nonce is the version: one bytes object for all streams.

        Valid wherever a stream has not sent this version before (nonces must not repeat
        within a stream); otherwise use `sotw_response` with a fresh nonce.
        """
        if self._sotw_shared is None:
            self._sotw_shared = self.sotw_response(self.version)
        return self._sotw_shared

    def keeping(self, previous: Selection, interest: Interest) -> Selection:
        """This selection plus what `previous` held that is gone here (still in `interest`).

        Used to hold back removals (make-before-break) until nothing refers to them.
        """
        key = (previous.version, interest)
        found = self._keep_memo.get(key)
        if found is None:
            kept = [
                e
                for name, e in previous.entries.items()
                if name not in self.entries and (interest is None or name in interest)
            ]
            found = Selection(self.type_url, [*self.entries.values(), *kept]) if kept else self
            self._keep_memo[key] = found
        return found

    def delta_from(self, have: Selection) -> DeltaBody:
        """What a client holding `have` must receive to hold exactly this selection."""
        found = self._delta_memo.get(have.version)
        if found is None:
            found = DeltaBody.between(have.versions(), self, None)
            self._delta_memo[have.version] = found
        return found


class DeltaBody:
    """The changed resources and the removed names of one delta push, encoded."""

    __slots__ = ("changed", "removed", "removed_block", "resources_block")

    def __init__(self, changed: list[str], removed: list[str], resources: bytes) -> None:
        self.changed = changed
        self.removed = removed
        self.resources_block = resources
        self.removed_block = b"".join(wire.field(6, n.encode()) for n in removed)

    @property
    def empty(self) -> bool:
        """True when the client already holds the target."""
        return not self.changed and not self.removed

    @staticmethod
    def between(have: Mapping[str, str], target: Selection, interest: Interest) -> DeltaBody:
        """Changes from the versions a client holds to `target`; removals limited to `interest`."""
        changed = [e for name, e in target.entries.items() if have.get(name) != e.version]
        removed = sorted(
            name
            for name in have
            if name not in target.entries and (interest is None or name in interest)
        )
        return DeltaBody(
            [e.name for e in changed], removed, b"".join(e.delta_field for e in changed)
        )

    def response(self, type_url: str, system_version: str, nonce: str) -> bytes:
        """The complete serialised DeltaDiscoveryResponse."""
        return (
            wire.text_field(1, system_version)
            + self.resources_block
            + wire.text_field(4, type_url)
            + self.removed_block
            + wire.text_field(5, nonce)
        )


class Snapshot(Mapping[str, Mapping[str, Message]]):
    """An immutable view: type URL → {resource name → message}, with content-hash versions.

    The messages are serialised when the snapshot is built; mutating them afterwards changes
    nothing that is served (and must not be done).
    """

    def __init__(
        self,
        resources: Mapping[str, Mapping[str, Message] | Iterable[Message]],
        version: str | None = None,
    ) -> None:
        entries: dict[str, dict[str, Entry]] = {}
        for type_url, items in resources.items():
            named = items.items() if isinstance(items, Mapping) else _named(items)
            by_name: dict[str, Entry] = {}
            for name, message in named:
                if type_url_of(message) != type_url:
                    raise ValueError(f"{name}: a {type_url_of(message)} filed under {type_url}")
                by_name[name] = Entry(type_url, name, message)
            entries[type_url] = by_name
        self._seal(entries, version)

    def _seal(self, entries: dict[str, dict[str, Entry]], version: str | None) -> None:
        self._entries = entries
        self._type_versions = {
            t: pairs_hash((n, e.version) for n, e in by_name.items())
            for t, by_name in self._entries.items()
        }
        self.version: str = version or pairs_hash(self._type_versions.items())
        """The snapshot's label: given, or a hash of the type versions."""
        self._selections: dict[tuple[str, Interest], Selection] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_payloads(
        cls, payloads: Mapping[str, Mapping[str, bytes]], version: str | None = None
    ) -> Snapshot:
        """A snapshot from resources already serialised (`payloads()` of another snapshot):
        the same bytes, so the same versions, without serialising anything again."""
        snapshot = cls.__new__(cls)
        snapshot._seal(
            {
                type_url: {name: Entry(type_url, name, None, data) for name, data in items.items()}
                for type_url, items in payloads.items()
            },
            version,
        )
        return snapshot

    def payloads(self) -> dict[str, dict[str, bytes]]:
        """Type URL → {name → the resource's serialisation}: what `from_payloads` reads."""
        return {
            t: {n: e.payload for n, e in by_name.items()} for t, by_name in self._entries.items()
        }

    @classmethod
    def from_messages(cls, messages: Iterable[Message], version: str | None = None) -> Snapshot:
        """A snapshot from resource messages, filed by their type URL and name."""
        grouped: dict[str, list[Message]] = {}
        for m in messages:
            grouped.setdefault(type_url_of(m), []).append(m)
        return cls(grouped, version)

    def __getitem__(self, type_url: str) -> Mapping[str, Message]:
        return MappingProxyType({n: e.message for n, e in self._entries[type_url].items()})

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        counts = ", ".join(f"{t.rsplit('.', 1)[-1]}={len(e)}" for t, e in self._entries.items())
        return f"Snapshot({self.version}: {counts})"

    def type_version(self, type_url: str) -> str:
        """The version of a whole type: a hash of its sorted (name, version) pairs."""
        return self._type_versions.get(type_url) or pairs_hash(())

    def resource_version(self, type_url: str, name: str) -> str | None:
        """The content-hash version of one resource, None if absent."""
        entry = self._entries.get(type_url, {}).get(name)
        return entry.version if entry else None

    def entries(self, type_url: str) -> Mapping[str, Entry]:
        """The serialised resources of one type."""
        return MappingProxyType(self._entries.get(type_url, {}))

    def select(self, type_url: str, interest: Interest) -> Selection:
        """The resources of `type_url` that `interest` names (all of them for a wildcard).

        Memoised per snapshot: pass interned interests (`SnapshotCache.intern`) so that equal
        subscriptions of many streams share one selection.
        """
        key = (type_url, interest)
        found = self._selections.get(key)
        if found is None:
            with self._lock:
                found = self._selections.get(key)
                if found is None:
                    by_name = self._entries.get(type_url, {})
                    if interest is None:
                        chosen: Iterable[Entry] = by_name.values()
                    else:
                        chosen = [by_name[n] for n in interest if n in by_name]
                    found = Selection(type_url, chosen)
                    self._selections[key] = found
        return found


def _named(messages: Iterable[Message]) -> Iterator[tuple[str, Message]]:
    for m in messages:
        yield resource_name(m), m


class _Watch:
    __slots__ = ("callback", "loop")

    def __init__(self, callback: Callable[[], None], loop: asyncio.AbstractEventLoop | None):
        self.callback = callback
        self.loop = loop


class SnapshotCache:
    """The current snapshot of every node group, and who to tell when one changes.

    `set_snapshot` may be called from any thread; watchers registered from an event loop are
    called in that loop.
    """

    _INTERN_LIMIT = 100_000

    def __init__(self) -> None:
        self._snapshots: dict[str, Snapshot] = {}
        self._held: dict[str, Snapshot] = {}
        self._watches: dict[str, set[_Watch]] = {}
        self._interned: dict[frozenset[str], frozenset[str]] = {}
        self._followers: list[Callable[[str], None]] = []
        self._lock = threading.Lock()

    def follow(self, callback: Callable[[str], None]) -> None:
        """Call `callback(group)`, in the thread that made the change, after every change of
        what `group` serves: a new snapshot version, a hold set or released, a group cleared.
        Changes of one group reach it in the order they were made."""
        with self._lock:
            self._followers.append(callback)

    def _tell_followers(self, group: str) -> None:
        for callback in list(self._followers):
            callback(group)

    def set_snapshot(self, group: str, snapshot: Snapshot) -> None:
        """Make `snapshot` what `group` runs; watchers are told only if its version changed."""
        with self._lock:
            previous = self._snapshots.get(group)
            self._snapshots[group] = snapshot
            watches = list(self._watches.get(group, ()))
        if previous is not None and previous.version == snapshot.version:
            return
        self._tell_followers(group)
        freeze_long_lived()  # before the push: its garbage collections skip the snapshot
        _notify(watches)

    def get(self, group: str) -> Snapshot | None:
        """The current snapshot of `group`, None before the first one is set."""
        return self._snapshots.get(group)

    def hold_back(self, group: str, snapshot: Snapshot | None) -> None:
        """Streams of `group` that start from now on are served `snapshot` (the last one the
        group accepted, while its proxies refuse the current one) instead of the current
        snapshot, until the hold is released (None); then they follow the current snapshot.
        Streams that started before keep following the current snapshot."""
        with self._lock:
            previous = self._held.pop(group, None)
            if snapshot is not None:
                self._held[group] = snapshot
            watches = list(self._watches.get(group, ()))
        if previous is not None or snapshot is not None:
            self._tell_followers(group)
        if previous is not None and snapshot is None:
            _notify(watches)

    def held(self, group: str) -> Snapshot | None:
        """What new streams of `group` are served instead of its current snapshot (None: the
        current snapshot, nothing is held back)."""
        return self._held.get(group)

    def groups(self) -> list[str]:
        """Groups that have a snapshot."""
        with self._lock:
            return sorted(self._snapshots)

    def clear(self, group: str) -> None:
        """Forget a group's snapshot (its streams keep what they were sent)."""
        with self._lock:
            cleared = self._snapshots.pop(group, None)
        if cleared is not None:
            self._tell_followers(group)

    def watch(self, group: str, callback: Callable[[], None]) -> Callable[[], None]:
        """Call `callback` after each change of `group`'s snapshot; returns the cancel function.

        Registered from inside an event loop, the callback runs in that loop.
        """
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        w = _Watch(callback, loop)
        with self._lock:
            self._watches.setdefault(group, set()).add(w)

        def cancel() -> None:
            with self._lock:
                self._watches.get(group, set()).discard(w)

        return cancel

    async def wait_for_change(self, group: str, known_version: str | None) -> Snapshot:
        """The snapshot of `group` once its version differs from `known_version`."""
        while True:
            current = self.get(group)
            if current is not None and current.version != known_version:
                return current
            changed = asyncio.Event()
            cancel = self.watch(group, changed.set)
            try:
                current = self.get(group)
                if current is not None and current.version != known_version:
                    return current
                await changed.wait()
            finally:
                cancel()

    def intern(self, names: frozenset[str]) -> frozenset[str]:
        """One shared object per distinct set of names, so memo lookups compare by identity."""
        found = self._interned.get(names)
        if found is None:
            if len(self._interned) >= self._INTERN_LIMIT:
                self._interned.clear()
            self._interned[names] = found = names
        return found


def _notify(watches: Iterable[_Watch]) -> None:
    try:
        running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    for w in watches:
        if w.loop is None or w.loop is running:
            w.callback()
        elif not w.loop.is_closed():
            w.loop.call_soon_threadsafe(w.callback)
