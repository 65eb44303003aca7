"""The agent side of SPOP: varints and typed data read back as HAProxy writes them, and a
connection answers HELLO, NOTIFY (with set-var actions) and DISCONNECT."""

from __future__ import annotations

import asyncio
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controlplane.firewall import spop


@given(st.integers(0, 2**63))
def test_varints_read_back(value: int) -> None:
    assert spop.Reader(spop.encode_varint(value)).varint() == value


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (0, b"\x00"),
        (239, b"\xef"),
        (240, b"\xf0\x00"),
        (2287, b"\xff\x7f"),
        (2288, b"\xf0\x80\x00"),
    ],
)
def test_varints_are_haproxy_s_encoding(value: int, encoded: bytes) -> None:
    assert spop.encode_varint(value) == encoded


@pytest.mark.parametrize("value", [None, True, False, 7, "texte é", b"\x00\xff"])
def test_typed_data_reads_back(value: spop.Value) -> None:
    assert spop.Reader(spop.encode_value(value)).value() == value


def test_headers_bin_is_read_as_pairs_ended_by_two_empty_strings() -> None:
    def s(text: bytes) -> bytes:
        return spop.encode_varint(len(text)) + text

    data = s(b"host") + s(b"example.com") + s(b"user-agent") + s(b"curl") + s(b"") + s(b"")
    assert spop.headers_bin(data) == [("host", "example.com"), ("user-agent", "curl")]


def test_a_truncated_frame_is_a_protocol_error() -> None:
    with pytest.raises(spop.ProtocolError):
        spop.Reader(b"\x08\x05ab").value()


def _frames(data: bytes) -> list[tuple[int, int, int, bytes]]:
    found = []
    while data:
        (size,) = struct.unpack(">I", data[:4])
        reader = spop.Reader(data[4 : 4 + size])
        kind = reader.byte()
        reader.raw(4)
        stream, frame_id = reader.varint(), reader.varint()
        found.append((kind, stream, frame_id, reader.data[reader.at :]))
        data = data[4 + size :]
    return found


def test_a_connection_says_hello_answers_notify_and_disconnects() -> None:
    async def handler(messages: list[spop.Message]) -> dict[str, spop.Value]:
        assert messages == [spop.Message("check", {"policy": "p", "body": b"x"})]
        return {"verdict": "block", "block": 1}

    async def exchange() -> bytes:
        hello = spop.kv({"supported-versions": "2.0", "max-frame-size": 16380, "capabilities": ""})
        args = spop._string("policy") + spop.encode_value("p")
        args += spop._string("body") + spop.encode_value(b"x")
        notify = spop._string("check") + bytes([2]) + args
        disconnect = spop.kv({"status-code": 0, "message": "bye"})
        reader = asyncio.StreamReader()
        reader.feed_data(spop.frame(spop.HAPROXY_HELLO, hello))
        reader.feed_data(spop.frame(spop.NOTIFY, notify, stream=5, frame_id=9))
        reader.feed_data(spop.frame(spop.HAPROXY_DISCONNECT, disconnect))
        reader.feed_eof()
        written = bytearray()

        class Writer:
            def write(self, data: bytes) -> None:
                written.extend(data)

            async def drain(self) -> None:
                return None

            def close(self) -> None:
                return None

        await spop.serve_connection(reader, Writer(), handler)  # type: ignore[arg-type]
        return bytes(written)

    frames = _frames(asyncio.run(exchange()))
    assert [f[0] for f in frames] == [spop.AGENT_HELLO, spop.ACK, spop.AGENT_DISCONNECT]
    hello = spop.Reader(frames[0][3]).kv_list()
    assert hello == {"version": "2.0", "max-frame-size": 16380, "capabilities": ""}
    _, stream, frame_id, payload = frames[1]
    assert (stream, frame_id) == (5, 9)
    expected = spop.set_vars({"verdict": "block", "block": 1})
    assert payload == expected
