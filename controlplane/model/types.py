"""Value types shared by the model, each defined by what it may contain.

Every string field of the model has one of these types (or `Regex`, in `regex.py`): names,
header names and values, URL paths, host names, domains, addresses, media types, bodies.
Each is a full match over an explicit (ASCII unless said otherwise) set of characters, so no
value can carry a line break, a quote or a comment marker into the text a proxy reads,
unless its type allows it and every compiler writes it quoted.

`Model`, the base of every model object, also refuses control characters in any string it
holds, whatever the field's type, so a field added later cannot let one through: fields a
class names in `multiline_fields` may hold tab, line feed and carriage return (PEM text, a
response body), never another control character.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterator
from typing import Annotated, Any, ClassVar, Literal, NamedTuple, TypeVar

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic import BaseModel as _BaseModel

# -- control characters ---------------------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_CONTROL_BUT_LINE_BREAKS = re.compile(
    r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]"
)


def shown(text: str, limit: int = 40) -> str:
    """`text` quoted for an error message: escapes visible, long values cut."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


def control_character_problem(text: str, line_breaks: bool = False) -> str | None:
    """Why `text` cannot be held by a model string, or None: C0 and C1 control characters,
    DEL, Unicode line separators and lone surrogates are refused (with `line_breaks`, tab,
    line feed and carriage return are allowed)."""
    found = (_CONTROL_BUT_LINE_BREAKS if line_breaks else _CONTROL).search(text)
    if found is None:
        return None
    char = found.group()
    what = "a lone surrogate" if "\ud800" <= char <= "\udfff" else "a control character"
    return f"must not contain {what} (U+{ord(char):04X} at position {found.start()})"


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            if isinstance(item, str):
                yield item
            elif isinstance(item, _CONTAINERS):
                yield from _strings(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(key)
            yield from _strings(item)


_CONTAINERS = (list, tuple, set, frozenset, dict)
"""What `_strings` looks into (a model object was checked when it was made)."""


class Model(_BaseModel):
    """Base of every model object: unknown fields are errors, objects are immutable, and no
    string holds a control character (`multiline_fields` may hold tab, LF and CR)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    multiline_fields: ClassVar[frozenset[str]] = frozenset()

    @field_validator("*", mode="after")
    @classmethod
    def _no_control_characters(cls, value: Any, info: ValidationInfo) -> Any:
        line_breaks = info.field_name in cls.multiline_fields
        for text in _strings(value):
            problem = control_character_problem(text, line_breaks)
            if problem:
                raise ValueError(problem)
        return value


M = TypeVar("M", bound=Model)


def model_check(check: Callable[[M], M]) -> Any:
    """A model validator: `check(obj)` runs on each object made from data (it returns the
    object or raises ValueError). A model object passed where one is expected is taken as it
    is: it was checked when it was made and cannot have changed (a config of ten thousand
    routes is not checked again route by route when one changes)."""

    def wrap(cls: type[M], value: Any, handler: ValidatorFunctionWrapHandler) -> M:
        if isinstance(value, cls):
            return value
        return check(handler(value))

    wrap.__name__ = check.__name__
    return model_validator(mode="wrap")(classmethod(wrap))  # type: ignore[arg-type]


def _without_controls(value: str) -> str:
    problem = control_character_problem(value)
    if problem:
        raise ValueError(problem)
    return value


Method = Literal["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"]
"""Methods a route can match; CONNECT opens a tunnel rather than asking for a path."""

# -- names and tokens -----------------------------------------------------------------------

NAME_PATTERN = r"^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$"
HEADER_NAME_PATTERN = r"^[A-Za-z0-9!&*+.^_`|~-]+$"

Name = Annotated[
    str,
    Field(
        pattern=NAME_PATTERN,
        description="Lower-case letters, digits, '.', '_' and '-'; at most 63 characters.",
    ),
]

HeaderName = Annotated[
    str,
    Field(
        pattern=HEADER_NAME_PATTERN,
        max_length=128,
        description="An HTTP field name (RFC 9110 token) without '#', '$' or \"'\": letters, "
        "digits and ! & * + - . ^ _ ` | ~; at most 128 characters; compared in lower case.",
    ),
    AfterValidator(str.lower),
]

MatchName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9!$'()*+./:<>?@\[\]^_`{|}~-]+$",
        description="The name of a header, query parameter or cookie: visible ASCII except "
        "'\"', '#', '%', '&', ',', ';', '=' and '\\'; at most 128 characters.",
    ),
]


def _check_header_value(value: str) -> str:
    _without_controls(value)
    if "%" in value:
        raise ValueError("a header value must not contain '%' (both proxies read it as a format)")
    if value != value.strip(" "):
        raise ValueError("a header value has no leading or trailing whitespace (RFC 9110)")
    return value


HeaderValue = Annotated[
    str,
    Field(max_length=4096),
    AfterValidator(_check_header_value),
    WithJsonSchema(
        {
            "type": "string",
            "maxLength": 4096,
            "pattern": r"^([^\x00-\x20\x7f%]([^\x00-\x1f\x7f%]*[^\x00-\x20\x7f%])?)?$",
            "description": "Literal text, at most 4096 characters: no control character, no "
            "'%', no leading or trailing whitespace.",
        }
    ),
]
"""A header value sent as written: no control characters, no '%' (both proxies would read it
as the start of a dynamic expression), and no leading or trailing whitespace, which HTTP
strips (RFC 9110) and HAProxy's map files would lose."""

# -- URL paths ------------------------------------------------------------------------------

_PCHARS = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:@"
)
"""RFC 3986 `pchar` but for %XX escapes: unreserved, sub-delims, ':' and '@'."""
_HEX = frozenset("0123456789ABCDEFabcdef")
_PCHAR = r"[A-Za-z0-9._~!$&'()*+,;=:@-]|%[0-9A-Fa-f]{2}"
URL_PATH_PATTERN = rf"^/({_PCHAR}|/)*$"
HEALTH_CHECK_PATH_PATTERN = rf"^/({_PCHAR}|/)*(\?({_PCHAR}|[/?])*)?$"
COOKIE_PATH_PATTERN = r"^/([A-Za-z0-9._~!$&'()*+,=:@/-]|%[0-9A-Fa-f]{2})*$"
_PATH_CHARS = "letters, digits, - . _ ~ ! $ & ' ( ) * + , ; = : @ / and %XX escapes"


