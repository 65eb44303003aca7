"""Demo backends: tiny HTTP/1.1 servers that answer every request with their own name."""

from __future__ import annotations

import asyncio
import json


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
            length = int(headers.get("content-length", "0") or 0)
            if length:
                await reader.readexactly(length)
            body = (
                json.dumps(
                    {"backend": name, "method": method, "path": target, "headers": headers},
                    indent=1,
                ).encode()
                + b"\n"
            )
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                + f"x-backend: {name}\r\ncontent-length: {len(body)}\r\n\r\n".encode()
                + body
            )
            await writer.drain()
            if headers.get("connection", "").lower() == "close":
                break
    except (asyncio.IncompleteReadError, ConnectionError, ValueError):
        pass
    finally:
        writer.close()


async def start_backend(name: str, host: str, port: int) -> asyncio.Server:
    """Serve `name` on host:port until the returned server is closed."""
    return await asyncio.start_server(
        lambda r, w: _answer(name, r, w), host, port, reuse_address=True
    )
