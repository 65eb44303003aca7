"""xDS served by several processes on one port: every core holds its share of the streams.

`XdsWorkers` runs N worker processes (`controlplane.xds.worker`), each an `XdsServer` bound
to the same port with `SO_REUSEPORT` (gRPC sets it by default on Linux), so the kernel spreads
the connections over them. It follows a `SnapshotCache` of the main process, the one the
fleet publishes to and holds back: each change of what a group serves is encoded once (the
resources' serialisations, `worker.Served`) and the same bytes are written to every worker,
which builds a snapshot of the same content-hash versions from them. An Envoy that reconnects
to another worker is therefore sent nothing it already holds.

What the workers' streams do comes back as `StreamCallbacks` calls, made on the main event
loop in the order each worker made them. A worker that exits is started again; the streams it
held are reported disconnected (their Envoys reconnect, to any worker).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import queue
import socket
import subprocess
import sys
import threading
import time
from typing import Any

from controlplane.xds.cache import SnapshotCache
from controlplane.xds.callbacks import StreamCallbacks
from controlplane.xds.server import DEFAULT_GRPC_OPTIONS, XdsTls
from controlplane.xds.worker import REPORTS, Served, Start, encode, read_frame, write_frame

log = logging.getLogger("controlplane.xds")

RESTART_AFTER = 1.0
"""Seconds to wait before starting again a worker that lived less than that."""


class WorkerFailed(OSError):
    """A worker could not start serving; the message says why."""


class _Worker:
    """One worker process, its feed (a queue written by a thread) and its open streams."""

    def __init__(self, index: int, start: Start, initial: list[bytes]) -> None:
        self.index = index
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "controlplane.xds.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        self.streams: collections.Counter[str] = collections.Counter()
        """Node id → streams of that node open on this worker."""
        self.listening: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._feed: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        for frame in (encode(("start", start)), *initial, encode(("serve",))):
            self._feed.put(frame)
        threading.Thread(target=self._write, name=f"xds-feed-{index}", daemon=True).start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def send(self, frame: bytes) -> None:
        self._feed.put(frame)

    def close_feed(self) -> None:
        self._feed.put(None)

    def _write(self) -> None:
        assert self.process.stdin is not None
        try:
            while (frame := self._feed.get()) is not None:
                write_frame(self.process.stdin, frame)
            self.process.stdin.close()
        except (BrokenPipeError, OSError, ValueError):
            pass  # the worker is gone; its reader reports it


class XdsWorkers:
    """N xDS server processes serving the snapshots of `cache` on one port, reporting to
    `callbacks` (on the event loop that called `start`)."""

    def __init__(
        self,
        cache: SnapshotCache,
        callbacks: StreamCallbacks,
        count: int,
        *,
        grpc_options: list[tuple[str, Any]] | None = None,
        tls: XdsTls | None = None,
    ) -> None:
        if count < 1:
            raise ValueError("at least one xDS worker")
        self.cache = cache
        self.callbacks = callbacks
        self.count = count
        self.tls = tls
        self._grpc_options = tuple(
            {
                **dict(DEFAULT_GRPC_OPTIONS),
                **dict(grpc_options or []),
                "grpc.so_reuseport": 1,
            }.items()
        )
        self.port: int | None = None
        self._host = ""
        self._workers: dict[int, _Worker] = {}
        self._sent: dict[str, tuple[str | None, str | None]] = {}
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reserved: socket.socket | None = None
        self._stopping = False
        self._restarts: set[asyncio.Task[None]] = set()
        self.restarted = 0
        """How many times a worker that exited was started again."""
        cache.follow(self._changed)

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Start every worker listening on host:port (0: a free port); returns the port.
        WorkerFailed (every worker stopped) when one cannot listen."""
        self._loop = asyncio.get_running_loop()
        self._host = host
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        # First a plain bind, which fails when anyone listens on the port (also with
        # SO_REUSEPORT: the workers must not share a port with another server). Then a
        # socket bound with SO_REUSEPORT, never listening: it keeps the port this server's
        # while workers come and go, and takes no connection (the kernel spreads them over
        # listening sockets only).
        probe = socket.socket(family, socket.SOCK_STREAM)
        reserved = socket.socket(family, socket.SOCK_STREAM)
        try:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
            port = int(probe.getsockname()[1])
            probe.close()
            reserved.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            reserved.bind((host, port))
        except OSError as exc:
            reserved.close()
            raise WorkerFailed(f"cannot listen on {host}:{port}: {exc.strerror}") from None
        finally:
            probe.close()
        self._reserved, self.port = reserved, port
        try:
            for index in range(self.count):
                self._spawn(index)
            await asyncio.gather(*(w.listening for w in list(self._workers.values())))
        except BaseException:
            await self.stop()
            raise
        log.info(
            "xDS server listening on %s:%d (%s), %d workers (pids %s)",
            host,
            self.port,
            "mutual TLS" if self.tls else "plain text",
            self.count,
            ", ".join(str(p) for p in self.pids()),
        )
        return self.port

    async def stop(self, grace: float | None = None) -> None:
        """End every stream (after `grace` seconds, if given) and stop every worker, killing
        by PID one that has not exited a few seconds after."""
        self._stopping = True
        for task in list(self._restarts):
            task.cancel()
        workers = list(self._workers.values())
        for worker in workers:
            worker.send(encode(("stop", grace or 0.0)))
            worker.close_feed()
        await asyncio.gather(*(asyncio.to_thread(_end, w, (grace or 0.0) + 5) for w in workers))
        self._workers.clear()
        if self._reserved is not None:
            self._reserved.close()
            self._reserved = None

    def pids(self) -> list[int]:
        """The PIDs of the workers, by index."""
        return [self._workers[i].pid for i in sorted(self._workers)]

    def placement(self) -> dict[str, list[int]]:
        """Node id → the PIDs of the workers holding its open streams."""
        found: dict[str, list[int]] = {}
        for worker in self._workers.values():
            for node_id, streams in worker.streams.items():
                if streams > 0:
                    found.setdefault(node_id, []).append(worker.pid)
        return found

    @property
    def listening(self) -> int:
        """How many workers listen now."""
        return sum(
            1
            for w in self._workers.values()
            if w.listening.done() and not w.listening.exception() and w.process.poll() is None
        )

    @property
    def stream_count(self) -> int:
        """Streams currently open, over all workers."""
        return sum(sum(w.streams.values()) for w in self._workers.values())

    # --- the feed: what the main cache serves, to every worker ---

    def _versions(self, group: str) -> tuple[str | None, str | None]:
        served, held = self.cache.get(group), self.cache.held(group)
        return (served.version if served else None, held.version if held else None)

    def _frame(self, group: str) -> bytes:
        served, held = self.cache.get(group), self.cache.held(group)
        self._sent[group] = (served.version if served else None, held.version if held else None)
        return encode(("group", group, Served.of(served), Served.of(held)))

    def _changed(self, group: str) -> None:
        with self._lock:
            if self._sent.get(group) == self._versions(group):
                return
            frame = self._frame(group)
            for worker in self._workers.values():
                worker.send(frame)

    def _spawn(self, index: int) -> None:
        start = Start(
            self._host, self.port or 0, self.tls, self._grpc_options, f"xds-worker-{index}"
        )
        with self._lock:
            initial = [self._frame(group) for group in self.cache.groups()]
            worker = _Worker(index, start, initial)
            self._workers[index] = worker
        threading.Thread(
            target=self._read, args=(worker,), name=f"xds-reports-{index}", daemon=True
        ).start()

    # --- the reports: from each worker, on the main loop ---

    def _read(self, worker: _Worker) -> None:
        assert worker.process.stdout is not None and self._loop is not None
        loop = self._loop
        with contextlib.suppress(OSError, EOFError, ValueError):
            while (message := read_frame(worker.process.stdout)) is not None:
                loop.call_soon_threadsafe(self._receive, worker, message)
        worker.process.wait()
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody to tell
            loop.call_soon_threadsafe(self._lost, worker)

    def _receive(self, worker: _Worker, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "reports":
            for name, args in message[1]:
                if name not in REPORTS:
                    continue
                if name == "connected":
                    worker.streams[args[0]] += 1
                elif name == "disconnected":
                    worker.streams[args[0]] -= 1
                    if worker.streams[args[0]] <= 0:
                        del worker.streams[args[0]]
                getattr(self.callbacks, name)(*args)
        elif kind == "listening" and not worker.listening.done():
            worker.listening.set_result(int(message[1]))
        elif kind == "failed" and not worker.listening.done():
            worker.listening.set_exception(WorkerFailed(f"xDS worker: {message[1]}"))

    def _lost(self, worker: _Worker) -> None:
        for node_id, streams in worker.streams.items():
            for _ in range(streams):
                self.callbacks.disconnected(node_id)
        worker.streams.clear()
        if not worker.listening.done():
            worker.listening.set_exception(
                WorkerFailed(f"xDS worker {worker.pid} exited ({worker.process.returncode})")
            )
        if self._stopping or self._workers.get(worker.index) is not worker:
            return
        log.warning(
            "xDS worker %d (pid %d) exited with %s; its Envoys reconnect to the others; "
            "starting it again",
            worker.index,
            worker.pid,
            worker.process.returncode,
        )
        delay = max(0.0, RESTART_AFTER - (time.monotonic() - worker.started))
        task = asyncio.get_running_loop().create_task(self._restart(worker.index, delay))
        self._restarts.add(task)
        task.add_done_callback(self._restarts.discard)

    async def _restart(self, index: int, delay: float) -> None:
        await asyncio.sleep(delay)
        if self._stopping:
            return
        self._spawn(index)
        self.restarted += 1
        try:
            await self._workers[index].listening
        except WorkerFailed as exc:
            log.error("%s", exc)  # its exit starts it again


def _end(worker: _Worker, timeout: float) -> None:
    try:
        worker.process.wait(timeout)
    except subprocess.TimeoutExpired:
        worker.process.kill()
        worker.process.wait()
