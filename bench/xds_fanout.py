"""xDS fan-out: many simulated ADS clients, one config change, how fast does everyone ACK.

The config: 1,000 EDS clusters with their endpoints, one listener, and 10,000 routes (100
virtual hosts of 100 routes). N simulated clients (many streams per gRPC channel) subscribe
to everything as an Envoy would over ADS and ACK every response. Reported per N: the time
until every client runs the config (initial sync), the time from a one-cluster change until
each client ACKed it (first / p50 / last, from the server's ledger), and the server's RSS.

The server and the clients run in separate processes so one GIL does not serialise both.
`--baseline` runs the same load against the server in its per-stream-serialising mode;
`--xds-workers 1 2` runs it on one process and on two worker processes (`XdsWorkers`), its
CPU (from /proc) and RSS then summed over the server and its workers; *gc ms* counts the
main process only.
Each run makes `--changes` changes, a row each; *gc ms* is the server's CPU time in garbage
collection during the change and *full gcs* its full collections. `--keep-collector` runs the
server without freezing long-lived objects after each snapshot (`xds/collector.py`).

    .venv/bin/python bench/xds_fanout.py --clients 100 1000 5000 --baseline --changes 1
    .venv/bin/python bench/xds_fanout.py --clients 1000 --client-procs 2 --keep-collector

`--serve` runs the whole product instead of the bare xDS server: `controlplane serve` (REST
API, SQLite store, ledger, status; `--xds-workers N` passed on when given, several values
making a run each, side by side; CPU and RSS are summed over serve and its workers) seeded with the
same shape of config in the model (1,000 clusters of two endpoints, 10,000 routes), and each
change is a REST write (`PATCH` of one cluster's `connect_timeout`) followed at once by a
`GET /v1/status/wait` for its revision, open while the change goes out. Times are then from
just before the write: when it was answered, when the wait answered (the server saw every
proxy run it), and each client's last ACK (from the clients' clocks); *fan-out* is the last
ACK minus the first. CPU is read from /proc for `serve` and every process it started.

    .venv/bin/python bench/xds_fanout.py --serve --clients 1000 --client-procs 2 --changes 10
    .venv/bin/python bench/xds_fanout.py --serve --clients 1000 10000 --xds-workers 1 2 \
        --client-procs 2 --streams-per-channel 20 --changes 5
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import multiprocessing as mp
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import httpx

# The test harness builds the resources; make the repository importable in every process.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

GROUP = "bench"
CLUSTERS = 1000
VHOSTS = 100
ROUTES_PER_VHOST = 100


def cluster_names() -> list[str]:
    return [f"cluster-{i:04d}" for i in range(CLUSTERS)]


def build_snapshot(changed: int | None = None) -> Any:
    """The bench config; `changed` alters cluster 0's connect timeout (a one-cluster change)."""
    from envoy.config.route.v3 import route_components_pb2, route_pb2

    from controlplane.xds.cache import Snapshot
    from tests.harness.xds_resources import eds_cluster, http_listener, load_assignment

    messages: list[Any] = [http_listener("http", 10000, "routes")]
    for i, name in enumerate(cluster_names()):
        timeout_ms = 1000 + (changed or 0) if i == 0 else 1000
        messages.append(eds_cluster(name, timeout_ms))
        messages.append(
            load_assignment(name, [("127.0.0.1", 20000 + i % 1000), ("127.0.0.1", 30000 + i)])
        )
    vhosts = []
    for v in range(VHOSTS):
        routes = [
            route_components_pb2.Route(
                match=route_components_pb2.RouteMatch(prefix=f"/svc{v}/r{r}"),
                route=route_components_pb2.RouteAction(
                    cluster=f"cluster-{(v * ROUTES_PER_VHOST + r) % CLUSTERS:04d}"
                ),
            )
            for r in range(ROUTES_PER_VHOST)
        ]
        vhosts.append(
            route_components_pb2.VirtualHost(name=f"vh{v}", domains=[f"svc{v}.test"], routes=routes)
        )
    messages.append(route_pb2.RouteConfiguration(name="routes", virtual_hosts=vhosts))
    return Snapshot.from_messages(messages)


def rss_mb() -> tuple[float, float]:
    """(current, peak) resident set size of this process in MiB."""
    fields: dict[str, float] = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0]) / 1024
    return fields["VmRSS"], fields["VmHWM"]


# --- server process ---


