"""Who runs what, as the fleet answers it: each proxy's record, its refusals and health, and
where the fleet stands on a revision. Plain values, read by the API and the CLI."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ..model import ProxyKind


@dataclass(frozen=True)
class Refusal:
    """A revision a proxy refused (NACK), with the proxy's error text as it said it."""

    revision: int
    error: str
    at: float


@dataclass(frozen=True)
class Health:
    """What a proxy's supervisor last saw of its process: `down` (`reason` says what died),
    `restarted`, or `restart failed` (`error` says why; it is still down), at `at`."""

    state: str
    at: float
    reason: str
    error: str | None = None

    @property
    def down(self) -> bool:
        return self.state != "restarted"


@dataclass(frozen=True)
class ProxyRecord:
    """One proxy as the control plane last saw it.

    `revision`: the newest revision whose configuration for the proxy's group it runs, every
    part of it (None before its first ACK). A revision that changed nothing for a group counts
    as run by that group's proxies once they run the one before it. When a refused change left
    it between two revisions (an Envoy that took the new clusters but refused their
    endpoints), it is the last revision it ran entirely. A proxy that is `down` (see `health`)
    runs nothing, whatever its revision says it ran.
    """

    id: str
    kind: ProxyKind
    group: str
    revision: int | None
    connected: bool
    last_seen: float
    last_ack_at: float | None = None
    last_nack: Refusal | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    health: Health | None = None

    @property
    def down(self) -> bool:
        """Its process died and has not been restarted (yet)."""
        return self.health is not None and self.health.down

    def runs(self, revision: int) -> bool:
        """Whether the proxy runs `revision` or a newer one."""
        return not self.down and self.revision is not None and self.revision >= revision

    def refused(self, revision: int) -> bool:
        """Whether the proxy refused `revision` (or a newer one) and does not run it."""
        return (
            not self.runs(revision)
            and self.last_nack is not None
            and self.last_nack.revision >= revision
        )

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class WaitResult:
    """The answer to "does every connected proxy run revision N?".

    `proxies`: the connected proxies concerned; `converged` when each runs N (or newer);
    otherwise the ones that do not, with `refused` the ones that NACKed it.
    """

    revision: int
    converged: bool
    proxies: list[ProxyRecord]

    @property
    def acked(self) -> list[ProxyRecord]:
        return [p for p in self.proxies if p.runs(self.revision)]

    @property
    def refused(self) -> list[ProxyRecord]:
        return [p for p in self.proxies if p.refused(self.revision)]

    @property
    def pending(self) -> list[ProxyRecord]:
        return [
            p for p in self.proxies if not p.runs(self.revision) and not p.refused(self.revision)
        ]


def evaluate(records: list[ProxyRecord], revision: int) -> WaitResult:
    """Where the connected proxies stand with respect to `revision`."""
    connected = [p for p in records if p.connected]
    return WaitResult(revision, all(p.runs(revision) for p in connected), connected)
