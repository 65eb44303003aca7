"""Running the REST API in-process: open the store, seed it, serve on HOST:PORT (asyncio).

`controlplane serve` wires these pieces together with the xDS server and the HAProxy
managers; `ApiServer` runs beside them on the same event loop.

Transport security: the xDS server hands out private keys, so it speaks plain text only on a
loopback address or when told `xds_insecure` (with a warning); elsewhere it needs mutual TLS
(`xds_tls`). The API serves TLS with `api_tls`; without it, tokens are accepted only from
loopback (`controlplane.api.deps`), and a server listening elsewhere warns at start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import signal
import socket
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import APIRouter, FastAPI

from .api import (
    DEFAULT_MAX_BODY_BYTES,
    DiffExplainer,
    DriftVerifier,
    HeldBack,
    MetricsSource,
    Propagator,
    StatusSource,
    TokenSet,
    create_app,
    is_loopback,
)
from .feed.bundles import GroupBundles
from .feed.http import agent_router
from .fleet import (
    AgentLedger,
    DataPlane,
    EnvoyPlane,
    Fleet,
    HAProxyPlane,
    Ledger,
    LedgerStatus,
    LocalHAProxy,
    PlaneExplainer,
    RevisionIndex,
    SharedStatus,
    XdsReports,
    manager_reports,
)
from .fleet.last_good import LastKnownGood
from .fleet.metrics import FleetMetrics
from .fleet.verify import FleetVerifier
from .model import PROXY_KINDS, ConfigError, Issue, ProxyKind, load_file, target_issues
from .model.tls import PemFileError, read_pem_file
from .model.types import split_address
from .proxies.haproxy.manager import HAProxyManager
from .proxies.waf import VerdictServiceError, VerdictServiceProcess
from .store import Conflict, Revision, Store, StoreError
from .store import open_store as open_db
from .xds.cache import SnapshotCache
from .xds.server import XdsServer, XdsTls
from .xds.workers import XdsWorkers

log = logging.getLogger(__name__)

DEFAULT_API = "127.0.0.1:8080"
DEFAULT_XDS = "127.0.0.1:18000"
DEFAULT_FORGET_AFTER = 3600.0
"""Seconds after which the status forgets a proxy that disconnected (or an agent gone silent)."""


class ServeError(ValueError):
    """The server cannot start as asked; the message says why."""


REPLICA_NAME = re.compile(r"[A-Za-z0-9._-]{1,128}")
"""What a replica's name may be: it is a key in the shared store and shown in logs."""


def check_replica(name: str | None) -> None:
    """ServeError unless `name` (when given) is a valid replica name."""
    if name is not None and not REPLICA_NAME.fullmatch(name):
        raise ServeError(
            f"--replica {name!r}: 1 to 128 letters, digits, '.', '_' or '-' (nothing else)"
        )


def parse_listen(text: str) -> tuple[str, int]:
    """`HOST:PORT` (or `[v6]:PORT`) to listen on; port 0 lets the system choose."""
    try:
        if text.endswith(":0"):
            return split_address(text[:-2] + ":1")[0], 0
        return split_address(text)
    except ValueError as exc:
        raise ServeError(f"{text!r}: {exc}") from None


@dataclass(frozen=True)
class TlsFiles:
    """PEM files of a TLS server: its certificate chain and key, and for mutual TLS the CA
    whose certificates clients must present."""

    cert: Path
    key: Path
    client_ca: Path | None = None


def check_tls_files(files: TlsFiles, flags: str) -> None:
    """ServeError (naming `flags`) unless the certificate and key load together and the
    client CA, if any, loads."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(files.cert, files.key)
    except (OSError, ssl.SSLError) as exc:
        reason = getattr(exc, "reason", None) or exc.strerror or exc
        raise ServeError(f"{flags}: {files.cert} and {files.key} do not load: {reason}") from None
    if files.client_ca is not None:
        try:
            context.load_verify_locations(cafile=files.client_ca)
        except (OSError, ssl.SSLError) as exc:
            reason = getattr(exc, "reason", None) or exc.strerror or exc
            raise ServeError(f"{flags}: {files.client_ca} does not load: {reason}") from None


def load_xds_tls(files: TlsFiles) -> XdsTls:
    """The xDS server's mutual TLS from PEM files (ServeError when they do not load)."""
    flags = "--xds-tls-cert/--xds-tls-key/--xds-client-ca"
    if files.client_ca is None:
        raise ServeError(f"{flags}: xDS over TLS needs the client CA (mutual TLS)")
    check_tls_files(files, flags)
    try:
        cert, key, ca = (read_pem_file(p) for p in (files.cert, files.key, files.client_ca))
    except PemFileError as exc:
        raise ServeError(f"{flags}: {exc}") from None
    return XdsTls(cert.encode(), key.encode(), ca.encode())


