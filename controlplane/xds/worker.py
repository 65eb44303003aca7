"""One xDS worker process: an `XdsServer` on a port it shares with the other workers, fed
snapshots over its standard input, reporting what its streams do on its standard output.

`XdsWorkers` (`controlplane.xds.workers`) starts it as `python -m controlplane.xds.worker`
and speaks to it in frames (`write_frame`, `read_frame`: a 4-byte big-endian length, then a
pickled tuple; both ends are this package, started by the same user):

    in:  ("start", Start)                        first, once
         ("group", group, served, held)          what a group serves: a `Served` or None each
         ("serve",)                              the initial state is in: start listening
         ("stop", grace)                         end every stream (after `grace` s) and exit
    out: ("listening", port) | ("failed", reason)
         ("reports", [(callback, args), ...])    `StreamCallbacks` calls, in the order made

The end of its input (the main process gone) stops it as ("stop", 0) does; signals other
than SIGKILL do not. Its log goes to its standard error, which it shares with the main
process.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pickle
import queue
import signal
import struct
import sys
import threading
from dataclasses import dataclass
from typing import IO, Any

from controlplane.xds.cache import Snapshot, SnapshotCache
from controlplane.xds.server import XdsServer, XdsTls

log = logging.getLogger("controlplane.xds.worker")

_LENGTH = struct.Struct(">I")

REPORTS = frozenset(
    {
        "connected",
        "disconnected",
        "described",
        "requested",
        "subscribed",
        "sent",
        "acked",
        "nacked",
        "synced",
    }
)
"""The `StreamCallbacks` a worker reports: the only ones the main process calls for it."""


@dataclass(frozen=True)
class Start:
    """How a worker serves: where, with which TLS (None: plain text) and gRPC options."""

    host: str
    port: int
    tls: XdsTls | None
    grpc_options: tuple[tuple[str, Any], ...]
    name: str
    """What its log lines say it is (`xds-worker-<n>`)."""


@dataclass(frozen=True)
class Served:
    """A group snapshot as it crosses the process boundary: its version and its resources'
    serialisations (`Snapshot.payloads`), so the worker serves the very same versions."""

    version: str
    payloads: dict[str, dict[str, bytes]]

    @classmethod
    def of(cls, snapshot: Snapshot | None) -> Served | None:
        return None if snapshot is None else cls(snapshot.version, snapshot.payloads())

    def snapshot(self) -> Snapshot:
        return Snapshot.from_payloads(self.payloads, self.version)


def encode(message: tuple[Any, ...]) -> bytes:
    """One frame carrying `message`."""
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _LENGTH.pack(len(data)) + data


def write_frame(out: IO[bytes], frame: bytes) -> None:
    """Write an encoded frame and flush it."""
    out.write(frame)
    out.flush()


def read_frame(source: IO[bytes]) -> tuple[Any, ...] | None:
    """The next message, None at the end of the input."""
    head = source.read(_LENGTH.size)
    if len(head) < _LENGTH.size:
        return None
    (length,) = _LENGTH.unpack(head)
    data = source.read(length)
    if len(data) < length:
        return None
    message = pickle.loads(data)
    assert isinstance(message, tuple)
    return message


class PipeReports:
    """`StreamCallbacks` that send every call to the main process: the calls made in one turn
    of the event loop go out together, written by a thread of their own so that a slow
    reader never stalls a stream."""

    def __init__(self, loop: asyncio.AbstractEventLoop, out: IO[bytes]) -> None:
        self._loop = loop
        self._out = out
        self._batch: list[tuple[str, tuple[str, ...]]] = []
        self._frames: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._writer = threading.Thread(target=self._write, name="xds-reports", daemon=True)
        self._writer.start()

    def send(self, message: tuple[Any, ...]) -> None:
        """Send a message of the protocol (after the reports made so far)."""
        self._flush()
        self._frames.put(encode(message))

    def close(self) -> None:
        """Send what is pending and wait until it is written."""
        self._flush()
        self._frames.put(None)
        self._writer.join(timeout=10)

    def _report(self, name: str, *args: str) -> None:
        if not self._batch:
            self._loop.call_soon(self._flush)
        self._batch.append((name, args))

    def _flush(self) -> None:
        if self._batch:
            batch, self._batch = self._batch, []
            self._frames.put(encode(("reports", batch)))

    def _write(self) -> None:
        try:
            while (frame := self._frames.get()) is not None:
                write_frame(self._out, frame)
        except (BrokenPipeError, OSError):
            pass  # the main process is gone; the input's end stops the worker

    def connected(self, node_id: str, group: str) -> None:
        self._report("connected", node_id, group)

    def disconnected(self, node_id: str) -> None:
        self._report("disconnected", node_id)

    def described(self, node_id: str, admin: str) -> None:
        self._report("described", node_id, admin)

    def requested(self, node_id: str) -> None:
        self._report("requested", node_id)

    def subscribed(self, node_id: str, type_url: str) -> None:
        self._report("subscribed", node_id, type_url)

    def sent(self, node_id: str, type_url: str, version: str, snapshot: str) -> None:
        self._report("sent", node_id, type_url, version, snapshot)

    def acked(self, node_id: str, type_url: str, version: str) -> None:
        self._report("acked", node_id, type_url, version)

    def nacked(self, node_id: str, type_url: str, version: str, error: str) -> None:
        self._report("nacked", node_id, type_url, version, error)

    def synced(self, node_id: str, type_url: str, snapshot: str) -> None:
        self._report("synced", node_id, type_url, snapshot)


def built(served: Served | None, current: Snapshot | None) -> Snapshot | None:
    """The snapshot `served` describes: `current` when it is that version already."""
    if served is None:
        return None
    if current is not None and current.version == served.version:
        return current
    return served.snapshot()


def apply(
    cache: SnapshotCache, group: str, snapshot: Snapshot | None, held: Snapshot | None
) -> None:
    """Make `cache` serve for `group` what the main process's cache serves."""
    if snapshot is None:
        cache.clear(group)
    else:
        cache.set_snapshot(group, snapshot)
    cache.hold_back(group, held)


