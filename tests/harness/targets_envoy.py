"""Envoy as a scenario target: the real translator and xDS server feeding a real Envoy.

`EnvoyTarget` runs our xDS server in-process (its own event-loop thread) and one Envoy whose
node belongs to a fixed node group; `apply` translates the config's part for the requested
group, publishes it under that node group, and returns once the ledger shows Envoy ACKed
every type it subscribes to at that snapshot and Envoy's admin shows nothing warming.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Literal

from controlplane.envoy import CLUSTER, ENDPOINT, LISTENER, ROUTE, Resources, translate
from controlplane.fleet.ledger import Ledger
from controlplane.model import Config
from controlplane.xds.cache import Snapshot

from .envoy import EnvoyProcess, wait_for
from .xds_server import XdsServerThread

Mode = Literal["sotw", "delta"]

NODE_GROUP = "scenario"
"""The node group (bootstrap `node.cluster`) of the target's Envoy, whatever group is applied."""

APPLY_TIMEOUT = 15.0
_ids = itertools.count(1)


class EnvoyApplyError(RuntimeError):
    """Envoy refused (NACKed) a translated config; the message holds its error text."""


class EnvoyTarget:
    """One real Envoy fed over ADS (state of the world or delta) by our xDS server."""

    def __init__(self, mode: Mode = "sotw", *, concurrency: int = 1) -> None:
        self.mode: Mode = mode
        self.name = f"envoy-{mode}"
        self.concurrency = concurrency
        self.xds: XdsServerThread | None = None
        self.envoy: EnvoyProcess | None = None
        self.workdir: Path | None = None
        self.resources: Resources | None = None
        """What the last `apply` sent."""
        self._published_at = 0.0

    @property
    def ledger(self) -> Ledger:
        assert self.xds is not None, "start() first"
        return self.xds.ledger

    def start(self) -> None:
        """Start the xDS server with an empty snapshot, then Envoy; returns when Envoy is LIVE."""
        self.workdir = Path(tempfile.mkdtemp(prefix=f"{self.name}-"))
        try:
            self.xds = XdsServerThread()
            port = self.xds.start()
            self.xds.cache.set_snapshot(NODE_GROUP, _snapshot(Resources()))
            node_id = f"{self.name}-{os.getpid()}-{next(_ids)}"
            self.envoy = EnvoyProcess(
                self.workdir,
                node_id,
                NODE_GROUP,
                port,
                delta=self.mode == "delta",
                concurrency=self.concurrency,
            )
            self.envoy.start()
        except BaseException:
            self.stop()
            raise

    def apply(self, config: Config, group: str) -> None:
        """Run `config`'s part for node group `group`; returns when Envoy runs it.

        Raises ConfigError when Envoy cannot express the config and EnvoyApplyError when
        Envoy refuses what was sent.
        """
        self.wait_running(self.publish(config, group), warm=True)

    def publish(self, config: Config, group: str) -> Snapshot:
        """Translate `config` for `group` and serve it to this Envoy; returns at once."""
        assert self.xds is not None, "start() first"
        resources = translate(config, group)
        snapshot = _snapshot(resources)
        self._published_at = time.time()
        self.xds.cache.set_snapshot(NODE_GROUP, snapshot)
        self.resources = resources
        return snapshot

    def wait_running(
        self, snapshot: Snapshot, *, warm: bool = True, timeout: float = APPLY_TIMEOUT
    ) -> None:
        """Wait until Envoy ACKed `snapshot` for every type it subscribes to (and, with
        `warm`, no listener or cluster is still warming); EnvoyApplyError on a NACK."""
        assert self.envoy is not None and self.resources is not None
        envoy, ledger, resources = self.envoy, self.ledger, self.resources
        since = self._published_at
        required = [CLUSTER, LISTENER]
        if resources.endpoints:
            required.append(ENDPOINT)
        if resources.routes:
            required.append(ROUTE)

        def synced() -> bool:
            status = ledger.get(envoy.node_id)
            if status is None:
                return False
            for type_url, state in status.types.items():
                nack = state.last_nack
                if nack is not None and nack.at >= since:
                    raise EnvoyApplyError(f"envoy refused {type_url}: {nack.error}")
            return status.connected and status.runs(snapshot.version, required)

        try:
            wait_for(f"{envoy.node_id} to run {snapshot.version}", synced, timeout, 0.002)
            if warm:
                wait_for("listeners and clusters to warm", lambda: self._warm(resources), timeout)
        except TimeoutError as err:
            raise TimeoutError(f"{err}\nenvoy log:\n{envoy.log_text()[-4000:]}") from None

    def _warm(self, resources: Resources) -> bool:
        assert self.envoy is not None
        stats = self.envoy.stats()
        return (
            stats.get("cluster_manager.warming_clusters", 0) == 0
            and stats.get("listener_manager.total_listeners_warming", 0) == 0
            and stats.get("listener_manager.total_listeners_active", -1) == len(resources.listeners)
            # our clusters plus the static one reaching the xDS server
            and stats.get("cluster_manager.active_clusters", -1) == len(resources.clusters) + 1
        )

    def stop(self) -> None:
        """Stop Envoy, then the xDS server; idempotent."""
        try:
            if self.envoy is not None:
                self.envoy.stop()
        finally:
            self.envoy = None
            try:
                if self.xds is not None:
                    self.xds.close()
            finally:
                self.xds = None
                if self.workdir is not None:
                    shutil.rmtree(self.workdir, ignore_errors=True)
                    self.workdir = None


def _snapshot(resources: Resources) -> Snapshot:
    return Snapshot(resources.by_type_url())
