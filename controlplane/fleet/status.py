"""The ledger read in revision numbers: the `StatusSource` of a running server.

Nothing here scans the fleet while nothing changes. Each proxy's standing (the newest revision
it runs, its last refusal) is kept and computed again only when the ledger says the proxy
changed or a revision is recorded that it may run. Per revision waited for (and for the newest
one, which the metrics read), `Behind` keeps the connected proxies that do not run it yet,
updated with each standing: a wait returns when none is left that has not refused it.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque

from ..model import ProxyKind
from ..wakeups import Wakeups
from .ledger import Ledger, ProxyStatus
from .records import ProxyRecord, WaitResult
from .revisions import GroupKey, RevisionIndex
from .standing import AGENT_SILENCE_SECONDS, Standing, record_of, silent, standing_of

__all__ = ["AGENT_SILENCE_SECONDS", "Behind", "LedgerStatus"]


class Behind:
    """The connected proxies of the groups a revision concerns that do not run it (yet).

    `covering` is the revision pushed for it (itself, or the newer one it was coalesced
    into; None until then) and `concerned` the (kind, group) pairs it went to. `behind` maps
    each proxy behind to its (kind, group); `refused` are those that refused the revision,
    `agents` those fed by agents (whose silence counts as leaving, at read time).
    """

    def __init__(self, revision: int) -> None:
        self.revision = revision
        self.covering: int | None = None
        self.concerned: frozenset[GroupKey] = frozenset()
        self.behind: dict[str, GroupKey] = {}
        self.refused: set[str] = set()
        self.agents: set[str] = set()
        self.per_group: Counter[GroupKey] = Counter()
        self.holders = 0

    def update(self, node_id: str, standing: Standing | None) -> None:
        """`node_id` now stands at `standing` (None: it is gone)."""
        was = self.behind.pop(node_id, None)
        if was is not None:
            self.per_group[was] -= 1
        if (
            standing is None
            or not standing.connected
            or (standing.kind, standing.group) not in self.concerned
            or standing.runs(self.revision)
        ):
            self.refused.discard(node_id)
            self.agents.discard(node_id)
            return
        key = (standing.kind, standing.group)
        self.behind[node_id] = key
        self.per_group[key] += 1
        _put(self.refused, node_id, standing.refused(self.revision))
        _put(self.agents, node_id, standing.via_agent)

    def pending(self) -> set[str]:
        """Behind and not refusing it: still on their way."""
        return self.behind.keys() - self.refused


def _put(chosen: set[str], node_id: str, member: bool) -> None:
    if member:
        chosen.add(node_id)
    else:
        chosen.discard(node_id)


class LedgerStatus:
    """Each proxy of the ledger with the newest revision it runs and its last refusal."""

    def __init__(self, ledger: Ledger, index: RevisionIndex, keep_changed: bool = False) -> None:
        """With `keep_changed`, remember which proxies' records may have changed, for
        `take_changed` (a replica reporting them to the others)."""
        self.ledger = ledger
        self.index = index
        self._lock = threading.RLock()
        self._standings: dict[str, Standing] = {}
        self._members: dict[GroupKey, set[str]] = {}
        self._connected: Counter[GroupKey] = Counter()
        self._refusing: Counter[GroupKey] = Counter()
        self._trackers: dict[int, Behind] = {}
        self._head: Behind | None = None
        self._recorded: deque[tuple[int, GroupKey | None]] = deque()
        self._woken = Wakeups()
        self._changed: set[str] | None = set() if keep_changed else None
        self._changes = ledger.changes(self._woken.wake)
        self._unseen = set(ledger.each(lambda p: p.node_id))
        self._cancel_index = index.observe(self._on_index)

    @property
    def wakeups(self) -> Wakeups:
        """Woken whenever the ledger or the index changed (what a record reads may differ)."""
        return self._woken

    def take_changed(self) -> dict[str, ProxyRecord | None]:
        """The records of the proxies whose record may have changed since the last call
        (None: the ledger forgot the proxy); empty unless made with `keep_changed`."""
        with self._lock:
            self._catch_up()
            if not self._changed:
                return {}
            nodes, self._changed = self._changed, set()
            now = time.time()
            found = dict(
                self.ledger.each(lambda p: (p.node_id, record_of(p, self._standing(p), now)), nodes)
            )
        return {node_id: found.get(node_id) for node_id in sorted(nodes)}

    def close(self) -> None:
        """Stop following the ledger and the index."""
        self.ledger.stop_changes(self._changes)
        self._cancel_index()

    # --- reading ---

    def proxies(self) -> list[ProxyRecord]:
        with self._lock:
            self._catch_up()
            now = time.time()
            records = self.ledger.each(lambda p: record_of(p, self._standing(p), now))
        return sorted(records, key=lambda r: (r.group, r.kind, r.id))

    def refusing(self, kind: ProxyKind) -> dict[str, list[ProxyRecord]]:
        """Per group of `kind` where a proxy has refused a revision (its last refusal, even
        if it runs a newer one since), the records of the group's proxies: the groups that
        may need holding back, read without a scan of the others."""
        with self._lock:
            self._catch_up()
            now = time.time()
            found: dict[str, list[ProxyRecord]] = {}
            for key, count in self._refusing.items():
                if count and key[0] == kind:
                    nodes = self._members.get(key, set())
                    records = self.ledger.each(
                        lambda p: record_of(p, self._standing(p), now), nodes
                    )
                    found[key[1]] = sorted(records, key=lambda r: r.id)
            return found

    def evaluate(self, revision: int) -> WaitResult:
        """Where the connected proxies of the groups `revision` concerns stand (those of the
        revision pushed in its place when it was coalesced away)."""
        with self._lock:
            self._catch_up()
            covering = self.index.covering(revision)
            concerned = self.index.groups(covering) if covering is not None else set()
            return self._result(revision, frozenset(concerned))

    async def wait(self, revision: int, timeout: float) -> WaitResult:
        """Return once every connected proxy concerned runs `revision` or refused it (so a
        refusal is reported with where every other proxy stands), or after `timeout`."""
        deadline = time.monotonic() + timeout
        tracker = self._hold(revision)
        try:
            while True:
                with self._woken.waiter() as waiter:
                    with self._lock:
                        self._catch_up()
                        wake_in = self._settled_in(tracker)
                    remaining = deadline - time.monotonic()
                    if wake_in == 0.0 or remaining <= 0:
                        break
                    await waiter.wait(remaining if wake_in is None else min(remaining, wake_in))
            with self._lock:
                if tracker.covering is None:
                    return WaitResult(revision, False, [])
                return self._result(revision, tracker.concerned)
        finally:
            self._release(tracker)

    def gauges(self) -> dict[GroupKey, tuple[int, int]]:
        """Per (kind, group) with proxies: how many are connected, and how many of those do
        not run the newest revision published (not yet, or refused)."""
        with self._lock:
            self._catch_up()
            head = self._head
            now = time.time()
            behind: Counter[GroupKey] = Counter()
            if head is not None:
                behind.update(head.per_group)
                for node_id in head.agents:
                    if self._silent(node_id, now):
                        behind[head.behind[node_id]] -= 1
            keys = {k for k, n in self._connected.items() if n} | {
                k for k, n in behind.items() if n
            }
            return {k: (self._connected[k], behind[k]) for k in sorted(keys)}

    # --- keeping up ---

    def _on_index(self, revision: int, key: GroupKey | None) -> None:
        self._recorded.append((revision, key))
        self._woken.wake()

    def _catch_up(self) -> None:
        """Apply what the ledger and the index told since the last call (lock held)."""
        nodes = self._changes.take()
        if self._unseen:
            nodes |= self._unseen
            self._unseen = set()
        recorded: dict[GroupKey, set[int]] = {}
        completed = False
        while self._recorded:
            revision, key = self._recorded.popleft()
            if key is None:
                completed = True
            else:
                recorded.setdefault(key, set()).add(revision)
        for key, revisions in recorded.items():
            nodes |= self._affected(key, revisions)
        if nodes:
            self._restand(nodes)
        if completed or self._head is None:
            self._follow_head()
            for tracker in self._trackers.values():
                if tracker.covering is None:
                    self._aim(tracker)

    def _affected(self, key: GroupKey, revisions: set[int]) -> set[str]:
        """The proxies of `key` whose standing the newly recorded (or dropped) `revisions` may
        change: every one when a revision was dropped; otherwise those that may run one."""
        members = self._members.get(key, set())
        fresh = [p for p in self.index.of_group(*key).published if p.revision in revisions]
        if len(fresh) < len(revisions):
            return set(members)
        return {n for n in members if any(self._standings[n].may_run(p) for p in fresh)}

    def _restand(self, nodes: set[str]) -> None:
        """Compute the standing of `nodes` anew and tell every tracker (lock held)."""
        if self._changed is not None:
            self._changed |= nodes
        index = self.index
        fresh = dict(
            self.ledger.each(
                lambda p: (p.node_id, standing_of(p, index.of_group(p.kind, p.group))), nodes
            )
        )
        trackers = list(self._trackers.values())
        for node_id in nodes:
            old = self._standings.get(node_id)
            new = fresh.get(node_id)
            if old == new:
                continue
            if old is not None:
                old_key = (old.kind, old.group)
                if new is None or (new.kind, new.group) != old_key:
                    self._members.get(old_key, set()).discard(node_id)
                self._connected[old_key] -= old.connected
                self._refusing[old_key] -= old.refusal is not None
            if new is None:
                del self._standings[node_id]
            else:
                new_key = (new.kind, new.group)
                self._standings[node_id] = new
                self._members.setdefault(new_key, set()).add(node_id)
                self._connected[new_key] += new.connected
                self._refusing[new_key] += new.refusal is not None
            for tracker in trackers:
                tracker.update(node_id, new)

    def _hold(self, revision: int) -> Behind:
        """The tracker of `revision`, shared by every wait on it (and by the head's)."""
        with self._lock:
            self._catch_up()
            return self._track(revision)

    def _track(self, revision: int) -> Behind:
        """`_hold` without catching up first (lock held)."""
        tracker = self._trackers.get(revision)
        if tracker is None:
            tracker = self._trackers[revision] = Behind(revision)
            self._aim(tracker)
        tracker.holders += 1
        return tracker

    def _release(self, tracker: Behind) -> None:
        with self._lock:
            tracker.holders -= 1
            if tracker.holders == 0 and self._trackers.get(tracker.revision) is tracker:
                del self._trackers[tracker.revision]

    def _follow_head(self) -> None:
        """Keep a tracker on the newest revision completely published (lock held)."""
        latest = self.index.latest_complete()
        if latest is None or (self._head is not None and self._head.revision == latest):
            return
        if self._head is not None:
            self._release(self._head)
        self._head = self._track(latest)

    def _aim(self, tracker: Behind) -> None:
        """Point `tracker` at the revision pushed for its own, once there is one, and count
        who is behind it (lock held): once per revision, not per wait."""
        covering = self.index.covering(tracker.revision)
        if covering is None:
            return
        tracker.covering = covering
        tracker.concerned = frozenset(self.index.groups(covering))
        for key in tracker.concerned:
            for node_id in self._members.get(key, ()):
                tracker.update(node_id, self._standings[node_id])

    def _settled_in(self, tracker: Behind) -> float | None:
        """0 when no proxy concerned is on its way to the revision any more; otherwise how
        long until an agent among them counts as gone for its silence (None: no such)."""
        if tracker.covering is None:
            return None
        pending = tracker.pending()
        if not pending:
            return 0.0
        if not pending <= tracker.agents:
            return self._silence_due(pending & tracker.agents)
        now = time.time()
        if all(self._silent(n, now) for n in pending):
            return 0.0
        return self._silence_due(pending)

    def _silence_due(self, agents: set[str]) -> float | None:
        seen = self.ledger.each(lambda p: p.last_seen, agents)
        if not seen:
            return None
        return max(0.001, min(seen) + AGENT_SILENCE_SECONDS - time.time())

    def _silent(self, node_id: str, now: float) -> bool:
        found = self.ledger.read(node_id, lambda p: silent(p.via_agent, p.last_seen, now))
        return bool(found)

    def _standing(self, proxy: ProxyStatus) -> Standing:
        found = self._standings.get(proxy.node_id)
        if found is None or (found.kind, found.group) != (proxy.kind, proxy.group):
            found = standing_of(proxy, self.index.of_group(proxy.kind, proxy.group))
        return found

    def _result(self, revision: int, concerned: frozenset[GroupKey]) -> WaitResult:
        """The records of the connected proxies of `concerned` (lock held)."""
        now = time.time()
        nodes = [n for key in concerned for n in self._members.get(key, ())]
        records = [
            r
            for r in self.ledger.each(lambda p: record_of(p, self._standing(p), now), nodes)
            if r.connected and (r.kind, r.group) in concerned
        ]
        records.sort(key=lambda r: (r.group, r.kind, r.id))
        return WaitResult(revision, all(r.runs(revision) for r in records), records)
