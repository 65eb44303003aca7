"""HAProxy as a scenario target: the product's HAProxy plane feeding one managed HAProxy.

`apply` compiles the config's part for the requested group with the product's `HAProxyPlane`,
delivers it as a new revision to the one local HAProxy it drives (the real manager: `haproxy
-c`, runtime API or hitless reload), and reads the outcome through the product's status
(`LedgerStatus`), as `serve` does.
"""

from __future__ import annotations

import asyncio
import itertools
import shutil
import tempfile
from pathlib import Path

from controlplane.fleet import (
    HAProxyPlane,
    Ledger,
    LedgerStatus,
    LocalHAProxy,
    RevisionIndex,
    manager_reports,
)
from controlplane.model import Config
from controlplane.proxies.haproxy.manager import HAProxyManager

INSTANCE = "scenario-haproxy"
NODE_GROUP = "scenario"
"""The node group under which the target records its HAProxy, whatever group is applied."""


class HAProxyApplyError(Exception):
    """HAProxy refused a configuration; the message is HAProxy's own."""


class HAProxyTarget:
    """One HAProxy (master-worker) kept on the configs it is given."""

    name = "haproxy"

    def __init__(self, workdir: Path | None = None, haproxy_bin: str = "haproxy") -> None:
        self._own_dir = workdir is None
        # Short paths: the manager's unix sockets live in the working directory.
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="hap-", dir="/tmp"))
        self.haproxy_bin = haproxy_bin
        self.manager: HAProxyManager | None = None
        self.ledger = Ledger()
        self.index = RevisionIndex()
        self._revisions = itertools.count(1)
        self._plane: HAProxyPlane | None = None

    def start(self) -> None:
        """Prepare the manager; HAProxy itself starts with the first config."""
        on_apply, on_health = manager_reports(self.ledger, INSTANCE, NODE_GROUP)
        self.manager = HAProxyManager(
            self.workdir,
            haproxy_bin=self.haproxy_bin,
            instance_id=INSTANCE,
            on_apply=on_apply,
            on_health=on_health,
        )
        self._plane = HAProxyPlane(local=[LocalHAProxy(self.manager, NODE_GROUP)])

    def apply(self, config: Config, group: str) -> None:
        """Compile `config` for `group` and have HAProxy run it; returns once it does
        (HAProxyApplyError with HAProxy's message when it refused it)."""
        if self._plane is None:
            raise RuntimeError("start() the target first")
        revision = next(self._revisions)
        build = self._plane.compile(config, group)
        for version, parts in build.versions.items():
            self.index.record(revision, "haproxy", NODE_GROUP, version, parts)
        self.index.complete(revision)
        asyncio.run(self._plane.deliver(revision, {NODE_GROUP: build}))
        result = LedgerStatus(self.ledger, self.index).evaluate(revision)
        for proxy in result.refused:
            error = proxy.last_nack.error if proxy.last_nack else "refused"
            raise HAProxyApplyError(error)
        if not result.converged or not result.proxies:
            raise HAProxyApplyError(f"HAProxy does not run revision {revision}: {result}")

    def stop(self) -> None:
        """Stop HAProxy (all its processes) and remove a working directory made here."""
        if self.manager is not None:
            self.manager.stop()
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)