def _path_problem(value: str, chars: frozenset[str], query: bool) -> str | None:
    if not value.startswith("/"):
        return f"must start with '/', not {shown(value)}"
    in_query = False
    for position, char in enumerate(value):
        if char == "%":
            if not set(value[position + 1 : position + 3]) <= _HEX or position + 3 > len(value):
                return f"'%' at position {position} does not start a %XX escape"
        elif char == "?" and query and not in_query:
            in_query = True
        elif char not in chars and char != "/" and not (in_query and char == "?"):
            allowed = _PATH_CHARS if ";" in chars else _PATH_CHARS.replace(" ;", "")
            return f"{shown(char)} at position {position} is not one of {allowed}"
    return None


def _path_type(what: str, pattern: str, query: bool, description: str) -> Any:
    """A URL path type: the characters of `pattern`, with a message naming the first one that
    does not fit."""
    chars = _PCHARS - {";"} if ";" not in pattern else _PCHARS

    def check(value: str) -> str:
        problem = _path_problem(value, chars, query)
        if problem:
            raise ValueError(f"{what}: {problem}")
        return value

    return Annotated[
        str,
        Field(max_length=1024),
        AfterValidator(check),
        WithJsonSchema(
            {"type": "string", "maxLength": 1024, "pattern": pattern, "description": description}
        ),
    ]


UrlPath = _path_type(
    "a URL path",
    URL_PATH_PATTERN,
    query=False,
    description=f"A URL path: '/' then {_PATH_CHARS} (RFC 3986); no query, no fragment; at "
    "most 1024 characters.",
)
HealthCheckPath = _path_type(
    "a health check path",
    HEALTH_CHECK_PATH_PATTERN,
    query=True,
    description="A URL path as for routes, optionally followed by '?' and a query of the same "
    "characters plus '/' and '?'; no fragment, quotes, spaces or backslashes; at most 1024 "
    "characters.",
)
CookiePath = _path_type(
    "a cookie path",
    COOKIE_PATH_PATTERN,
    query=False,
    description="A cookie's Path attribute: a URL path as for routes, without ';' (RFC 6265).",
)

# -- host names, domains, addresses ---------------------------------------------------------

_LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
_LABEL_ANY_CASE = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
HOST_NAME_PATTERN = rf"^{_LABEL_ANY_CASE}(\.{_LABEL_ANY_CASE})*$"
DOMAIN_PATTERN = rf"^(\*|(\*\.)?{_LABEL}(\.{_LABEL})*)$"
SERVER_NAME_PATTERN = rf"^(\*\.)?{_LABEL}(\.{_LABEL})*$"

