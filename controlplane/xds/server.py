"""The gRPC xDS server: ADS (state of the world and delta) and the per-type services.

Responses are written as bytes assembled from the cache (see `cache.Selection`), so the
response serialiser is the identity: a push costs each stream a write (and at most a byte
concatenation), never a protobuf serialisation.

With `XdsTls` the server speaks mutual TLS: a client without a certificate from the client CA
cannot connect, and a stream whose node (id and group) is not one its certificate names (see
`controlplane.xds.identity`) ends with PERMISSION_DENIED before anything is sent or recorded.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from envoy.service.discovery.v3 import discovery_pb2

from controlplane.xds import types
from controlplane.xds.cache import SnapshotCache
from controlplane.xds.callbacks import NoCallbacks, StreamCallbacks
from controlplane.xds.identity import PeerIdentity
from controlplane.xds.stream import (
    Authorize,
    DeltaStream,
    DiscoveryStream,
    IdentityRefused,
    SotwStream,
)

log = logging.getLogger("controlplane.xds")

SERVICES: dict[str, tuple[str | None, str, str]] = {
    "envoy.service.discovery.v3.AggregatedDiscoveryService": (
        None,
        "StreamAggregatedResources",
        "DeltaAggregatedResources",
    ),
    "envoy.service.cluster.v3.ClusterDiscoveryService": (
        types.CLUSTER,
        "StreamClusters",
        "DeltaClusters",
    ),
    "envoy.service.endpoint.v3.EndpointDiscoveryService": (
        types.ENDPOINT,
        "StreamEndpoints",
        "DeltaEndpoints",
    ),
    "envoy.service.listener.v3.ListenerDiscoveryService": (
        types.LISTENER,
        "StreamListeners",
        "DeltaListeners",
    ),
    "envoy.service.route.v3.RouteDiscoveryService": (
        types.ROUTE,
        "StreamRoutes",
        "DeltaRoutes",
    ),
}
"""gRPC service → (the one type it serves, None for all; SotW method; delta method)."""


DEFAULT_GRPC_OPTIONS: list[tuple[str, Any]] = [
    # gRPC refuses calls once more than 1,000 wait to be picked up by the application (3,000
    # as a hard limit); a fleet reconnecting at once opens that many streams in a burst.
    ("grpc.server.max_pending_requests", 100_000),
    ("grpc.server.max_pending_requests_hard_limit", 100_000),
    # and cancels calls not picked up within 30 s, which a busy loop may not manage then.
    ("grpc.server_max_unrequested_time_in_server", 600),
]


def _as_is(payload: bytes) -> bytes:
    return payload


@dataclass(frozen=True)
class XdsTls:
    """What the server needs for mutual TLS, all PEM: its certificate chain and key, and the
    CA that signs the proxies' client certificates."""

    cert: bytes
    key: bytes
    client_ca: bytes

    def credentials(self) -> grpc.ServerCredentials:
        """gRPC server credentials that require a client certificate from `client_ca`."""
        return grpc.ssl_server_credentials(
            [(self.key, self.cert)], root_certificates=self.client_ca, require_client_auth=True
        )


