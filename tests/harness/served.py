"""`controlplane serve` in a test's loop thread: started, stopped and started again on the same
API and xDS ports, with an API client that follows it."""

from __future__ import annotations

from dataclasses import replace

import httpx

from controlplane.proxies.haproxy.manager import HAProxyManager
from controlplane.serve import Running, ServeOptions, start_server

from .loop_thread import LoopThread


class ServedServer:
    """One server, restartable; `api` is a client of its API carrying `token`."""

    def __init__(self, thread: LoopThread, options: ServeOptions, token: str) -> None:
        self.thread = thread
        self.options = options
        self._running: Running | None = None
        self.api = httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=30)

    def start(self) -> None:
        """Start the server; later starts reuse the first one's API and xDS ports."""
        running = self.thread.run(start_server(self.options))
        self._running = running
        self.options = replace(
            self.options,
            api=running.api.url.removeprefix("http://"),
            xds=f"127.0.0.1:{running.xds.port}",
        )
        self.api.base_url = httpx.URL(running.api.url)

    def stop(self, keep_proxies: bool = False) -> None:
        """Stop the server; its local HAProxies keep serving with `keep_proxies`."""
        running, self._running = self._running, None
        if running is not None:
            self.thread.run(running.stop(keep_proxies))

    @property
    def started(self) -> bool:
        return self._running is not None

    @property
    def running(self) -> Running:
        assert self._running is not None, "the server is stopped"
        return self._running

    @property
    def url(self) -> str:
        return self.running.api.url

    @property
    def local(self) -> HAProxyManager:
        """The manager of the first local HAProxy."""
        return self.running.local[0].manager
