"""HAProxy as a scenario target: the real renderer feeding the real manager."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from controlplane.haproxy.render import render
from controlplane.model import Config, check
from controlplane.proxies.haproxy.manager import HAProxyManager


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

    def start(self) -> None:
        """Prepare the manager; HAProxy itself starts with the first config."""
        self.manager = HAProxyManager(self.workdir, haproxy_bin=self.haproxy_bin)

    def apply(self, config: Config, group: str) -> None:
        """Render `config` for `group` and have HAProxy run it; returns once it does."""
        if self.manager is None:
            raise RuntimeError("start() the target first")
        check(config, "haproxy")
        bundle = render(config, group)
        start = self.manager.apply if self.manager.running else self.manager.start
        result = start(bundle)
        if not result.ok:
            raise HAProxyApplyError(result.error or result.reason)

    def stop(self) -> None:
        """Stop HAProxy (all its processes) and remove a working directory made here."""
        if self.manager is not None:
            self.manager.stop()
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)