HostName = Annotated[
    str,
    Field(
        pattern=HOST_NAME_PATTERN,
        max_length=253,
        description="A host name (RFC 1123): dot-separated labels of letters, digits and '-', "
        "each at most 63 characters, not starting or ending with '-'; at most 253 characters.",
    ),
]

Domain = Annotated[
    str,
    Field(
        pattern=DOMAIN_PATTERN,
        max_length=253,
        description="A lower-case host name (RFC 1123 labels), '*.suffix' or '*'.",
    ),
]

ServerName = Annotated[
    str,
    Field(
        pattern=SERVER_NAME_PATTERN,
        max_length=253,
        description="A lower-case host name (RFC 1123 labels) or '*.suffix' (one or more labels).",
    ),
]

ORIGIN_PATTERN = rf"^[a-z][a-z0-9+.-]{{0,15}}://{_LABEL}(\.{_LABEL})*(:[1-9][0-9]{{0,4}})?$"

Origin = Annotated[
    str,
    Field(
        pattern=ORIGIN_PATTERN,
        max_length=300,
        description="A web origin as a browser sends it: a lower-case scheme, '://', a "
        "lower-case host name or IPv4 address, optionally ':port' "
        "(https://www.example.com:8443).",
    ),
]

_PORT = re.compile(r"[1-9][0-9]{0,4}", re.ASCII)
_IPV4 = re.compile(r"[0-9]{1,3}(\.[0-9]{1,3}){3}", re.ASCII)
_IPV6 = re.compile(r"[0-9A-Fa-f:.]+", re.ASCII)
_HOST_NAME = re.compile(HOST_NAME_PATTERN.strip("^$"), re.ASCII)
_NUMBER_LIKE = re.compile(
    r"(0[xX][0-9A-Fa-f]*|[0-9]+)(\.(0[xX][0-9A-Fa-f]*|[0-9]+)){0,3}", re.ASCII
)
"""What the C library's inet_aton reads as an IPv4 address (`1.2.3`, `0x7f000001`)."""


class HostPort(NamedTuple):
    """A parsed address: `host` is an IP address (IPv6 without brackets) or a host name."""

    host: str
    port: int

    @property
    def ip(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
        """The IP address of `host`, None for a host name."""
        try:
            return ipaddress.ip_address(self.host)
        except ValueError:
            return None


def _parse_host(host: str, bracketed: bool) -> None:
    if bracketed:
        if "%" in host:
            raise ValueError(f"IPv6 zone ids are not supported: {shown(host)}")
        if not _IPV6.fullmatch(host):
            raise ValueError(f"{shown(host)} is not an IPv6 address")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{shown(host)} is not an IPv6 address") from None
        return
    if ":" in host:
        raise ValueError("an IPv6 address is written in brackets, as in [::1]:8080")
    if _IPV4.fullmatch(host):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise ValueError(f"{shown(host)} is not an IPv4 address") from None
        return
    if len(host) > 253 or not _HOST_NAME.fullmatch(host) or _NUMBER_LIKE.fullmatch(host):
        raise ValueError(
            f"{shown(host)} is neither an IP address nor a host name (RFC 1123: letters, "
            "digits and '-' in dot-separated labels)"
        )


def split_address(address: str) -> HostPort:
    """The host and port of `host:port` or `[ipv6]:port`; ValueError says what is wrong.

    The port is 1 to 65535 in ASCII digits without leading zeros; the host an IPv4 address
    (dotted quad), an IPv6 address in brackets (no zone id) or an RFC 1123 host name that
    does not read as a number.
    """
    if address.startswith("["):
        host, sep, port = address[1:].partition("]:")
        if not sep:
            raise ValueError("expected '[ipv6]:port'")
    else:
        host, sep, port = address.rpartition(":")
        if not sep or not host:
            raise ValueError("expected 'host:port'")
    if not _PORT.fullmatch(port) or int(port) > 65535:
        raise ValueError(f"port must be a number from 1 to 65535, not {shown(port)}")
    _parse_host(host, bracketed=address.startswith("["))
    return HostPort(host, int(port))


def _check_address(text: str) -> str:
    split_address(_without_controls(text))
    return text


def _check_bind_address(text: str) -> str:
    if split_address(_without_controls(text)).ip is None:
        raise ValueError(f"a listener binds an IP address, not {shown(text)}")
    return text


Address = Annotated[
    str,
    AfterValidator(_check_address),
    WithJsonSchema(
        {
            "type": "string",
            "description": "host:port or [ipv6]:port: an IPv4 address, an IPv6 address in "
            "brackets (no zone id) or an RFC 1123 host name; a port from 1 to 65535.",
        }
    ),
]
BindAddress = Annotated[
    str,
    AfterValidator(_check_bind_address),
    WithJsonSchema(
        {
            "type": "string",
            "description": "ip:port or [ipv6]:port to listen on (no zone id); a port from 1 "
            "to 65535.",
        }
    ),
]

# -- media types and bodies -----------------------------------------------------------------

_MEDIA_NAME = r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
MEDIA_TYPE_PATTERN = rf"^{_MEDIA_NAME}/{_MEDIA_NAME}(; ?{_MEDIA_NAME}={_MEDIA_NAME})*$"

MediaType = Annotated[
    str,
    Field(
        pattern=MEDIA_TYPE_PATTERN,
        max_length=256,
        description="A media type (RFC 6838 names), e.g. 'text/plain' or "
        "'text/html; charset=utf-8'.",
    ),
]

MAX_BODY_BYTES = 4096
"""Envoy's default `max_direct_response_body_size_bytes`."""


def _check_body(body: str) -> str:
    size = len(body.encode("utf-8", "surrogatepass"))
    if size > MAX_BODY_BYTES:
        raise ValueError(
            f"a body is at most {MAX_BODY_BYTES} bytes of UTF-8 (Envoy's direct response "
            f"limit), not {size}"
        )
    return body


ResponseBody = Annotated[
    str,
    AfterValidator(_check_body),
    WithJsonSchema(
        {
            "type": "string",
            "description": f"UTF-8 text of at most {MAX_BODY_BYTES} bytes; may hold tabs and "
            "line breaks, no other control character.",
        }
    ),
]

# -- durations ------------------------------------------------------------------------------

_DURATION = re.compile(r"([0-9]{1,9})(ms|s|m|h)", re.ASCII)
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}
MAX_DURATION_MS = 86_400_000
NO_TIMEOUT = 0
"""A `Timeout` of zero: no timeout at all (written `none`, or any zero duration)."""