class CollectorClock:
    """The CPU time this process spent in cyclic garbage collection (in the thread that ran
    it: wall time would count being descheduled on a loaded machine), and its full ones."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.full = 0
        self._began = 0.0
        gc.callbacks.append(self._on)

    def _on(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._began = time.thread_time()
        else:
            self.seconds += time.thread_time() - self._began
            self.full += info["generation"] == 2


def server_main(
    conn: Connection, naive: bool, delta: bool, keep_collector: bool, workers: int = 1
) -> None:
    if keep_collector:
        from controlplane.xds import cache

        cache.freeze_long_lived = lambda: None
    asyncio.run(_server(conn, naive, delta, workers))


async def _server(conn: Connection, naive: bool, delta: bool, workers: int) -> None:
    from controlplane.fleet import Ledger, XdsReports
    from controlplane.xds import types
    from controlplane.xds.cache import SnapshotCache
    from controlplane.xds.server import XdsServer
    from controlplane.xds.workers import XdsWorkers

    collector = CollectorClock()

    cache, ledger = SnapshotCache(), Ledger()
    v1 = build_snapshot()
    cache.set_snapshot(GROUP, v1)
    server: Any = (
        XdsWorkers(cache, XdsReports(ledger), workers)
        if workers > 1
        else XdsServer(cache, XdsReports(ledger), serialise_per_stream=naive)
    )
    pids = [os.getpid()]
    port = await server.start("127.0.0.1", 0)
    if workers > 1:
        pids += server.pids()
    conn.send(port)
    loop = asyncio.get_running_loop()
    current = v1
    changes = 0
    while True:
        command, arg = await loop.run_in_executor(None, conn.recv)
        if command == "wait_synced":
            expected, timeout = arg
            done = await _wait(ledger, expected, current.version, list(types.PUSH_ORDER), timeout)
            conn.send({"at": time.time(), "ok": done, "connected": ledger.count(GROUP)})
        elif command == "change":
            expected, timeout = arg
            changes += 1
            nxt = build_snapshot(changed=changes)
            cpu0, t0 = cpu_seconds(pids), time.time()
            gc0, full0 = collector.seconds, collector.full
            cache.set_snapshot(GROUP, nxt)
            current = nxt
            done = await _wait(ledger, expected, nxt.version, [types.CLUSTER], timeout)
            cpu = cpu_seconds(pids) - cpu0
            acks = [
                s.acked_at - t0
                for p in ledger.proxies(GROUP)
                if (s := p.types.get(types.CLUSTER)) is not None
                and s.acked_at is not None
                and s.version_acked == nxt.type_version(types.CLUSTER)
            ]
            sends = [
                s.sent_at - t0
                for p in ledger.proxies(GROUP)
                if (s := p.types.get(types.CLUSTER)) is not None
                and s.sent_at is not None
                and s.version_sent == nxt.type_version(types.CLUSTER)
            ]
            conn.send(
                {
                    "ok": done,
                    "acks": acks,
                    "cpu": cpu,
                    "pushed": max(sends, default=0),
                    "gc": collector.seconds - gc0,
                    "full": collector.full - full0,
                }
            )
        elif command == "rss":
            conn.send(rss_mb() if workers == 1 else (rss_of(pids), rss_of(pids)))
        elif command == "stop":
            await server.stop(None)
            conn.send("stopped")
            return


async def _wait(ledger: Any, expected: int, version: str, kinds: list[str], timeout: float) -> bool:
    start = time.monotonic()
    report = start + 10
    while time.monotonic() < start + timeout:
        if ledger.count(GROUP) >= expected and ledger.group_runs(GROUP, version, kinds):
            return True
        if time.monotonic() > report:
            report += 10
            lagging = ledger.lagging(GROUP, version, kinds)
            print(
                f"  ... {time.monotonic() - start:.0f}s: {ledger.count(GROUP)} connected, "
                f"{len(lagging)} not there yet",
                file=sys.stderr,
                flush=True,
            )
            if lagging:
                p = ledger.get(lagging[0])
                print(f"  e.g. {lagging[0]}: {p.types if p else None}", file=sys.stderr, flush=True)
        await asyncio.sleep(0.05)
    return False


# --- client processes ---


@dataclass
class ClientStats:
    streams: int
    errors: int
    responses: int


@dataclass(frozen=True)
class Subscription:
    """Who the simulated clients say they are and what they subscribe to by name."""

    group: str = GROUP
    endpoints: tuple[str, ...] = ()
    routes: tuple[str, ...] = ("routes",)


def client_main(
    conn: Connection,
    port: int,
    first: int,
    count: int,
    per_channel: int,
    delta: bool,
    wave: int,
    subscription: Subscription,
) -> None:
    stats = asyncio.run(_clients(conn, port, first, count, per_channel, delta, wave, subscription))
    conn.send(stats)


async def _clients(
    conn: Connection,
    port: int,
    first: int,
    count: int,
    per_channel: int,
    delta: bool,
    wave_size: int,
    subscription: Subscription,
) -> ClientStats:
    import grpc
    from envoy.service.discovery.v3 import discovery_pb2

    from controlplane.xds import types
    from controlplane.xds.wire import field, text_field

    subscriptions = {
        types.CLUSTER: [],
        types.ENDPOINT: list(subscription.endpoints or cluster_names()),
        types.LISTENER: [],
        types.ROUTE: list(subscription.routes),
    }
    # Requests are assembled from bytes: the clients must stay cheap to measure the server.
    if delta:
        method = "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources"
        ack_prefix = {t: text_field(2, t) for t in subscriptions}
        first_request = {
            t: text_field(2, t) + b"".join(field(3, n.encode()) for n in subscriptions[t])
            for t in subscriptions
        }
        parse = discovery_pb2.DeltaDiscoveryResponse.FromString
        nonce_field = 6
    else:
        method = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"
        ack_prefix = {
            t: text_field(4, t) + b"".join(field(3, n.encode()) for n in subscriptions[t])
            for t in subscriptions
        }
        first_request = ack_prefix
        parse = discovery_pb2.DiscoveryResponse.FromString
        nonce_field = 5
    errors = 0
    responses = 0
    last_ack: dict[int, float] = {}

    def node(i: int) -> bytes:
        node_msg = field(1, f"client-{i}".encode()) + field(2, subscription.group.encode())
        return field(2 if not delta else 1, node_msg)

    async def one(channel: grpc.aio.Channel, i: int, synced: asyncio.Event) -> None:
        nonlocal errors, responses
        call = channel.stream_stream(
            method, request_serializer=lambda b: b, response_deserializer=lambda b: b
        )()
        seen: set[str] = set()
        try:
            for n, t in enumerate(subscriptions):
                await call.write((node(i) if n == 0 else b"") + first_request[t])
            while True:
                raw = await call.read()
                if raw is grpc.aio.EOF:
                    return
                resp = parse(raw)
                responses += 1
                if not synced.is_set():
                    seen.add(resp.type_url)
                    if len(seen) == len(subscriptions):
                        synced.set()
                ack = ack_prefix[resp.type_url] + text_field(nonce_field, resp.nonce)
                if not delta:
                    ack += text_field(1, resp.version_info)
                last_ack[i] = time.time()  # when it is sent (the write may resume us late)
                await call.write(ack)
        except asyncio.CancelledError:
            raise
        except grpc.aio.AioRpcError as err:
            if err.code() != grpc.StatusCode.CANCELLED:
                errors += 1
        finally:
            call.cancel()

    channels = []
    tasks = []
    wave: list[asyncio.Event] = []
    for start in range(first, first + count, per_channel):
        channel = grpc.aio.insecure_channel(
            f"127.0.0.1:{port}",
            options=[
                ("grpc.use_local_subchannel_pool", 1),
                ("grpc.max_receive_message_length", 64 << 20),
            ],
        )
        channels.append(channel)
        for i in range(start, min(start + per_channel, first + count)):
            synced = asyncio.Event()
            wave.append(synced)
            tasks.append(asyncio.create_task(one(channel, i, synced)))
            if wave_size and len(wave) >= wave_size:
                await _settle(wave)
    stuck = await _settle(wave)
    if stuck:
        print(f"  {stuck} streams of a wave never synced", file=sys.stderr, flush=True)
    loop = asyncio.get_running_loop()
    while (command := await loop.run_in_executor(None, conn.recv)) != "stop":
        if command == "cpu":
            conn.send(time.process_time())
        else:  # ("acks", since): each stream's last ACK written since then
            conn.send([at for at in last_ack.values() if at >= command[1]])
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for channel in channels:
        await channel.close()
    return ClientStats(count, errors, responses)


async def _settle(wave: list[asyncio.Event], timeout: float = 120.0) -> int:
    """Wait for a wave of streams to receive everything; how many did not (then forgotten)."""
    try:
        async with asyncio.timeout(timeout):
            await asyncio.gather(*(e.wait() for e in wave))
        stuck = 0
    except TimeoutError:
        stuck = sum(1 for e in wave if not e.is_set())
    wave.clear()
    return stuck


# --- driver ---


def _clients_cpu(clients: list[tuple[Any, Connection]]) -> float:
    total = 0.0
    for _, c in clients:
        c.send("cpu")
        total += c.recv()
    return total


def run_one(
    n: int,
    naive: bool,
    delta: bool,
    per_channel: int,
    procs: int,
    wave: int,
    changes: int = 1,
    keep_collector: bool = False,
    workers: int = 1,
) -> list[dict[str, Any]]:
    """One server, `n` clients, `changes` one-cluster changes: a row per change."""
    ctx = mp.get_context("spawn")
    server_conn, server_end = ctx.Pipe()
    server = ctx.Process(
        target=server_main, args=(server_end, naive, delta, keep_collector, workers)
    )
    server.start()
    clients: list[tuple[Any, Connection]] = []
    try:
        port = server_conn.recv()
        share = -(-n // procs)
        t_start = time.time()
        for k in range(procs):
            first, count = k * share, min(share, n - k * share)
            if count <= 0:
                break
            mine, theirs = ctx.Pipe()
            p = ctx.Process(
                target=client_main,
                args=(theirs, port, first, count, per_channel, delta, wave, Subscription()),
            )
            p.start()
            clients.append((p, mine))
        server_conn.send(("wait_synced", (n, 600.0)))
        synced = server_conn.recv()
        server_conn.send(("rss", None))
        rss_synced = server_conn.recv()
        rows = []
        for number in range(1, changes + 1):
            load = os.getloadavg()[0]
            client_cpu = _clients_cpu(clients)
            server_conn.send(("change", (n, 120.0)))
            change = server_conn.recv()
            client_cpu = _clients_cpu(clients) - client_cpu
            server_conn.send(("rss", None))
            rss_after = server_conn.recv()
            acks = sorted(change["acks"])
            rows.append(
                {
                    "n": n,
                    "mode": ("naive " if naive else "")
                    + ("delta" if delta else "sotw")
                    + (f" w{workers}" if workers > 1 else ""),
                    "change": number,
                    "synced": synced["ok"],
                    "sync_s": synced["at"] - t_start,
                    "changed_ok": change["ok"],
                    "acked": len(acks),
                    "first_ms": acks[0] * 1000 if acks else float("nan"),
                    "p50_ms": statistics.median(acks) * 1000 if acks else float("nan"),
                    "last_ms": acks[-1] * 1000 if acks else float("nan"),
                    "cpu_ms": change["cpu"] * 1000,
                    "us_per_stream": change["cpu"] / n * 1e6,
                    "gc_ms": change["gc"] * 1000,
                    "full_gcs": change["full"],
                    "pushed_ms": change["pushed"] * 1000,
                    "client_cpu_ms": client_cpu * 1000,
                    "rss_mb": rss_after[0],
                    "peak_mb": max(rss_synced[1], rss_after[1]),
                    "errors": 0,
                    "load": load,
                }
            )
        stats: list[ClientStats] = []
        for _, c in clients:
            c.send("stop")
        for _, c in clients:
            stats.append(c.recv())
        for row in rows:
            row["errors"] = sum(s.errors for s in stats)
        return rows
    finally:
        if server.is_alive():
            try:
                server_conn.send(("stop", None))
                server_conn.recv()
            except (BrokenPipeError, EOFError):
                pass
        server.join(timeout=30)
        if server.is_alive():
            server.kill()
        for p, _ in clients:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()


# --- the whole product: controlplane serve ---


def serve_config() -> dict[str, Any]:
    """The bench config in the model: 1,000 clusters of two endpoints, one listener with
    100 virtual hosts of 100 routes."""
    clusters = [
        {
            "name": name,
            "endpoints": [
                {"address": f"127.0.0.1:{20000 + i % 1000}"},
                {"address": f"127.0.0.1:{30000 + i}"},
            ],
            "connect_timeout": "1000ms",
        }
        for i, name in enumerate(cluster_names())
    ]
    hosts = [
        {
            "name": f"vh{v}",
            "domains": [f"svc{v}.test"],
            "routes": [
                {
                    "match": {"path": {"prefix": f"/svc{v}/r{r}"}},
                    "backends": [
                        {"cluster": f"cluster-{(v * ROUTES_PER_VHOST + r) % CLUSTERS:04d}"}
                    ],
                }
                for r in range(ROUTES_PER_VHOST)
            ],
        }
        for v in range(VHOSTS)
    ]
    listener = {"name": "web", "address": "127.0.0.1:10000", "protocol": "http"}
    return {"listeners": [{**listener, "virtual_hosts": hosts}], "clusters": clusters}


def tree_pids(root: int) -> list[int]:
    """`root` and every process below it."""
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        for task in os.listdir(f"/proc/{pid}/task") if os.path.isdir(f"/proc/{pid}") else []:
            with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{task}/children") as f:
                todo += [int(c) for c in f.read().split()]
    return found


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of the processes, from /proc/<pid>/stat."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError), open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def is_xds_worker(pid: int) -> bool:
    """Whether the process is an xDS worker of `serve --xds-workers`."""
    with contextlib.suppress(OSError), open(f"/proc/{pid}/cmdline", "rb") as f:
        return b"controlplane.xds.worker" in f.read()
    return False


def sockets_of(pid: int) -> int:
    """How many sockets the process holds open: its share of the connections, roughly."""
    count = 0
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                count += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
    return count


def rss_of(pids: list[int]) -> float:
    """The summed resident set size of the processes, in MiB."""
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) / 1024
    return total


@contextlib.contextmanager
def serving(
    workdir: str,
    workers: int | None,
    seed: dict[str, Any] | None = None,
    targets: str = "envoy,haproxy",
) -> Iterator[tuple[str, int, int]]:
    """`controlplane serve` on `seed` (default: the bench config): yields (API URL, xDS
    port, pid)."""
    from tests.harness.ports import free_port

    config = os.path.join(workdir, "config.json")
    with open(config, "w") as f:
        json.dump(seed if seed is not None else serve_config(), f)
    api, xds = free_port(), free_port()
    command = [
        os.path.join(os.path.dirname(sys.executable), "controlplane"),
        "serve",
        "--db", os.path.join(workdir, "store.db"),
        "--config", config,
        "--api", f"127.0.0.1:{api}",
        "--xds", f"127.0.0.1:{xds}",
        "--insecure-local",
        "--workdir", os.path.join(workdir, "run"),
    ]  # fmt: skip
    if workers is not None:
        command += ["--xds-workers", str(workers)]
    command += ["--targets", targets]
    url = f"http://127.0.0.1:{api}"
    with open(os.path.join(workdir, "serve.log"), "wb") as log:
        server = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 120
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"serve exited with {server.returncode}, see serve.log")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/v1/status", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise TimeoutError("serve did not answer within 120 s")
            time.sleep(0.2)
        yield url, xds, server.pid
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def run_serve(
    n: int,
    delta: bool,
    per_channel: int,
    procs: int,
    wave: int,
    workers: int | None,
    changes: int,
    targets: str = "envoy,haproxy",
) -> list[dict[str, Any]]:
    """One `serve`, `n` clients, `changes` REST writes each followed by a status wait."""
    ctx = mp.get_context("spawn")
    clients: list[tuple[Any, Connection]] = []
    rows: list[dict[str, Any]] = []
    subscription = Subscription("default", tuple(cluster_names()), ("web",))
    with (
        tempfile.TemporaryDirectory(prefix="xds-fanout-") as tmp,
        serving(tmp, workers, targets=targets) as (
            url,
            port,
            pid,
        ),
        httpx.Client(base_url=url, timeout=120) as api,
    ):
        try:
            t_start = time.time()
            share = -(-n // procs)
            for k in range(procs):
                first, count = k * share, min(share, n - k * share)
                if count <= 0:
                    break
                mine, theirs = ctx.Pipe()
                p = ctx.Process(
                    target=client_main,
                    args=(theirs, port, first, count, per_channel, delta, wave, subscription),
                )
                p.start()
                clients.append((p, mine))
            while True:
                body = api.get("/v1/status/wait", params={"timeout": 5}).json()
                if body["converged"] and body["total"] >= n:
                    break
                if time.time() - t_start > 600:
                    raise TimeoutError(f"initial sync: {body['acked']} of {n} after 600 s")
            sync_s = time.time() - t_start
            pids = tree_pids(pid)
            workers_pids = [p for p in pids if is_xds_worker(p)]
            split = {p: sockets_of(p) for p in workers_pids}
            if split:
                print(f"  open sockets per xDS worker (pid: count): {split}", flush=True)
            for change in range(1, changes + 1):
                load = os.getloadavg()[0]
                rss_before = rss_of(pids)
                cpu0, ccpu0 = cpu_seconds(pids), _clients_cpu(clients)
                wcpu0 = cpu_seconds(workers_pids)
                t0 = time.time()
                reply = api.patch(
                    "/v1/clusters/cluster-0000",
                    content=json.dumps({"connect_timeout": f"{1000 + change}ms"}),
                    headers={"Content-Type": "application/merge-patch+json"},
                )
                written = time.time() - t0
                reply.raise_for_status()
                revision = int(reply.headers["etag"].strip('"'))
                waited = api.get(
                    "/v1/status/wait", params={"revision": revision, "timeout": 120}
                ).json()
                wait_s = time.time() - t0
                cpu, ccpu = cpu_seconds(pids) - cpu0, _clients_cpu(clients) - ccpu0
                wcpu = cpu_seconds(workers_pids) - wcpu0
                acks: list[float] = []
                for _, c in clients:
                    c.send(("acks", t0))
                    acks += [at - t0 for at in c.recv()]
                acks.sort()
                rows.append(
                    {
                        "n": n,
                        "mode": f"serve {'delta' if delta else 'sotw'}"
                        + (f" w{workers}" if workers is not None else "")
                        + (" envoy-only" if targets == "envoy" else ""),
                        "change": change,
                        "synced": True,
                        "sync_s": sync_s,
                        "changed_ok": bool(waited["converged"]) and waited["total"] >= n,
                        "acked": len(acks),
                        "write_ms": written * 1000,
                        "wait_ms": wait_s * 1000,
                        "first_ms": acks[0] * 1000 if acks else float("nan"),
                        "p50_ms": statistics.median(acks) * 1000 if acks else float("nan"),
                        "last_ms": acks[-1] * 1000 if acks else float("nan"),
                        "fanout_ms": (acks[-1] - acks[0]) * 1000 if acks else float("nan"),
                        "cpu_ms": cpu * 1000,
                        "us_per_stream": cpu / n * 1e6,
                        "workers_cpu_ms": wcpu * 1000,
                        "client_cpu_ms": ccpu * 1000,
                        "rss_mb": rss_of(pids),
                        "peak_mb": max(rss_before, rss_of(pids)),
                        "errors": 0,
                        "load": load,
                    }
                )
                print(" ".join(f"{rows[-1][k]:{f}}" for _, k, f in SERVE_COLUMNS), flush=True)
            stats: list[ClientStats] = []
            for _, c in clients:
                c.send("stop")
            for _, c in clients:
                stats.append(c.recv())
            errors = sum(s.errors for s in stats)
            for row in rows:
                row["errors"] = errors
            if errors:
                print(f"  {errors} streams failed", flush=True)
        finally:
            for p, _ in clients:
                p.join(timeout=30)
                if p.is_alive():
                    p.kill()
    return rows


SERVE_COLUMNS: list[tuple[str, str, str]] = [
    ("mode", "mode", "<14"),
    ("clients", "n", ">7"),
    ("#", "change", ">2"),
    ("sync s", "sync_s", ">7.1f"),
    ("acked", "acked", ">6"),
    ("write ms", "write_ms", ">8.1f"),
    ("first ms", "first_ms", ">8.1f"),
    ("p50 ms", "p50_ms", ">8.1f"),
    ("last ms", "last_ms", ">8.1f"),
    ("fan-out ms", "fanout_ms", ">10.1f"),
    ("wait ms", "wait_ms", ">8.1f"),
    ("srv cpu ms", "cpu_ms", ">10.0f"),
    ("us/stream", "us_per_stream", ">9.1f"),
    ("wrk cpu ms", "workers_cpu_ms", ">10.0f"),
    ("cli cpu ms", "client_cpu_ms", ">10.0f"),
    ("rss MiB", "rss_mb", ">8.0f"),
    ("load", "load", ">5.1f"),
]


COLUMNS: list[tuple[str, str, str]] = [
    # (heading, result key, format)
    ("mode", "mode", "<11"),
    ("clients", "n", ">7"),
    ("#", "change", ">2"),
    ("sync s", "sync_s", ">7.2f"),
    ("acked", "acked", ">6"),
    ("first ms", "first_ms", ">9.1f"),
    ("p50 ms", "p50_ms", ">8.1f"),
    ("last ms", "last_ms", ">8.1f"),
    ("pushed ms", "pushed_ms", ">9.1f"),
    ("srv cpu ms", "cpu_ms", ">10.0f"),
    ("us/stream", "us_per_stream", ">9.1f"),
    ("gc ms", "gc_ms", ">6.1f"),
    ("full gcs", "full_gcs", ">8"),
    ("cli cpu ms", "client_cpu_ms", ">10.0f"),
    ("rss MiB", "rss_mb", ">8.0f"),
    ("peak MiB", "peak_mb", ">9.0f"),
    ("errors", "errors", ">6"),
    ("load", "load", ">5.1f"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--delta", action="store_true", help="incremental xDS instead of SotW")
    parser.add_argument("--baseline", action="store_true", help="also run per-stream serialising")
    parser.add_argument("--repeat", type=int, default=1, help="runs per configuration")
    parser.add_argument("--streams-per-channel", type=int, default=100)
    parser.add_argument("--client-procs", type=int, default=1)
    parser.add_argument(
        "--wave",
        type=int,
        default=0,
        help="streams connecting together, the next wave once these have everything (0: all)",
    )
    parser.add_argument("--serve", action="store_true", help="run controlplane serve instead")
    parser.add_argument(
        "--xds-workers",
        type=int,
        nargs="+",
        default=[None],
        help="serve's --xds-workers; several values: a run each, side by side (default: serve's)",
    )
    parser.add_argument(
        "--targets",
        default="envoy,haproxy",
        help="serve's --targets (envoy: nothing is compiled for HAProxy agents)",
    )
    parser.add_argument("--changes", type=int, default=10, help="changes per run")
    parser.add_argument(
        "--keep-collector",
        action="store_true",
        help="do not freeze long-lived objects after each snapshot (bare server only)",
    )
    args = parser.parse_args()
    if args.serve:
        print(
            f"controlplane serve, config: {CLUSTERS} clusters + endpoints, "
            f"{VHOSTS * ROUTES_PER_VHOST} routes; {args.client_procs} client process(es), "
            f"{os.cpu_count()} cpus; times from just before the write; us/stream = server CPU "
            "(serve and its children) per stream for the change; wrk cpu = the xDS workers' part",
            flush=True,
        )
        print(" ".join(f"{h:{f.rstrip('.0123456789f')}}" for h, _, f in SERVE_COLUMNS))
        for n in args.clients:
            for _ in range(args.repeat):
                for workers in args.xds_workers:
                    run_serve(
                        n,
                        args.delta,
                        args.streams_per_channel,
                        args.client_procs,
                        args.wave,
                        workers,
                        args.changes,
                        args.targets,
                    )
        return
    print(
        f"config: {CLUSTERS} clusters + endpoints, {VHOSTS * ROUTES_PER_VHOST} routes; "
        f"{args.streams_per_channel} streams/channel, {args.client_procs} client process(es), "
        f"connecting {f'in waves of {args.wave}' if args.wave else 'all at once'}, "
        f"{os.cpu_count()} cpus; pushed = last push written, cpu = during the change, "
        "load = 1-min load average before the run",
        flush=True,
    )
    print(" ".join(f"{h:{f.rstrip('.0123456789f')}}" for h, _, f in COLUMNS), flush=True)
    for n in args.clients:
        for _ in range(args.repeat):
            runs = [
                (naive, w or 1)
                for w in args.xds_workers
                for naive in ([False, True] if args.baseline and (w or 1) == 1 else [False])
            ]
            for naive, workers in runs:
                rows = run_one(
                    n,
                    naive,
                    args.delta,
                    args.streams_per_channel,
                    args.client_procs,
                    args.wave,
                    args.changes,
                    args.keep_collector,
                    workers,
                )
                for r in rows:
                    ok = "" if r["synced"] and r["changed_ok"] else "  (INCOMPLETE)"
                    print(" ".join(f"{r[k]:{f}}" for _, k, f in COLUMNS) + ok, flush=True)


if __name__ == "__main__":
    main()
