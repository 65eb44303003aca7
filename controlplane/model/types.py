"""Value types shared by the model: names, addresses, durations, header names."""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
)
from pydantic import BaseModel as _BaseModel

NAME_PATTERN = r"^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$"
HEADER_NAME_PATTERN = r"^[a-zA-Z0-9!#$&'*+.^_`|~-]+$"


class Model(_BaseModel):
    """Base of every model object: unknown fields are errors, objects are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


Name = Annotated[
    str,
    Field(
        pattern=NAME_PATTERN,
        description="Lower-case letters, digits, '.', '_' and '-'; at most 63 characters.",
    ),
]

HeaderName = Annotated[
    str,
    Field(pattern=HEADER_NAME_PATTERN, max_length=128),
    AfterValidator(str.lower),
]

# Header values are sent as they are written: no control characters, and no '%', which both
# proxies would read as the start of a dynamic expression.
HeaderValue = Annotated[str, Field(pattern=r"^[^\x00-\x1f\x7f%]*$", max_length=4096)]


def _split_host_port(text: str) -> tuple[str, int]:
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        if not sep:
            raise ValueError("expected '[ipv6]:port'")
    else:
        host, sep, port = text.rpartition(":")
        if not sep or not host:
            raise ValueError("expected 'host:port'")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"port must be a number from 1 to 65535, not {port!r}")
    return host, int(port)


_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*$"
)


def _check_address(text: str) -> str:
    host, _ = _split_host_port(text)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not _HOSTNAME.match(host):
            raise ValueError(f"{host!r} is neither an IP address nor a host name") from None
    return text


def _check_bind_address(text: str) -> str:
    host, _ = _split_host_port(text)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"a listener binds an IP address, not {host!r}") from None
    return text


def split_address(address: str) -> tuple[str, int]:
    """The host and port of a validated `host:port` or `[ipv6]:port` address."""
    return _split_host_port(address)


Address = Annotated[
    str,
    AfterValidator(_check_address),
    WithJsonSchema({"type": "string", "description": "host:port or [ipv6]:port"}),
]
BindAddress = Annotated[
    str,
    AfterValidator(_check_bind_address),
    WithJsonSchema({"type": "string", "description": "ip:port or [ipv6]:port to listen on"}),
]

_DURATION = re.compile(r"^(\d+)(ms|s|m|h)$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}


def _parse_duration(value: Any) -> Any:
    if isinstance(value, str):
        match = _DURATION.match(value.strip())
        if not match:
            raise ValueError(
                f"expected a duration such as '250ms', '5s', '1m' or '2h', not {value!r}"
            )
        return int(match.group(1)) * _UNIT_MS[match.group(2)]
    raise ValueError("expected a duration string with a unit, such as '250ms', '5s' or '1m'")


def format_duration(ms: int) -> str:
    """The shortest exact text for a number of milliseconds: '2h', '90s', '250ms'."""
    for unit in ("h", "m", "s"):
        if ms and ms % _UNIT_MS[unit] == 0:
            return f"{ms // _UNIT_MS[unit]}{unit}"
    return f"{ms}ms"


Duration = Annotated[
    int,
    BeforeValidator(_parse_duration),
    Field(ge=1, le=86_400_000),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": _DURATION.pattern,
            "description": "A duration: a whole number with a unit ms, s, m or h.",
        }
    ),
]
"""A positive duration, held in milliseconds and written as '250ms', '5s', '1m' or '2h'."""
