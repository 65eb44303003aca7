"""The xDS protocol as one stream speaks it, independent of gRPC.

A stream belongs to one node and serves one type (a per-type service) or all of them (ADS).
It tracks per type what the client subscribed to, what it was sent under which nonce, and
what it ACKed; it answers requests and snapshot changes by sending only what changed:

- State of the world (`SotwStream`): a type is re-sent whole when the selection for the
  client's subscription has a new version.
- Delta (`DeltaStream`): only changed resources and the names of removed ones are sent.

Rules common to both: requests carrying a nonce other than the latest one sent are stale
(their ACK/NACK is ignored; in state of the world the whole request is). A NACKed version is
not sent again: the next different version is. Additions go out clusters, endpoints,
listeners, routes, and listeners and routes wait until cluster and endpoint responses are
answered, so they never arrive before what they point at. Clusters and endpoints that
disappeared are kept (make-before-break) until the client has ACKed the listeners and routes
of the current snapshot, so nothing still routed to is removed. Both orderings hold within a
stream, so they need ADS; per-type streams of one node are not coordinated.

Nothing is serialised per stream: responses are assembled from the cache's encodings. In
state of the world the nonce of a response is its version the first time a stream receives
that version, so every stream receives the very same bytes.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Awaitable, Callable, Container, Iterable

from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2

from controlplane.model import DEFAULT_GROUP, split_address
from controlplane.model.kinds import ADMIN_METADATA
from controlplane.xds import types
from controlplane.xds.cache import DeltaBody, Interest, Selection, Snapshot, SnapshotCache
from controlplane.xds.callbacks import StreamCallbacks

log = logging.getLogger("controlplane.xds")

Send = Callable[[bytes], Awaitable[None]]
"""Writes one serialised response on the stream."""

RETAINED = (types.CLUSTER, types.ENDPOINT)
"""Types whose removals wait until the referring types are ACKed."""
REFERRERS = (types.LISTENER, types.ROUTE)
"""Types that refer to clusters; they are held back while clusters or endpoints are in flight."""

RECENT_KEPT = 8
"""Versions remembered per type and stream, so a version sent again gets a fresh nonce."""

_stream_numbers = itertools.count(1)

Authorize = Callable[[str, str], str | None]
"""Why a stream may not be node (id, group); None when it may."""


class IdentityRefused(Exception):
    """The node a stream names is not one its peer may claim; the stream must end."""


class _TypeState:
    """What one client subscribed to of one type, and what it was sent and ACKed."""

    __slots__ = (
        "acked_version",
        "claimed",
        "explicit",
        "first_response_due",
        "have",
        "interest",
        "nonce",
        "pending",
        "raw_names",
        "recent",
        "sent",
        "sent_version",
        "synced",
        "wildcard",
    )

    def __init__(self) -> None:
        self.interest: Interest = None
        self.nonce: str | None = None
        self.pending = False
        self.sent_version: str | None = None
        self.acked_version: str | None = None
        self.synced: str | None = None
        self.first_response_due = True
        # state of the world
        self.raw_names: list[str] | None = None
        self.sent: Selection | None = None
        self.claimed: str | None = None
        self.recent: tuple[str, ...] = ()
        # delta
        self.wildcard = False
        self.explicit: set[str] = set()
        self.have: Selection | dict[str, str] = {}


class DiscoveryStream:
    """One gRPC discovery stream of one node; subclasses speak SotW or Delta."""

    def __init__(
        self,
        cache: SnapshotCache,
        callbacks: StreamCallbacks,
        send: Send,
        wake: Callable[[], None],
        only_type: str | None = None,
        *,
        serialise_per_stream: bool = False,
        authorize: Authorize | None = None,
    ) -> None:
        """`wake` is called (in the stream's loop) when the node's snapshot changes;
        `only_type` restricts a per-type service stream to one type; `authorize` (when given)
        vets the node of the first request, which is refused with IdentityRefused before the
        callbacks or the cache hear of it; `callbacks` hear of everything else."""
        self.cache = cache
        self.callbacks = callbacks
        self._send = send
        self._wake = wake
        self.only_type = only_type
        self.serialise_per_stream = serialise_per_stream
        self._authorize = authorize
        self.number = next(_stream_numbers)
        self.node_id: str | None = None
        self.group: str = DEFAULT_GROUP
        self.subs: dict[str, _TypeState] = {}
        self._nonces = itertools.count(1)
        self._unwatch: Callable[[], None] | None = None
        self._rewarm: set[str] = set()
        self._held_back = False

    # --- lifecycle ---

    def _bind(self, node: base_pb2.Node) -> None:
        if self.node_id is not None:
            return
        node_id, group = node.id, node.cluster or DEFAULT_GROUP
        if self._authorize is not None:
            refusal = self._authorize(node_id, group)
            if refusal is not None:
                raise IdentityRefused(refusal)
        # the process's id too: several xDS worker processes number their streams alike
        self.node_id = node_id or f"anonymous-{os.getpid()}-{self.number}"
        self.group = group
        self.callbacks.connected(self.node_id, self.group)
        admin = announced_admin(node)
        if admin is not None:
            self.callbacks.described(self.node_id, admin)
        self._unwatch = self.cache.watch(self.group, self._wake)
        self._held_back = self.cache.held(self.group) is not None

    def close(self) -> None:
        """The stream ended: stop watching and tell the callbacks."""
        if self._unwatch is not None:
            self._unwatch()
            self._unwatch = None
        if self.node_id is not None:
            self.callbacks.disconnected(self.node_id)

    # --- helpers shared by both variants ---

    def _type_of(self, type_url: str) -> str | None:
        if self.only_type is not None:
            if type_url and type_url != self.only_type:
                log.warning(
                    "stream %d: %s requested on the %s service; ignored",
                    self.number,
                    type_url,
                    types.short_name(self.only_type),
                )
                return None
            return self.only_type
        if not type_url:
            log.warning("stream %d: request without type_url ignored", self.number)
            return None
        return type_url

    def _begin(
        self, req: discovery_pb2.DiscoveryRequest | discovery_pb2.DeltaDiscoveryRequest
    ) -> str | None:
        """Bind the stream to the request's node, note it was seen; the type it is about."""
        type_url = self._type_of(req.type_url)
        if type_url is None:
            return None
        self._bind(req.node)
        assert self.node_id is not None
        self.callbacks.requested(self.node_id)
        return type_url

    def _state(self, type_url: str) -> tuple[_TypeState, bool]:
        st = self.subs.get(type_url)
        if st is not None:
            return st, False
        st = self.subs[type_url] = _TypeState()
        assert self.node_id is not None
        self.callbacks.subscribed(self.node_id, type_url)
        return st, True

    def _nonce(self) -> str:
        return f"{self.number:x}.{next(self._nonces)}"

    def _order(self) -> Iterable[str]:
        known = [t for t in types.PUSH_ORDER if t in self.subs]
        return known + sorted(t for t in self.subs if t not in types.PUSH_ORDER)

    def _retained_in_flight(self) -> bool:
        return any((st := self.subs.get(t)) is not None and st.pending for t in RETAINED)

    def _referrers_settled(self, snap: Snapshot) -> bool:
        for t in REFERRERS:
            st = self.subs.get(t)
            if st is None:
                continue
            if st.pending or st.acked_version != snap.select(t, st.interest).version:
                return False
        return True

    def _answered(self, type_url: str, st: _TypeState, error: str | None) -> None:
        """The client answered the latest response of a type: ACK (no error) or NACK."""
        st.pending = False
        assert self.node_id is not None and st.sent_version is not None
        if error is None:
            st.acked_version = st.sent_version
            self.callbacks.acked(self.node_id, type_url, st.sent_version)
        else:
            log.warning(
                "NACK from %s (group %s) for %s version %s: %s",
                self.node_id,
                self.group,
                types.short_name(type_url),
                st.sent_version,
                error,
            )
            self.callbacks.nacked(self.node_id, type_url, st.sent_version, error)

    def _report_synced(self, snap: Snapshot) -> None:
        assert self.node_id is not None
        for t, st in self.subs.items():
            if st.synced == snap.version or st.acked_version is None:
                continue
            if st.acked_version == snap.select(t, st.interest).version:
                st.synced = snap.version
                self.callbacks.synced(self.node_id, t, snap.version)

    def _clusters_sent(self, changed: Iterable[str], held: Container[str]) -> None:
        """Clusters whose definition changes with this CDS push (`changed` of those the client
        `held`): Envoy warms each again and waits for its endpoints (it ACKs the push only
        then), so their endpoints go out again right after it, even when they did not change."""
        self._rewarm.update(name for name in changed if name in held)

    def _rewarming(self, target: Selection) -> set[str]:
        """The endpoints of `target` due again because their cluster changed; no longer due."""
        if not self._rewarm:
            return set()
        due = {name for name in self._rewarm if name in target.entries}
        self._rewarm -= due
        return due

    async def _emit(
        self, type_url: str, st: _TypeState, snap: Snapshot, version: str, payload: bytes
    ) -> None:
        """Send `version` of a type, what `snap` gives the client (so what it held before no
        longer counts as matching `snap`)."""
        assert self.node_id is not None
        if version != st.acked_version:
            st.synced = None  # what it will hold is matched anew once it is ACKed
        st.sent_version = version
        st.pending = True
        st.first_response_due = False
        self.callbacks.sent(self.node_id, type_url, version, snap.version)
        await self._send(payload)

    async def refresh(self) -> None:
        """Bring the client to the group's current snapshot as far as the rules allow."""
        if self.node_id is None:
            return
        snap = self._snapshot()
        if snap is None:
            return
        settled = self._referrers_settled(snap)
        for t in self._order():
            if t in REFERRERS and self._retained_in_flight():
                continue
            await self._push(t, self.subs[t], snap, settled)
        self._report_synced(snap)

    def _snapshot(self) -> Snapshot | None:
        """What this stream is to run: the group's snapshot, or, while the group is held back
        since before this stream started, its last-known-good (`SnapshotCache.hold_back`)."""
        if self._held_back:
            held = self.cache.held(self.group)
            if held is not None:
                return held
            self._held_back = False
        return self.cache.get(self.group)

    async def _push(self, type_url: str, st: _TypeState, snap: Snapshot, settled: bool) -> None:
        raise NotImplementedError


class SotwStream(DiscoveryStream):
    """A state-of-the-world stream (`StreamAggregatedResources`, `StreamClusters`, ...)."""

    async def handle(self, req: discovery_pb2.DiscoveryRequest) -> None:
        """Take one request from the client and answer what needs answering."""
        type_url = self._begin(req)
        if type_url is None:
            return
        nonce = req.response_nonce
        known = self.subs.get(type_url)
        if known is not None and nonce and nonce != known.nonce:
            log.debug("stream %d: stale nonce %s for %s ignored", self.number, nonce, type_url)
            return
        st, first = self._state(type_url)
        if first and not nonce and req.version_info:
            st.claimed = req.version_info
        if nonce and nonce == st.nonce and st.pending:
            error = req.error_detail.message if req.HasField("error_detail") else None
            self._answered(type_url, st, error)
        names = req.resource_names
        if st.raw_names is None or names != st.raw_names:
            st.raw_names = list(names)
            if "*" in st.raw_names or (not st.raw_names and type_url in types.WILDCARD_TYPES):
                st.interest = None
            else:
                st.interest = self.cache.intern(frozenset(st.raw_names))
        await self.refresh()

    async def _push(self, type_url: str, st: _TypeState, snap: Snapshot, settled: bool) -> None:
        desired = snap.select(type_url, st.interest)
        target = desired
        if type_url in RETAINED and not settled and st.sent is not None:
            target = desired.keeping(st.sent, st.interest)
        if st.sent is None and st.claimed is not None:
            if st.claimed == target.version:
                # A reconnecting client already runs this: nothing to send.
                assert self.node_id is not None
                st.sent = target
                st.sent_version = st.acked_version = target.version
                st.first_response_due = False
                self.callbacks.acked(self.node_id, type_url, target.version)
            st.claimed = None
        rewarm = self._rewarming(target) if type_url == types.ENDPOINT else set()
        if st.sent is not None and st.sent.version == target.version and not rewarm:
            return
        if type_url == types.CLUSTER and st.sent is not None:
            self._clusters_sent(target.delta_from(st.sent).changed, st.sent.entries)
        st.sent = target
        if self.serialise_per_stream:
            st.nonce = nonce = self._nonce()
            payload = _naive_sotw(target, nonce)
        elif target.version in st.recent:
            st.nonce = nonce = self._nonce()
            payload = target.sotw_response(nonce)
        else:
            # The version is a fine nonce the first time a stream gets it, and lets every
            # stream share one encoded response.
            st.nonce = target.version
            payload = target.sotw_shared()
        st.recent = (*st.recent[-(RECENT_KEPT - 1) :], target.version)
        await self._emit(type_url, st, snap, target.version, payload)
        if not target.entries and type_url not in types.WILDCARD_TYPES:
            # An empty answer to named interest is settled as sent: a client that meanwhile
            # stopped watching the type (its clusters went away) never ACKs it.
            st.pending = False
            st.acked_version = target.version


class DeltaStream(DiscoveryStream):
    """An incremental stream (`DeltaAggregatedResources`, `DeltaClusters`, ...)."""

    async def handle(self, req: discovery_pb2.DeltaDiscoveryRequest) -> None:
        """Take one request from the client and answer what needs answering."""
        type_url = self._begin(req)
        if type_url is None:
            return
        st, first = self._state(type_url)
        nonce = req.response_nonce
        if nonce:
            if nonce == st.nonce and st.pending:
                error = req.error_detail.message if req.HasField("error_detail") else None
                self._answered(type_url, st, error)
            else:
                log.debug("stream %d: stale nonce %s for %s", self.number, nonce, type_url)
        subscribe = list(req.resource_names_subscribe)
        unsubscribe = list(req.resource_names_unsubscribe)
        if first:
            st.wildcard = "*" in subscribe or (not subscribe and type_url in types.WILDCARD_TYPES)
            st.explicit = {n for n in subscribe if n != "*"}
            st.have = dict(req.initial_resource_versions)
            st.first_response_due = not req.initial_resource_versions
        elif subscribe or unsubscribe:
            st.explicit.update(n for n in subscribe if n != "*")
            st.explicit.difference_update(unsubscribe)
            if "*" in subscribe:
                st.wildcard = True
            if "*" in unsubscribe:
                st.wildcard = False
            if unsubscribe:
                # The client forgets what it unsubscribed from; what it still gets through
                # a wildcard is sent again.
                have = st.have.versions() if isinstance(st.have, Selection) else dict(st.have)
                for n in unsubscribe:
                    have.pop(n, None)
                if not st.wildcard:
                    have = {n: v for n, v in have.items() if n in st.explicit}
                st.have = have
        if first or subscribe or unsubscribe:
            st.interest = None if st.wildcard else self.cache.intern(frozenset(st.explicit))
        await self.refresh()

    async def _push(self, type_url: str, st: _TypeState, snap: Snapshot, settled: bool) -> None:
        desired = snap.select(type_url, st.interest)
        removals_allowed = type_url not in RETAINED or settled
        new_have: Selection | dict[str, str]
        held = st.have.version_map if isinstance(st.have, Selection) else st.have
        if type_url == types.ENDPOINT and (rewarm := self._rewarming(desired)):
            # Sent again as if the client did not hold them (their clusters changed).
            st.have = {n: v for n, v in held.items() if n not in rewarm}
        if isinstance(st.have, Selection):
            target = desired if removals_allowed else desired.keeping(st.have, st.interest)
            body = target.delta_from(st.have)
            new_have = target
        else:
            target = desired
            body = DeltaBody.between(st.have, desired, st.interest)
            new_have = desired
            if body.removed and not removals_allowed:
                kept = {n: st.have[n] for n in body.removed}
                body = DeltaBody.between(st.have, desired, frozenset())
                new_have = {**desired.versions(), **kept}
        if body.empty and not st.first_response_due:
            st.have = new_have
            if st.sent_version is None:
                # A reconnecting client already holds all of this.
                assert self.node_id is not None
                st.sent_version = st.acked_version = target.version
                self.callbacks.acked(self.node_id, type_url, target.version)
            return
        st.have = new_have
        if type_url == types.CLUSTER:
            self._clusters_sent(body.changed, held)
        st.nonce = nonce = self._nonce()
        if self.serialise_per_stream:
            payload = _naive_delta(target, body, nonce)
        else:
            payload = body.response(type_url, target.version, nonce)
        await self._emit(type_url, st, snap, target.version, payload)


def _naive_sotw(target: Selection, nonce: str) -> bytes:
    """Baseline for benchmarks: build and serialise the response per stream."""
    resp = discovery_pb2.DiscoveryResponse(
        version_info=target.version, type_url=target.type_url, nonce=nonce
    )
    for e in target.entries.values():
        resp.resources.add().Pack(e.message)
    return resp.SerializeToString()


def _naive_delta(target: Selection, body: DeltaBody, nonce: str) -> bytes:
    """Baseline for benchmarks: build and serialise the delta response per stream."""
    resp = discovery_pb2.DeltaDiscoveryResponse(
        system_version_info=target.version,
        type_url=target.type_url,
        nonce=nonce,
        removed_resources=body.removed,
    )
    for name in body.changed:
        e = target.entries[name]
        packed = any_pb2.Any()
        packed.Pack(e.message)
        resp.resources.add(name=name, version=e.version, resource=packed)
    return resp.SerializeToString()


def announced_admin(node: base_pb2.Node) -> str | None:
    """The admin address a node announces in its metadata (`ADMIN_METADATA`), when it is an
    IP address and a port; None otherwise (the verifier then cannot read its config_dump)."""
    field = node.metadata.fields.get(ADMIN_METADATA)
    if field is None or not field.string_value:
        return None
    try:
        parts = split_address(field.string_value)
    except ValueError:
        return None
    return field.string_value if parts.ip is not None else None
