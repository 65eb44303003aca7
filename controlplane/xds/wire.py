"""Protobuf wire-format pieces, so responses are assembled from bytes serialised once.

A serialised message is the concatenation of its fields in any order, so a response can be
put together from cached field encodings plus the few per-stream fields (the nonce).
"""


def varint(value: int) -> bytes:
    """The base-128 varint encoding of a non-negative integer."""
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (string, bytes or embedded message) with its tag."""
    return varint((number << 3) | 2) + varint(len(payload)) + payload


def text_field(number: int, text: str) -> bytes:
    """A string field; empty strings are omitted as proto3 does."""
    return field(number, text.encode()) if text else b""


def any_message(type_url: str, payload: bytes) -> bytes:
    """A serialised google.protobuf.Any holding an already serialised message."""
    return field(1, type_url.encode()) + field(2, payload)
