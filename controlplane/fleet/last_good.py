"""Last-known-good per Envoy group: while a group's proxies refuse the newest revision, an
Envoy that connects is served the last revision its group accepted, not the refused one.

A group is held back when one of its Envoys refused the newest revision published (also one
that has disconnected since: it may be restarting) and no connected one runs it; what
newcomers get is the newest revision one of its Envoys runs, compiled again from the store
for the group (`SnapshotCache.hold_back`). The hold is released once a connected Envoy of the
group runs the newest revision, or none refuses it (a newer revision came). The
status names the groups held back (`held_back`). Read from the status every replica answers
alike, so a refusal seen by one replica holds the group back on all of them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from ..model import GroupFacts, ProxyKind
from ..store import Store
from ..wakeups import Wakeups
from ..xds.cache import SnapshotCache
from .envoy_plane import EnvoyPlane
from .records import ProxyRecord
from .revisions import RevisionIndex

log = logging.getLogger(__name__)


class FollowedStatus(Protocol):
    """A status read in revision numbers, woken at each change."""

    @property
    def wakeups(self) -> Wakeups: ...

    def refusing(self, kind: ProxyKind) -> dict[str, list[ProxyRecord]]: ...


@dataclass(frozen=True)
class Hold:
    """Group `group` is served revision `revision` (its last-known-good) while its Envoys
    refuse revision `refused`."""

    group: str
    revision: int
    refused: int

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": "envoy",
            "group": self.group,
            "revision": self.revision,
            "refused": self.refused,
        }


class LastKnownGood:
    """Holds Envoy groups back on their last-known-good while they refuse the newest revision."""

    def __init__(
        self,
        status: FollowedStatus,
        index: RevisionIndex,
        store: Store,
        plane: EnvoyPlane,
        facts: Callable[[str], GroupFacts] = lambda _group: GroupFacts(),
    ) -> None:
        """`facts` are a group's facts as the fleet compiles it (`Fleet.members`)."""
        self.status = status
        self.facts = facts
        self.index = index
        self.store = store
        self.plane = plane
        self._holds: dict[str, Hold] = {}

    @property
    def cache(self) -> SnapshotCache:
        return self.plane.cache

    def held_back(self) -> list[dict[str, Any]]:
        """The groups held back, as the status shows them."""
        return [hold.as_json() for _, hold in sorted(self._holds.items())]

    async def run(self, every: float = 0.25) -> None:
        """Follow the status until cancelled: after each change, at most once per `every`
        seconds (a check reads the records of the groups where a proxy refused a revision)."""
        while True:
            with self.status.wakeups.waiter() as waiter:
                try:
                    await self.check()
                except Exception:
                    log.exception("checking the last-known-good of the Envoy groups failed")
                await waiter.wait(30.0)
            await asyncio.sleep(every)

    async def check(self) -> None:
        """Hold back or release each Envoy group as its proxies stand now."""
        head = self.index.latest_complete()
        if head is None:
            return
        members = self.status.refusing("envoy")
        for group in set(members) | set(self._holds):
            found = members.get(group, [])
            refusing = any(r.refused(head) for r in found) and not any(
                r.connected and r.runs(head) for r in found
            )
            good = max((r.revision for r in found if r.revision is not None), default=None)
            if refusing and good is not None:
                hold = Hold(group, good, head)
                if self._holds.get(group) != hold:
                    await self._hold(hold)
            elif group in self._holds:
                log.info("group %s accepts revision %d: nothing held back", group, head)
                del self._holds[group]
                self.cache.hold_back(group, None)

    async def _hold(self, hold: Hold) -> None:
        revision = await asyncio.to_thread(self.store.get, hold.revision)
        facts = self.facts(hold.group)
        build = await asyncio.to_thread(self.plane.compile, revision.config, hold.group, facts)
        for version, parts in build.versions.items():  # known here even if not published here
            self.index.record(hold.revision, "envoy", hold.group, version, parts)
        self.cache.hold_back(hold.group, build.snapshot)
        self._holds[hold.group] = hold
        log.warning(
            "group %s refuses revision %d: Envoys that connect get revision %d",
            hold.group,
            hold.refused,
            hold.revision,
        )
