"""The agent side of HAProxy's Stream Processing Offload Protocol (SPOP 2.0), as much of it as
the verdict service needs: HELLO, NOTIFY answered by ACK with `set-var` actions, DISCONNECT;
no pipelining, async or fragmentation (the agent says it supports none, so HAProxy sends one
frame at a time per connection and opens more connections for more concurrency).

A frame is a 4-byte big-endian length, then its type (1 byte), flags (4 bytes, FIN = 1), the
stream and frame ids (varints) and a payload of typed data (doc/SPOE.txt of HAProxy).
"""

from __future__ import annotations

import asyncio
import ipaddress
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

HAPROXY_HELLO, HAPROXY_DISCONNECT, NOTIFY = 1, 2, 3
AGENT_HELLO, AGENT_DISCONNECT, ACK = 101, 102, 103
FIN = 1
T_NULL, T_BOOL, T_INT32, T_UINT32, T_INT64, T_UINT64 = 0, 1, 2, 3, 4, 5
T_IPV4, T_IPV6, T_STRING, T_BINARY = 6, 7, 8, 9
SCOPE_TRANSACTION = 2
SET_VAR = 1
MAX_FRAME = 16380

Value = None | bool | int | str | bytes | ipaddress.IPv4Address | ipaddress.IPv6Address


class ProtocolError(ValueError):
    """Bytes that are not SPOP."""


def encode_varint(value: int) -> bytes:
    if value < 240:
        return bytes([value])
    out = bytearray([(value & 0xFF) | 240])
    value = (value - 240) >> 4
    while value >= 128:
        out.append((value & 0xFF) | 128)
        value = (value - 128) >> 7
    out.append(value)
    return bytes(out)


class Reader:
    """Reads typed data from a frame's bytes."""

    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    @property
    def done(self) -> bool:
        return self.at >= len(self.data)

    def byte(self) -> int:
        if self.at >= len(self.data):
            raise ProtocolError("frame ends early")
        self.at += 1
        return self.data[self.at - 1]

    def varint(self) -> int:
        value = self.byte()
        if value < 240:
            return value
        shift = 4
        while True:
            byte = self.byte()
            value += byte << shift
            shift += 7
            if byte < 128:
                return value
            if shift > 70:
                raise ProtocolError("varint too long")

    def raw(self, size: int) -> bytes:
        if self.at + size > len(self.data):
            raise ProtocolError("frame ends early")
        self.at += size
        return self.data[self.at - size : self.at]

    def string(self) -> bytes:
        return self.raw(self.varint())

    def value(self) -> Value:
        head = self.byte()
        kind, flags = head & 0x0F, head >> 4
        if kind == T_NULL:
            return None
        if kind == T_BOOL:
            return bool(flags & 1)
        if kind in (T_INT32, T_UINT32, T_INT64, T_UINT64):
            return self.varint()
        if kind == T_IPV4:
            return ipaddress.IPv4Address(self.raw(4))
        if kind == T_IPV6:
            return ipaddress.IPv6Address(self.raw(16))
        if kind == T_STRING:
            return self.string().decode("utf-8", "replace")
        if kind == T_BINARY:
            return self.string()
        raise ProtocolError(f"unknown data type {kind}")

    def kv_list(self) -> dict[str, Value]:
        items = {}
        while not self.done:
            key = self.string().decode("utf-8", "replace")
            items[key] = self.value()
        return items


def encode_value(value: Value) -> bytes:
    if value is None:
        return bytes([T_NULL])
    if isinstance(value, bool):
        return bytes([T_BOOL | (0x10 if value else 0)])
    if isinstance(value, int):
        return bytes([T_UINT32 if value >= 0 else T_INT32]) + encode_varint(value & 0xFFFFFFFF)
    if isinstance(value, str):
        data = value.encode()
        return bytes([T_STRING]) + encode_varint(len(data)) + data
    if isinstance(value, bytes):
        return bytes([T_BINARY]) + encode_varint(len(value)) + value
    raise TypeError(f"cannot encode {value!r}")


def _string(text: str) -> bytes:
    data = text.encode()
    return encode_varint(len(data)) + data


def frame(kind: int, payload: bytes, stream: int = 0, frame_id: int = 0) -> bytes:
    body = bytes([kind]) + struct.pack(">I", FIN) + encode_varint(stream) + encode_varint(frame_id)
    body += payload
    return struct.pack(">I", len(body)) + body


def kv(items: dict[str, Value]) -> bytes:
    return b"".join(_string(key) + encode_value(value) for key, value in items.items())


def set_vars(variables: dict[str, Value]) -> bytes:
    """ACK actions setting transaction variables (HAProxy prefixes them with the agent's
    `var-prefix`)."""
    out = bytearray()
    for name, value in variables.items():
        out += bytes([SET_VAR, 3, SCOPE_TRANSACTION]) + _string(name) + encode_value(value)
    return bytes(out)


def headers_bin(data: bytes) -> list[tuple[str, str]]:
    """The headers of `req.hdrs_bin`: (name, value) pairs ended by two empty strings."""
    reader, headers = Reader(data), []
    while not reader.done:
        name, value = reader.string(), reader.string()
        if not name and not value:
            break
        headers.append((name.decode("latin-1"), value.decode("latin-1")))
    return headers


@dataclass(frozen=True)
class Message:
    """A NOTIFY's message: its name and arguments."""

    name: str
    args: dict[str, Value]


Handler = Callable[[list[Message]], Awaitable[dict[str, Value]]]
"""Answers a NOTIFY's messages with the transaction variables to set."""


def parse_notify(payload: bytes) -> list[Message]:
    reader, messages = Reader(payload), []
    while not reader.done:
        name = reader.string().decode("utf-8", "replace")
        count = reader.byte()
        args = {}
        for _ in range(count):
            key = reader.string().decode("utf-8", "replace")
            args[key] = reader.value()
        messages.append(Message(name, args))
    return messages


async def serve_connection(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, handler: Handler
) -> None:
    """One HAProxy connection: HELLO, then NOTIFY frames until a DISCONNECT or EOF."""
    max_frame = MAX_FRAME
    try:
        while True:
            head = await reader.readexactly(4)
            (size,) = struct.unpack(">I", head)
            if size > max_frame + 4 or size < 6:
                raise ProtocolError(f"frame of {size} bytes")
            data = Reader(await reader.readexactly(size))
            kind = data.byte()
            data.raw(4)
            stream, frame_id = data.varint(), data.varint()
            payload = data.data[data.at :]
            if kind == HAPROXY_HELLO:
                hello = Reader(payload).kv_list()
                offered = hello.get("max-frame-size")
                if isinstance(offered, int):
                    max_frame = min(offered, MAX_FRAME)
                reply: dict[str, Value] = {
                    "version": "2.0",
                    "max-frame-size": max_frame,
                    "capabilities": "",
                }
                writer.write(frame(AGENT_HELLO, kv(reply)))
                if hello.get("healthcheck") is True:
                    await writer.drain()
                    return
            elif kind == NOTIFY:
                variables = await handler(parse_notify(payload))
                writer.write(frame(ACK, set_vars(variables), stream, frame_id))
            elif kind == HAPROXY_DISCONNECT:
                writer.write(frame(AGENT_DISCONNECT, kv({"status-code": 0, "message": "bye"})))
                await writer.drain()
                return
            else:
                raise ProtocolError(f"unexpected frame type {kind}")
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        return
    except ProtocolError as exc:
        writer.write(frame(AGENT_DISCONNECT, kv({"status-code": 3, "message": str(exc)})))
    finally:
        writer.close()