async def run(inbox: IO[bytes], out: IO[bytes]) -> None:
    """Serve as the messages on `inbox` say until told to stop (or the input ends)."""
    loop = asyncio.get_running_loop()
    first = read_frame(inbox)
    if first is None or first[0] != "start":
        return
    start: Start = first[1]
    for handler in logging.getLogger().handlers:
        handler.setFormatter(
            logging.Formatter(f"%(asctime)s {start.name}[%(process)d] %(message)s")
        )
    reports = PipeReports(loop, out)
    cache = SnapshotCache()
    serving = asyncio.Event()
    stopping: asyncio.Future[Any] = loop.create_future()

    def stop(grace: float) -> None:
        if not stopping.done():
            stopping.set_result(grace)

    def read() -> None:
        grace = 0.0
        while (message := read_frame(inbox)) is not None:
            if message[0] == "group":
                # Built here, set on the loop: its streams are woken there without a thread
                # handoff each.
                _, group, served, held = message
                snapshot = built(served, cache.get(group))
                holding = built(held, cache.held(group))
                loop.call_soon_threadsafe(apply, cache, group, snapshot, holding)
            elif message[0] == "serve":
                loop.call_soon_threadsafe(serving.set)
            elif message[0] == "stop":
                grace = float(message[1])
                break
        loop.call_soon_threadsafe(stop, grace)

    threading.Thread(target=read, name="xds-feed", daemon=True).start()
    server = XdsServer(cache, reports, grpc_options=list(start.grpc_options), tls=start.tls)
    waiting: asyncio.Future[Any] = asyncio.ensure_future(serving.wait())
    await asyncio.wait([waiting, stopping], return_when=asyncio.FIRST_COMPLETED)
    if stopping.done():
        waiting.cancel()
        reports.close()
        return
    try:
        port = await server.start(start.host, start.port)
    except Exception as exc:  # the main process says why, and stops
        reports.send(("failed", str(exc)))
        reports.close()
        return
    reports.send(("listening", port))
    log.info("%s (pid %d) serves xDS on port %d", start.name, os.getpid(), port)
    grace = await stopping
    await server.stop(grace)
    reports.close()


def main() -> None:
    """The worker's entry point: frames in on fd 0, out on fd 1; anything printed goes to
    the standard error instead of into the protocol. SIGINT and SIGTERM are ignored (a
    Ctrl-C or a service manager signals the whole process group): a worker stops when the
    main process says so or is gone."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s"
    )
    inbox = os.fdopen(os.dup(0), "rb")
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    asyncio.run(run(inbox, out))


if __name__ == "__main__":
    main()