def check_transport(api_host: str, xds_host: str, options: ServeOptions) -> None:
    """Refuse plain-text xDS off loopback unless `xds_insecure`; warn about what is insecure."""
    if options.xds_tls is not None and options.xds_insecure:
        raise ServeError("--xds-insecure and --xds-tls-cert exclude each other")
    if options.xds_tls is None and not is_loopback(xds_host):
        if not options.xds_insecure:
            raise ServeError(
                f"plain-text xDS on {xds_host} would hand every private key to any client; "
                "give --xds-tls-cert, --xds-tls-key and --xds-client-ca, or --xds-insecure"
            )
        log.warning(
            "--xds-insecure: xDS on %s is plain text; any client that reaches it receives the "
            "config's private keys and may claim any node id",
            xds_host,
        )
    if options.api_tls is None and not is_loopback(api_host):
        log.warning(
            "the API listens on %s without TLS: tokens sent over plain HTTP from other machines "
            "are refused; give --api-tls-cert and --api-tls-key",
            api_host,
        )


def seed(
    store: Store, path: str | Path, targets: Sequence[ProxyKind] = PROXY_KINDS
) -> Revision | None:
    """Make the config in `path` revision 1 when the store is empty; None when it is not.

    The file must be valid and expressible by every served proxy kind (ConfigError).
    """
    if store.head() is not None:
        return None
    config = load_file(path)
    issues: list[Issue] = [i for t in targets for i in target_issues(config, t)]
    if issues:
        raise ConfigError(issues)
    try:
        return store.commit(config, None, "serve", f"seeded from {path}")
    except Conflict:
        return None  # another replica seeded it first


def build_app(
    store: Store,
    host: str,
    *,
    tokens: TokenSet | None = None,
    insecure_local: bool = False,
    targets: Sequence[ProxyKind] = PROXY_KINDS,
    propagator: Propagator | None = None,
    status: StatusSource | None = None,
    explainer: DiffExplainer | None = None,
    metrics_sources: Sequence[MetricsSource] = (),
    agents: Sequence[APIRouter] = (),
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    verifier: DriftVerifier | None = None,
    held_back: HeldBack | None = None,
) -> FastAPI:
    """The API app for a server bound on `host`; refuses `insecure_local` off loopback."""
    if insecure_local and not is_loopback(host):
        raise ServeError(
            f"--insecure-local admits requests without a token; it needs a loopback address, "
            f"not {host!r}"
        )
    if not insecure_local and not tokens:
        log.warning("no tokens configured: every API request will be refused (401)")
    return create_app(
        store,
        propagator=propagator,
        status=status,
        tokens=tokens,
        targets=targets,
        insecure_local=insecure_local,
        explainer=explainer,
        metrics_sources=metrics_sources,
        agents=agents,
        max_body_bytes=max_body_bytes,
        verifier=verifier,
        held_back=held_back,
    )


class ApiServer:
    """Uvicorn serving an app on the running event loop, started and stopped by the caller;
    over TLS with `tls` (its certificate and key)."""

    def __init__(self, app: FastAPI, host: str, port: int, tls: TlsFiles | None = None) -> None:
        self.host = host
        self.tls = tls
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_config=None,
            lifespan="on",
            access_log=True,
            timeout_graceful_shutdown=1,
            ssl_certfile=str(tls.cert) if tls else None,
            ssl_keyfile=str(tls.key) if tls else None,
        )
        self._server = uvicorn.Server(config)
        self._task: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        """The port it listens on (the chosen one when started with port 0)."""
        for server in self._server.servers:
            for sock in server.sockets:
                return int(sock.getsockname()[1])
        return int(self._server.config.port)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"

    async def start(self, timeout: float = 10.0) -> None:
        """Serve in a task; return once listening (ServeError when it could not start)."""
        port = int(self._server.config.port)
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        # asyncio sets TCP_NODELAY only on connections of a socket made with IPPROTO_TCP;
        # without it every answer on a kept-alive connection waits ~40 ms (Nagle).
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, port))
        except OSError as exc:
            sock.close()
            raise ServeError(
                f"the API cannot listen on {self.host}:{port}: {exc.strerror}"
            ) from None
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        deadline = asyncio.get_running_loop().time() + timeout
        while not self._server.started:
            if self._task.done():
                raise ServeError(
                    f"the API could not listen on {self.host}:{self._server.config.port}"
                )
            if asyncio.get_running_loop().time() > deadline:
                await self.stop()
                raise ServeError("the API did not start in time")
            await asyncio.sleep(0.01)
        log.info("API listening on %s", self.url)

    async def stop(self) -> None:
        """Stop accepting requests, finish the ones in flight, and end the task."""
        self._server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError, SystemExit):
                await self._task
            self._task = None

    async def serve_forever(self) -> None:
        """Start, then run until the task ends (SIGINT or SIGTERM) or is cancelled."""
        await self.start()
        try:
            assert self._task is not None
            await self._task
        finally:
            await self.stop()


