"""Writing values into HAProxy's text formats: configuration words, map lines, addresses.

HAProxy 2.6 splits a configuration line into words at unquoted spaces and tabs; `#` starts a
comment anywhere outside quotes; `'...'` is literal; `"..."` reads backslash escapes (`\\\\`,
`\\"`, `\\$`, `\\n`, `\\xHH`, ...) and expands `$NAME` and `${NAME}`; outside quotes a
backslash escapes the next character. Every value from the model is written through `word`
(or `dq`, `regex_word`, `acl_exact`), so it stays one word with exactly its own text.

The templates (`controlplane.haproxy.templating`) pass every value they interpolate through
`word`, except `Raw` text: configuration text that is already quoted. Raw text is made here
only: by the quoting functions, and by `Raw(...) % values`, which quotes each value with `word`
unless it is Raw already (as markupsafe's Markup escapes). Elsewhere `Raw` is only ever called
on a string literal (a test checks it), so no value becomes configuration text unquoted.
A `Runtime` value is one the runtime API can change (a server's address or weight).

A map file line is a key (up to the first space or tab, after leading blanks), blanks, and a
value running to the end of the line with trailing blanks and CR dropped; a line starting with
`#` is a comment; nothing is unescaped. `map_entry` refuses what would not read back.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from ..model.types import HostPort

RESOLVERS = "system"
"""The resolvers section servers given by host name are found through (`parse-resolv-conf`)."""

_SAFE_WORD = re.compile(r"[A-Za-z0-9!%&()*+,./:;<=>?@\[\]^_`|~-]+", re.ASCII)
"""Printable ASCII that HAProxy reads literally outside quotes: no space, quote, backslash,
'#', '$' or brace ('{' and '}' alone are ACL delimiters)."""


class Raw(str):
    """HAProxy configuration text that is already quoted: the templates emit it as it is."""

    __slots__ = ()

    def __mod__(self, values: object) -> Raw:
        """This text with each `%s` replaced by a value, quoted by `word` unless Raw."""
        items = values if isinstance(values, tuple) else (values,)
        return Raw(str.__mod__(self, tuple(quoted(v) for v in items)))

    def join(self, parts: Iterable[object]) -> Raw:
        """The parts, each quoted by `word` unless Raw, with this text between them."""
        return Raw(str.join(self, (quoted(p) for p in parts)))


class Runtime(str):
    """A value the runtime API can change (a server's address or weight): the templates
    emit it quoted, or masked when they render the configuration's skeleton."""

    __slots__ = ()


def quoted(value: object) -> Raw:
    """`value` as configuration text: Raw text as it is, anything else through `word`."""
    return value if isinstance(value, Raw) else word(str(value))


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_DQ_ESCAPES = {"\\": "\\\\", '"': '\\"', "$": "\\$", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escaped(text: str) -> str:
    out = []
    for char in text:
        if char in _DQ_ESCAPES:
            out.append(_DQ_ESCAPES[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\x{ord(char):02x}")
        else:
            out.append(char)
    return "".join(out)


def dq(text: str) -> Raw:
    """`text` as one double-quoted configuration word, read back byte for byte."""
    return Raw('"' + _escaped(text) + '"')


def word(text: str) -> Raw:
    """`text` as one configuration word: bare when it is plain, else double-quoted."""
    return Raw(text) if _SAFE_WORD.fullmatch(text) else dq(text)


def regex_word(pattern: str) -> Raw:
    """A regular expression as one configuration word, anchored to match a whole value."""
    anchored = f"^(?:{pattern})$"
    if "'" not in anchored and not _CONTROL.search(anchored):
        return Raw(f"'{anchored}'")
    return dq(anchored)


def acl_exact(text: str) -> Raw:
    """The pattern words of an ACL matching exactly `text`: `--` first, so that a value
    starting with '-' is not read as an ACL flag."""
    return Raw(f"-- {dq(text)}")


def comment(text: str) -> Raw:
    """`text` for the rest of a comment line: as it is, but for control characters (a line
    break would end the comment), which are written as in `dq`. Only after `#`."""
    return Raw(_escaped(text) if _CONTROL.search(text) else text)


def lf_literal(text: str) -> str:
    """`text` as a literal part of a log-format string ('%' doubled)."""
    return text.replace("%", "%%")


def hex_value(value: str) -> str:
    """What HAProxy's `hex` converter makes of `value`."""
    return value.encode().hex().upper()


def address(parts: HostPort) -> str:
    """A server or bind address from its parts: `10.0.0.1:80`, `[::1]:80`, `api:80`."""
    ip = parts.ip
    if ip is None:
        return f"{parts.host}:{parts.port}"
    if ip.version == 6:
        return f"[{ip.compressed}]:{parts.port}"
    return f"{ip}:{parts.port}"


_MAP_KEY = re.compile(r"[^\s#]\S*", re.ASCII)
_MAP_VALUE = re.compile(r"(\S([^\r\n]*\S)?)?", re.ASCII)


def map_entry(key: str, value: str) -> str:
    """One map file line (without its newline) that HAProxy reads back as `key` and `value`.

    ValueError when it cannot: a key with a blank or starting with '#', a value with leading
    or trailing blanks or a line break (the model refuses such values).
    """
    if not _MAP_KEY.fullmatch(key) or not _MAP_VALUE.fullmatch(value):
        raise ValueError(f"cannot write map entry {key!r} -> {value!r}")
    return f"{key} {value}"
