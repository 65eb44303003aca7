"""Writing values into HAProxy configuration text: quoting, log-format literals, names."""

from __future__ import annotations

import re

_SAFE_WORD = re.compile(r"^[A-Za-z0-9._/:=+*~!^@-]+$")

_DQ_ESCAPES = {"\\": "\\\\", '"': '\\"', "$": "\\$", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def dq(text: str) -> str:
    """`text` as one double-quoted configuration word, read back byte for byte."""
    out = []
    for char in text:
        if char in _DQ_ESCAPES:
            out.append(_DQ_ESCAPES[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\x{ord(char):02x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def word(text: str) -> str:
    """`text` as one configuration word: bare when it is plain, else double-quoted."""
    return text if _SAFE_WORD.match(text) else dq(text)


def regex_word(pattern: str) -> str:
    """A regular expression as one configuration word, anchored to match a whole value."""
    anchored = f"^(?:{pattern})$"
    if "'" not in anchored:
        return f"'{anchored}'"
    return dq(anchored)


def lf_literal(text: str) -> str:
    """`text` as a literal part of a log-format string ('%' doubled)."""
    return text.replace("%", "%%")


def hex_value(value: str) -> str:
    """What HAProxy's `hex` converter makes of `value`."""
    return value.encode().hex().upper()