def open_store(db: str | Path, migrate: bool = False) -> Store:
    """The store `--db` names: a SQLite file (created when missing) or a `postgresql://` URL
    (migrated first with `migrate`); ServeError when it cannot be opened."""
    try:
        return open_db(db, migrate=migrate)
    except StoreError as exc:
        raise ServeError(str(exc)) from None


@dataclass(frozen=True)
class ServeOptions:
    """What `controlplane serve` runs: the API, the xDS server, local HAProxies."""

    db: str | Path
    config: Path | None = None
    api: str = DEFAULT_API
    xds: str = DEFAULT_XDS
    tokens_file: Path | None = None
    insecure_local: bool = False
    targets: tuple[ProxyKind, ...] = PROXY_KINDS
    haproxy_groups: tuple[str, ...] = ()
    haproxy_bin: str = "haproxy"
    haproxy_bind: str | None = None
    haproxy_threads: int = 1
    workdir: Path = Path("run")
    xds_tls: TlsFiles | None = None
    xds_insecure: bool = False
    api_tls: TlsFiles | None = None
    migrate: bool = False
    forget_after: float = DEFAULT_FORGET_AFTER
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    replica: str | None = None
    """This replica's name in a shared store's reports (default: host, PID, a random part)."""
    waf: str | None = None
    """Where to run the CRS verdict service for local proxies (`controlplane waf-serve`)."""
    waf_workers: int = 2
    xds_workers: int = 1
    """xDS server processes sharing the port (`XdsWorkers`); 1 serves xDS in this process."""


@dataclass
class Running:
    """A started server: its parts, for callers that embed it (tests, `make run`)."""

    store: Store
    xds: XdsServer | XdsWorkers
    api: ApiServer
    fleet: Fleet
    ledger: Ledger
    status: LedgerStatus
    local: list[LocalHAProxy] = field(default_factory=list)
    forgetting: asyncio.Task[None] | None = None
    shared: SharedStatus | None = None
    """The status of every replica, on a store shared with others (PostgreSQL)."""
    holding: asyncio.Task[None] | None = None
    """Holding Envoy groups back on their last-known-good (`LastKnownGood.run`)."""
    verdicts: VerdictServiceProcess | None = None

    async def stop(self, keep_proxies: bool = False) -> None:
        """Stop the API and the xDS server and close the store. The local HAProxies stop too,
        or with `keep_proxies` keep serving, for the next server to adopt them."""
        try:
            for task in (self.forgetting, self.holding):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            await self.api.stop()
            await self.xds.stop(grace=0.5)
            if self.shared is not None:
                await self.shared.stop()
        finally:
            for local in self.local:
                let_go = local.manager.detach if keep_proxies else local.manager.stop
                await asyncio.to_thread(let_go)
            if self.verdicts is not None:
                await asyncio.to_thread(self.verdicts.stop)
            self.store.close()


