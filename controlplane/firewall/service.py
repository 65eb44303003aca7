"""The verdict service (`controlplane waf-serve`): CRS verdicts for Envoy (gRPC `ext_authz` on
the listen port) and HAProxy (SPOP on the next port), from `workers` processes that share both
ports (SO_REUSEPORT), each with its own engine.

A verdict blocks with 403 and `BLOCKED_BODY`, or allows; in detect mode it allows and names the
matched CRS rule ids (Envoy: the `x-waf-rules` response header; HAProxy: `txn.waf.rules`, which
the frontend writes as that header). Every block and detection is logged with the rule ids. A
request the service cannot judge (a policy no compiler writes, an engine error) gets no
verdict: the proxy applies the crs `failure` setting.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import socket
import time
from pathlib import Path

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc
from envoy.type.v3 import http_status_pb2
from google.rpc import code_pb2, status_pb2

from ..model.firewall import BLOCKED_BODY, CRS_HEADER
from ..model.types import split_address
from . import spop
from .verdicts import CRS_RULES, CrsPolicy, HttpRequest, Inspector, PolicyError, Verdict

log = logging.getLogger("controlplane.waf")


def _protocol_version(protocol: str) -> str:
    return protocol.removeprefix("HTTP/") or "1.1"


def envoy_request(check: external_auth_pb2.CheckRequest) -> tuple[HttpRequest, str]:
    """The request an ext_authz check describes, and the route's policy text."""
    http = check.attributes.request.http
    headers = []
    for name, value in http.headers.items():
        if name == ":authority":
            headers.append(("host", value))
        elif not name.startswith(":"):
            headers.append((name, value))
    address = check.attributes.source.address.socket_address.address or "127.0.0.1"
    body = http.raw_body or http.body.encode()
    request = HttpRequest(
        http.method, http.path, _protocol_version(http.protocol), tuple(headers), body, address
    )
    return request, check.attributes.context_extensions.get("policy", "")


def haproxy_request(message: spop.Message) -> tuple[HttpRequest, str]:
    """The request a SPOE `check` message describes, and the route's policy text."""
    args = message.args
    raw_headers = args.get("headers")
    headers = spop.headers_bin(raw_headers) if isinstance(raw_headers, bytes) else []
    body = args.get("body")
    if isinstance(body, str):
        body = body.encode()
    request = HttpRequest(
        str(args.get("method") or "GET"),
        str(args.get("url") or "/"),
        str(args.get("version") or "1.1"),
        tuple((name.lower(), value) for name, value in headers),
        body if isinstance(body, bytes) else b"",
        str(args.get("client") or "127.0.0.1"),
    )
    return request, str(args.get("policy") or "")


class Judge:
    """Verdicts of one worker, logged."""

    def __init__(self, inspector: Inspector) -> None:
        self.inspector = inspector

    def judge(self, request: HttpRequest, policy_text: str) -> tuple[CrsPolicy, Verdict]:
        policy = CrsPolicy.parse(policy_text)
        verdict = self.inspector.inspect(request, policy)
        if verdict.rules:
            what = "blocked" if verdict.block and policy.block else "detected"
            ids = ",".join(map(str, verdict.rules))
            log.warning("crs %s %s %s: rules %s", what, request.method, request.uri[:200], ids)
        return policy, verdict


class Authorization(external_auth_pb2_grpc.AuthorizationServicer):
    """Envoy's ext_authz front door."""

    def __init__(self, judge: Judge) -> None:
        self.judge = judge

    async def Check(
        self, request: external_auth_pb2.CheckRequest, context: grpc.aio.ServicerContext
    ) -> external_auth_pb2.CheckResponse:
        http_request, text = envoy_request(request)
        try:
            policy, verdict = self.judge.judge(http_request, text)
        except (PolicyError, RuntimeError) as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        if verdict.block and policy.block:
            return external_auth_pb2.CheckResponse(
                status=status_pb2.Status(code=code_pb2.PERMISSION_DENIED),
                denied_response=external_auth_pb2.DeniedHttpResponse(
                    status=http_status_pb2.HttpStatus(code=http_status_pb2.Forbidden),
                    headers=[_header("content-type", "text/plain")],
                    body=BLOCKED_BODY,
                ),
            )
        ok = external_auth_pb2.OkHttpResponse()
        if verdict.rules and not policy.block:
            ok.response_headers_to_add.append(
                _header(CRS_HEADER, ",".join(map(str, verdict.rules)))
            )
        return external_auth_pb2.CheckResponse(
            status=status_pb2.Status(code=code_pb2.OK), ok_response=ok
        )


def _header(name: str, value: str) -> base_pb2.HeaderValueOption:
    return base_pb2.HeaderValueOption(header=base_pb2.HeaderValue(key=name, value=value))


def spoe_handler(judge: Judge) -> spop.Handler:
    """HAProxy's SPOP front door: the `check` message's verdict as transaction variables."""

    async def handle(messages: list[spop.Message]) -> dict[str, spop.Value]:
        for message in messages:
            if message.name != "check":
                continue
            try:
                policy, verdict = judge.judge(*haproxy_request(message))
            except (PolicyError, RuntimeError) as exc:
                log.error("no verdict: %s", exc)
                return {}
            found: dict[str, spop.Value] = {"verdict": "allow"}
            if verdict.block and policy.block:
                found = {"verdict": "block", "block": 1}
            elif verdict.rules and not policy.block:
                found["rules"] = ",".join(map(str, verdict.rules))
            return found
        return {}

    return handle


async def _serve_worker(host: str, port: int, inspector: Inspector) -> None:
    judge = Judge(inspector)
    server = grpc.aio.server(options=[("grpc.so_reuseport", 1)])
    external_auth_pb2_grpc.add_AuthorizationServicer_to_server(Authorization(judge), server)
    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    server.add_insecure_port(target)
    await server.start()
    handler = spoe_handler(judge)
    spoa = await asyncio.start_server(
        lambda r, w: spop.serve_connection(r, w, handler), host, port + 1, reuse_port=True
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    await stop.wait()
    spoa.close()
    await server.stop(0.5)


def _worker(host: str, port: int, rules_dir: str, max_body: int) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s waf[%(process)d] %(message)s")
    inspector = Inspector(Path(rules_dir), max_body)
    inspector.rules_for(CrsPolicy(True, 1, 5))
    asyncio.run(_serve_worker(host, port, inspector))


def _reserve(host: str, port: int) -> list[socket.socket]:
    """Fail early, in the parent, when a port is taken; the sockets keep the ports meanwhile."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    held = []
    for each in (port, port + 1):
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, each))
        held.append(sock)
    return held


def serve(
    listen: str = "127.0.0.1:9470",
    workers: int = 2,
    rules_dir: Path = CRS_RULES,
    max_body: int = 8192,
) -> None:
    """Run the service until SIGTERM or SIGINT: `workers` processes on `listen` (gRPC) and the
    next port (SPOP). The workers are stopped by PID when the service stops or one of them
    dies."""
    host, port = split_address(listen)
    held = _reserve(host, port)
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(target=_worker, args=(host, port, str(rules_dir), max_body), daemon=True)
        for _ in range(workers)
    ]
    for process in processes:
        process.start()
    for sock in held:
        sock.close()
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        while not stopping and all(p.is_alive() for p in processes):
            time.sleep(0.2)
    finally:
        for process in processes:
            if process.pid is not None and process.is_alive():
                os.kill(process.pid, signal.SIGTERM)
        for process in processes:
            process.join(5)
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGKILL)