class XdsServer:
    """Serves the snapshots of a `SnapshotCache` to Envoys, telling `callbacks` what each stream
    does."""

    def __init__(
        self,
        cache: SnapshotCache,
        callbacks: StreamCallbacks | None = None,
        *,
        serialise_per_stream: bool = False,
        grpc_options: list[tuple[str, Any]] | None = None,
        tls: XdsTls | None = None,
    ) -> None:
        """`serialise_per_stream` turns off shared encodings (a baseline for benchmarks);
        `grpc_options` are added to (and override) `DEFAULT_GRPC_OPTIONS`; `tls` makes the
        server speak mutual TLS and bind each stream to its client certificate's identity
        (plain text without it)."""
        self.cache = cache
        self.tls = tls
        self.callbacks: StreamCallbacks = callbacks if callbacks is not None else NoCallbacks()
        self.serialise_per_stream = serialise_per_stream
        self._grpc_options = list(
            {**dict(DEFAULT_GRPC_OPTIONS), **dict(grpc_options or [])}.items()
        )
        self._server: grpc.aio.Server | None = None
        self._streams: set[DiscoveryStream] = set()
        self.port: int | None = None

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen on host:port (0: any free port); returns the bound port."""
        server = grpc.aio.server(options=self._grpc_options)
        server.add_generic_rpc_handlers(self._handlers())
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        if self.tls is not None:
            bound = server.add_secure_port(address, self.tls.credentials())
        else:
            bound = server.add_insecure_port(address)
        if bound == 0:
            raise OSError(f"cannot listen on {host}:{port}")
        await server.start()
        self._server, self.port = server, bound
        log.info(
            "xDS server listening on %s:%d (%s)",
            host,
            bound,
            "mutual TLS" if self.tls else "plain text",
        )
        return bound

    async def stop(self, grace: float | None = None) -> None:
        """Stop listening and end every stream (after `grace` seconds, if given)."""
        if self._server is not None:
            await self._server.stop(grace)
            self._server = None

    @property
    def stream_count(self) -> int:
        """Streams currently open."""
        return len(self._streams)

    def _handlers(self) -> list[grpc.GenericRpcHandler]:
        services: list[grpc.GenericRpcHandler] = []
        for service, (only_type, sotw, delta) in SERVICES.items():
            methods = {
                sotw: grpc.stream_stream_rpc_method_handler(
                    self._sotw_handler(only_type),
                    request_deserializer=discovery_pb2.DiscoveryRequest.FromString,
                    response_serializer=_as_is,
                ),
                delta: grpc.stream_stream_rpc_method_handler(
                    self._delta_handler(only_type),
                    request_deserializer=discovery_pb2.DeltaDiscoveryRequest.FromString,
                    response_serializer=_as_is,
                ),
            }
            services.append(grpc.method_handlers_generic_handler(service, methods))
        return services

    def _sotw_handler(self, only_type: str | None) -> Callable[..., Any]:
        async def handler(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> None:
            await self._serve(SotwStream, only_type, requests, context)

        return handler

    def _delta_handler(self, only_type: str | None) -> Callable[..., Any]:
        async def handler(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> None:
            await self._serve(DeltaStream, only_type, requests, context)

        return handler

    async def _serve(
        self,
        kind: type[SotwStream] | type[DeltaStream],
        only_type: str | None,
        requests: AsyncIterator[Any],
        context: grpc.aio.ServicerContext,
    ) -> None:
        # Requests are handled in this task as they arrive; a snapshot change runs a refresh
        # in its own task. The lock keeps the two from interleaving on the stream's state.
        lock = asyncio.Lock()
        refreshes: set[asyncio.Task[None]] = set()
        refresh_queued = False

        async def refresh() -> None:
            nonlocal refresh_queued
            async with lock:
                refresh_queued = False
                try:
                    await stream.refresh()
                except Exception:
                    # The stream is most likely gone; its handler ends it.
                    log.exception("stream %d: push failed", stream.number)

        def wake() -> None:
            nonlocal refresh_queued
            if not refresh_queued:
                refresh_queued = True
                task = asyncio.get_running_loop().create_task(refresh())
                refreshes.add(task)
                task.add_done_callback(refreshes.discard)

        authorize: Authorize | None = None
        if self.tls is not None:
            peer = PeerIdentity.of_peer(context.auth_context())
            authorize = peer.refusal
        stream = kind(
            self.cache,
            self.callbacks,
            context.write,
            wake,
            only_type,
            serialise_per_stream=self.serialise_per_stream,
            authorize=authorize,
        )
        self._streams.add(stream)
        refused: IdentityRefused | None = None
        try:
            async for request in requests:
                async with lock:
                    await stream.handle(request)
        except IdentityRefused as exc:
            refused = exc
        except (asyncio.CancelledError, grpc.aio.AioRpcError):
            pass
        finally:
            for task in list(refreshes):
                task.cancel()
            await asyncio.gather(*refreshes, return_exceptions=True)
            stream.close()
            self._streams.discard(stream)
        if refused is not None:
            log.warning("refused an xDS stream from %s: %s", context.peer(), refused)
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, str(refused))