async def start_server(options: ServeOptions) -> Running:
    """Open the store (seeded from `options.config` when empty), start the xDS server,
    the local HAProxies and the API, and push the head revision to them."""
    api_host, api_port = parse_listen(options.api)
    xds_host, xds_port = parse_listen(options.xds)
    check_transport(api_host, xds_host, options)
    check_replica(options.replica)
    xds_credentials = load_xds_tls(options.xds_tls) if options.xds_tls else None
    if options.api_tls is not None:
        check_tls_files(options.api_tls, "--api-tls-cert/--api-tls-key")
    tokens = TokenSet.load(options.tokens_file)
    store = open_store(options.db, options.migrate)
    started: list[LocalHAProxy] = []
    xds: XdsServer | XdsWorkers | None = None
    shared: SharedStatus | None = None
    verdicts: VerdictServiceProcess | None = None
    try:
        if options.config is not None:
            seed(store, options.config, options.targets)
        if options.waf is not None:
            verdicts = await start_verdicts(options)
        ledger, index, cache = Ledger(), RevisionIndex(), SnapshotCache()
        if options.xds_workers > 1:
            xds = XdsWorkers(cache, XdsReports(ledger), options.xds_workers, tls=xds_credentials)
        else:
            xds = XdsServer(cache, XdsReports(ledger), tls=xds_credentials)
        await xds.start(xds_host, xds_port)
        for group in options.haproxy_groups:
            instance = f"local-haproxy-{group}"
            on_apply, on_health = manager_reports(ledger, instance, group)
            manager = HAProxyManager(
                options.workdir / f"haproxy-{group}",
                haproxy_bin=options.haproxy_bin,
                instance_id=instance,
                group=group,
                on_apply=on_apply,
                on_health=on_health,
            )
            if await asyncio.to_thread(manager.adopt):
                log.info("adopted the running HAProxy of group %s", group)
            started.append(LocalHAProxy(manager, group, options.haproxy_bind))
        bundles = GroupBundles()
        planes: list[DataPlane[Any]] = []
        envoys = EnvoyPlane(cache)
        if "envoy" in options.targets:
            planes.append(envoys)
        if "haproxy" in options.targets:
            planes.append(HAProxyPlane(bundles, started, options.haproxy_threads))
        fleet = Fleet(asyncio.get_running_loop(), planes, index, ledger)
        status = LedgerStatus(ledger, index, keep_changed=store.shared)
        if store.shared:
            shared = SharedStatus(status, store, options.replica, forget_after=options.forget_after)
            await shared.start()
        last_good = LastKnownGood(shared or status, index, store, envoys, fleet.members)
        app = build_app(
            store,
            api_host,
            tokens=tokens,
            insecure_local=options.insecure_local,
            targets=options.targets,
            propagator=fleet,
            status=shared or status,
            explainer=PlaneExplainer(planes),
            metrics_sources=[FleetMetrics(ledger, status)],
            agents=[agent_router(bundles, AgentLedger(ledger))],
            max_body_bytes=options.max_body_bytes,
            verifier=FleetVerifier(planes, ledger, started),
            held_back=last_good,
        )
        api = ApiServer(app, api_host, api_port, options.api_tls)
        await api.start()
        forgetting = asyncio.create_task(forget_gone(ledger, options.forget_after))
        holding = asyncio.create_task(last_good.run()) if "envoy" in options.targets else None
    except BaseException:
        if shared is not None:
            await shared.stop()
        if xds is not None:
            await xds.stop()
        for local in started:
            local.manager.stop()
        if verdicts is not None:
            verdicts.stop()
        store.close()
        raise
    return Running(
        store, xds, api, fleet, ledger, status, started, forgetting, shared, holding, verdicts
    )


async def start_verdicts(options: ServeOptions) -> VerdictServiceProcess:
    """The CRS verdict service for the local proxies, running (its log in the workdir)."""
    assert options.waf is not None
    try:
        split_address(options.waf)
    except ValueError as exc:
        raise ServeError(f"--waf {options.waf!r}: {exc}") from None
    options.workdir.mkdir(parents=True, exist_ok=True)
    verdicts = VerdictServiceProcess(options.waf, options.waf_workers, options.workdir / "waf.log")
    try:
        return await asyncio.to_thread(verdicts.start)
    except VerdictServiceError as exc:
        raise ServeError(f"{exc} (see {options.workdir / 'waf.log'})") from None


async def forget_gone(ledger: Ledger, after: float) -> None:
    """Every so often, drop from the ledger the proxies gone for more than `after` seconds."""
    while True:
        await asyncio.sleep(min(after / 2, 60.0))
        for node_id in ledger.forget(after):
            log.info("forgot proxy %s: gone for more than %gs", node_id, after)


async def serve(options: ServeOptions) -> None:
    """Run the whole server until SIGINT or SIGTERM. Local HAProxies keep serving after it
    stops; the next `serve` with the same workdir adopts them without a reload."""
    running = await start_server(options)
    log.info("serving: API %s, xDS port %s", running.api.url, running.xds.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await running.stop(keep_proxies=True)
