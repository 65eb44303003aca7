"""The demo backends answer with their name over HTTP/1.1, WebSocket and gRPC."""

from __future__ import annotations

import asyncio
import json

import grpc
from websockets.asyncio.client import connect

from controlplane.demo_backends import start_backend, start_grpc_backend
from tests.harness.ports import free_port


def test_a_backend_answers_http_websocket_and_grpc_with_its_name() -> None:
    async def scenario() -> None:
        http_port, grpc_port = free_port(), free_port()
        server = await start_backend("b1", "127.0.0.1", http_port)
        grpc_server = await start_grpc_backend("b1", "127.0.0.1", grpc_port)
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", http_port)
            writer.write(b"GET /x?y=1 HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 10.0.0.9\r\n\r\n")
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            answer = json.loads(await reader.readexactly(length))
            assert b"x-backend: b1" in head
            assert answer["backend"] == "b1" and answer["path"] == "/x?y=1"
            assert answer["headers"]["x-forwarded-for"] == "10.0.0.9"
            assert answer["peer"] == "{}:{}".format(*writer.get_extra_info("sockname"))
            writer.close()

            async with connect(f"ws://127.0.0.1:{http_port}/ws") as ws:
                await ws.send("hello")
                assert await ws.recv() == "b1:hello"
                await ws.send("x" * 70_000)  # a 64-bit length
                assert await ws.recv() == "b1:" + "x" * 70_000
                await ws.ping()

            async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
                call = channel.unary_unary("/any.Service/Method")(b"", timeout=5)
                assert await call == b"b1"
                assert ("x-backend", "b1") in tuple(await call.trailing_metadata())
        finally:
            server.close()
            await grpc_server.stop(grace=None)

    asyncio.run(scenario())
