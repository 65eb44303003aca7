"""Demo backends: tiny servers that answer every request with their own name.

- HTTP/1.1: any method and path answers 200 with header `x-backend: <name>` and a JSON body
  `{backend, method, path, headers, peer}`; `peer` is the address the connection came from (the
  proxy in front, whose client shows in `X-Forwarded-For`).
- WebSocket, on the same port: an upgrade request is accepted, and each text message `m` is
  answered with `<name>:m`.
- gRPC (h2c), on a port of its own: every unary method answers the name as raw bytes, with
  trailing metadata `x-backend: <name>`.

`python -m controlplane.demo_backends NAME --http HOST:PORT [--grpc HOST:PORT]` runs one until
SIGINT or SIGTERM (the lab's backend containers).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import signal
import struct
from collections.abc import Awaitable, Callable

import grpc

from .model.types import split_address

_WEBSOCKET_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_MAX_MESSAGE = 1 << 20


def _peer(writer: asyncio.StreamWriter) -> str:
    address = writer.get_extra_info("peername")
    if not address:
        return ""
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def _answer(name: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            request_line, *header_lines = head.decode("latin-1").split("\r\n")
            method, target, _ = request_line.split(" ", 2)
            headers = {}
            for line in header_lines:
                key, sep, value = line.partition(":")
                if sep:
                    headers[key.strip().lower()] = value.strip()
            if headers.get("upgrade", "").lower() == "websocket" and "sec-websocket-key" in headers:
                await _websocket(name, headers["sec-websocket-key"], reader, writer)
                break
            length = int(headers.get("content-length", "0") or 0)
            if length:
                await reader.readexactly(length)
            report = {
                "backend": name,
                "method": method,
                "path": target,
                "headers": headers,
                "peer": _peer(writer),
            }
            body = json.dumps(report, indent=1).encode() + b"\n"
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                + f"x-backend: {name}\r\ncontent-length: {len(body)}\r\n\r\n".encode()
                + body
            )
            await writer.drain()
            if headers.get("connection", "").lower() == "close":
                break
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ValueError):
        pass
    finally:
        writer.close()


async def _websocket(
    name: str, key: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """Accept the upgrade (RFC 6455), then answer each text message until the client closes."""
    accept = base64.b64encode(hashlib.sha1(key.encode() + _WEBSOCKET_GUID).digest()).decode()
    writer.write(
        b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n"
        + f"sec-websocket-accept: {accept}\r\nx-backend: {name}\r\n\r\n".encode()
    )
    await writer.drain()
    message = b""
    while True:
        fin_opcode, length = await reader.readexactly(2)
        length &= 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", await reader.readexactly(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", await reader.readexactly(8))
        if length > _MAX_MESSAGE:
            raise ValueError("message too long")
        mask = await reader.readexactly(4)
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(await reader.readexactly(length)))
        opcode = fin_opcode & 0x0F
        if opcode == 0x8:  # close: answer it, then end
            writer.write(_frame(0x8, payload[:2]))
            await writer.drain()
            return
        if opcode == 0x9:  # ping
            writer.write(_frame(0xA, payload))
        elif opcode in (0x0, 0x1):  # a text message, or the continuation of one
            message += payload
            if fin_opcode & 0x80:
                writer.write(_frame(0x1, name.encode() + b":" + message))
                message = b""
        await writer.drain()


def _frame(opcode: int, payload: bytes) -> bytes:
    """An unmasked server frame (a single, final fragment)."""
    size = len(payload)
    if size < 126:
        head = struct.pack("!BB", 0x80 | opcode, size)
    elif size < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, 126, size)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 127, size)
    return head + payload


async def start_backend(name: str, host: str, port: int) -> asyncio.Server:
    """Serve `name` over HTTP/1.1 and WebSocket on host:port until the server is closed."""
    return await asyncio.start_server(
        lambda r, w: _answer(name, r, w), host, port, reuse_address=True
    )


class _NameEveryMethod(grpc.GenericRpcHandler):
    """Any unary method answers the backend's name as raw bytes."""

    def __init__(self, name: str) -> None:
        self._name = name

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        async def answer(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            context.set_trailing_metadata((("x-backend", self._name),))
            return self._name.encode()

        return grpc.unary_unary_rpc_method_handler(answer)


async def start_grpc_backend(name: str, host: str, port: int) -> grpc.aio.Server:
    """Serve `name` over gRPC (h2c) on host:port until the server is stopped."""
    server = grpc.aio.server(handlers=[_NameEveryMethod(name)])
    if server.add_insecure_port(f"{host}:{port}") == 0:
        raise OSError(f"cannot listen on {host}:{port}")
    await server.start()
    return server


async def _run(name: str, http: tuple[str, int], grpc_address: tuple[str, int] | None) -> None:
    stops: list[Callable[[], Awaitable[object]]] = []
    server = await start_backend(name, *http)

    async def close_http() -> None:
        server.close()
        await server.wait_closed()

    stops.append(close_http)
    if grpc_address is not None:
        grpc_server = await start_grpc_backend(name, *grpc_address)
        stops.append(lambda: grpc_server.stop(grace=None))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    print(f"backend {name}: http {http[0]}:{http[1]}, grpc {grpc_address}", flush=True)
    await stop.wait()
    for close in stops:
        await close()


def main(argv: list[str] | None = None) -> None:
    """Run one demo backend until SIGINT or SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name", help="what the backend answers")
    parser.add_argument("--http", type=split_address, required=True, metavar="HOST:PORT")
    parser.add_argument("--grpc", type=split_address, metavar="HOST:PORT")
    args = parser.parse_args(argv)
    try:
        asyncio.run(_run(args.name, args.http, args.grpc))
    except OSError as exc:
        raise SystemExit(f"backend {args.name}: {exc}") from None


if __name__ == "__main__":
    main()
