"""A real Envoy process for tests: the product's local Envoy, plus waits on the ledger."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TypeVar

from controlplane.fleet.ledger import Ledger, ProxyStatus
from controlplane.proxies.envoy import EnvoyProcess as LocalEnvoy
from controlplane.proxies.envoy import envoy_binary, wait_for
from controlplane.xds import types

ALL_TYPES = types.PUSH_ORDER

T = TypeVar("T")

__all__ = ["ALL_TYPES", "EnvoyProcess", "envoy_binary", "wait_for"]


class EnvoyProcess(LocalEnvoy):
    """One Envoy for a test: writes its bootstrap, runs it, answers admin questions, waits
    on what the ledger records of it, stops it."""

    # --- waiting on the ledger ---

    def status(self, ledger: Ledger) -> ProxyStatus | None:
        """This node in the ledger."""
        return ledger.get(self.node_id)

    def wait_acked(
        self, ledger: Ledger, versions: Mapping[str, str], timeout: float = 10.0
    ) -> None:
        """Wait until the ledger shows every given type ACKed at the given version."""

        def probe() -> bool:
            p = ledger.get(self.node_id)
            return p is not None and all(
                (s := p.types.get(t)) is not None and s.version_acked == v
                for t, v in versions.items()
            )

        self._wait(f"{self.node_id} to ACK {dict(versions)}", probe, timeout)

    def wait_synced(
        self,
        ledger: Ledger,
        snapshot_version: str,
        required_types: Iterable[str] = ALL_TYPES,
        timeout: float = 10.0,
    ) -> None:
        """Wait until every required type runs what snapshot `snapshot_version` selects."""
        wanted = list(required_types)

        def probe() -> bool:
            p = ledger.get(self.node_id)
            return p is not None and p.connected and p.runs(snapshot_version, wanted)

        self._wait(f"{self.node_id} to run snapshot {snapshot_version}", probe, timeout)

    def wait_nacked(
        self, ledger: Ledger, type_url: str, version: str, timeout: float = 10.0
    ) -> ProxyStatus:
        """Wait until the ledger shows `version` of `type_url` NACKed; returns the status."""

        def probe() -> ProxyStatus | None:
            p = ledger.get(self.node_id)
            s = p.types.get(type_url) if p else None
            if p and s and s.last_nack and s.last_nack.version == version:
                return p
            return None

        return self._wait(f"{self.node_id} to NACK {version}", probe, timeout)

    def _wait(self, what: str, probe: Callable[[], T | None], timeout: float) -> T:
        try:
            return wait_for(what, probe, timeout, every=0.002)
        except TimeoutError as err:
            raise TimeoutError(f"{err}\nenvoy log:\n{self.log_text()[-4000:]}") from None