def _parse_duration(value: Any) -> Any:
    if isinstance(value, str):
        match = _DURATION.fullmatch(value)
        if not match:
            raise ValueError(
                f"expected a duration such as '250ms', '5s', '1m' or '2h', not {shown(value)}"
            )
        return int(match.group(1)) * _UNIT_MS[match.group(2)]
    raise ValueError("expected a duration string with a unit, such as '250ms', '5s' or '1m'")


def _parse_timeout(value: Any) -> Any:
    return NO_TIMEOUT if value == "none" else _parse_duration(value)


def _in_range(low: int) -> Any:
    def check(ms: int) -> int:
        if ms < low:
            raise ValueError(f"must be at least {format_duration(low)}")
        if ms > MAX_DURATION_MS:
            raise ValueError(f"must be at most {format_duration(MAX_DURATION_MS)}")
        return ms

    return check


def format_duration(ms: int) -> str:
    """The shortest exact text for a number of milliseconds: '2h', '90s', '250ms' ('0s')."""
    if ms == 0:
        return "0s"
    for unit in ("h", "m", "s"):
        if ms % _UNIT_MS[unit] == 0:
            return f"{ms // _UNIT_MS[unit]}{unit}"
    return f"{ms}ms"


def _format_timeout(ms: int) -> str:
    return "none" if ms == NO_TIMEOUT else format_duration(ms)


def duration_field(default_ms: int, description: str | None = None) -> Any:
    """A duration field whose default the JSON Schema shows as users write it ('15s')."""
    shown_default = _format_timeout(default_ms)
    return Field(default_ms, description=description, json_schema_extra={"default": shown_default})


Duration = Annotated[
    int,
    BeforeValidator(_parse_duration),
    AfterValidator(_in_range(1)),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": f"^{_DURATION.pattern}$",
            "description": "A duration: a whole number (ASCII digits) with a unit ms, s, m or h; "
            "from 1ms to 24h.",
        }
    ),
]
"""A positive duration, held in milliseconds and written as '250ms', '5s', '1m' or '2h'."""

Timeout = Annotated[
    int,
    BeforeValidator(_parse_timeout),
    AfterValidator(_in_range(0)),
    PlainSerializer(_format_timeout, return_type=str),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": f"^({_DURATION.pattern}|none)$",
            "description": "A duration as for other durations, or 'none' (or any zero duration, "
            "'0s'): no timeout at all; at most 24h.",
        }
    ),
]
"""A duration that may be zero (`none`: no timeout), held in milliseconds."""
