"""Our real xDS server running in a background event-loop thread, for synchronous tests."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, TypeVar

from controlplane.fleet import Ledger, XdsReports
from controlplane.xds.cache import SnapshotCache
from controlplane.xds.server import XdsServer

T = TypeVar("T")


class XdsServerThread:
    """An event loop in a thread hosting an `XdsServer`, reporting to `ledger` as `serve` does;
    the cache may be set from any thread."""

    def __init__(self, cache: SnapshotCache | None = None, ledger: Ledger | None = None) -> None:
        self.cache = cache or SnapshotCache()
        self.ledger = ledger or Ledger()
        self.server: XdsServer | None = None
        self.port: int | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="xds", daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        """Run a coroutine in the server's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def start(self, port: int = 0) -> int:
        """Start serving `self.cache` (on `port`, 0: any); returns the bound port."""
        self.server = XdsServer(self.cache, XdsReports(self.ledger))
        self.port = self.run(self.server.start("127.0.0.1", port))
        return self.port

    def stop_server(self) -> None:
        """Stop the gRPC server (ending every stream); the loop stays up for a restart."""
        if self.server is not None:
            self.run(self.server.stop(None))
            self.server = None

    def restart(self, cache: SnapshotCache, ledger: Ledger) -> int:
        """Stop, then serve a new cache and ledger on the same port."""
        port = self.port or 0
        self.stop_server()
        self.cache, self.ledger = cache, ledger
        return self.start(port)

    def close(self) -> None:
        """Stop the server and the loop thread."""
        try:
            self.stop_server()
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            self._loop.close()

    def __enter__(self) -> XdsServerThread:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
