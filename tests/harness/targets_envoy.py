"""Envoy as a scenario target: the product's Envoy plane and xDS server feeding a real Envoy.

`EnvoyTarget` runs our xDS server in-process (its own event-loop thread) and one Envoy whose
node belongs to a fixed node group; `apply` compiles the config's part for the requested
group with the product's `EnvoyPlane`, publishes it under that node group as a new revision,
and returns once the product's status (`LedgerStatus`) says the Envoy runs that revision and
Envoy's admin shows nothing warming.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from pathlib import Path
from typing import Literal

from controlplane.envoy import Resources
from controlplane.fleet import EnvoyPlane, Ledger, LedgerStatus, RevisionIndex
from controlplane.model import DEFAULT_GROUP, Config

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
        self.index = RevisionIndex()
        self._revisions = itertools.count(1)
        self._plane: EnvoyPlane | None = None

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
            self._plane = EnvoyPlane(self.xds.cache)
            self.publish(Config(), DEFAULT_GROUP)  # nothing yet
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

    def publish(self, config: Config, group: str) -> int:
        """Compile `config` for `group` and serve it to this Envoy as a new revision; returns
        the revision at once."""
        assert self._plane is not None, "start() first"
        revision = next(self._revisions)
        build = self._plane.compile(config, group)
        for version, parts in build.versions.items():
            self.index.record(revision, "envoy", NODE_GROUP, version, parts)
        self.index.complete(revision)
        self._plane.publish(revision, {NODE_GROUP: build}, frozenset())
        self.resources = build.resources
        return revision

    def wait_running(
        self, revision: int, *, warm: bool = True, timeout: float = APPLY_TIMEOUT
    ) -> None:
        """Wait until the product's status says this Envoy runs `revision` (and, with `warm`,
        no listener or cluster is still warming); EnvoyApplyError when it refused it."""
        assert self.envoy is not None and self.xds is not None and self.resources is not None
        envoy, resources = self.envoy, self.resources
        status = LedgerStatus(self.ledger, self.index)
        try:
            wait_for(f"{envoy.node_id} to connect", lambda: self.ledger.get(envoy.node_id), timeout)
            result = self.xds.run(status.wait(revision, timeout), timeout + 5)
            mine = [p for p in result.proxies if p.id == envoy.node_id]
            refused = [p for p in result.refused if p.id == envoy.node_id]
            if refused and refused[0].last_nack is not None:
                raise EnvoyApplyError(
                    f"envoy refused revision {revision}: {refused[0].last_nack.error}"
                )
            if not mine or not mine[0].runs(revision):
                raise TimeoutError(f"{envoy.node_id} does not run revision {revision}: {result}")
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
