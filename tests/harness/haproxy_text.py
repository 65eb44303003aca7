"""How HAProxy 2.6 reads the text we write: configuration lines into words, map lines into
key and value. Used by tests to compare what a rendered configuration *says* (its words),
not how it is spelled.

Configuration lines (checked on the real binary): words are separated by unquoted spaces and
tabs; `#` outside quotes starts a comment, even inside a word; `'...'` is literal; `"..."`
reads backslash escapes and expands `$NAME` / `${NAME}` (any other `$` is an error); outside
quotes a backslash escapes the next character; `\\r`, `\\n`, `\\t` and `\\xHH` stand for
those bytes, `\\` before another character is kept as is; quoted parts join the word they
touch (`a"b c"d` is one word).

Map lines: leading blanks skipped; a line whose first character is `#` is a comment; the key
runs to the first space or tab; blanks; the value runs to the end of the line, trailing
blanks and CR dropped; nothing is unescaped.
"""

from __future__ import annotations

import re

_ESCAPED = {"\\": "\\", " ": " ", "#": "#", '"': '"', "'": "'", "$": "$"}
_CONTROL_BYTES = {"r": "\r", "n": "\n", "t": "\t"}
_ENV_NAME = re.compile(r"\{?[A-Za-z_.][A-Za-z0-9_.]*", re.ASCII)


class HAProxySyntaxError(ValueError):
    """HAProxy would refuse this line (or expand an environment variable in it)."""


def words(line: str) -> list[str]:
    """The words HAProxy reads in one configuration line (comments dropped)."""
    result: list[str] = []
    current: list[str] | None = None
    quote = ""
    i = 0
    while i < len(line):
        char = line[i]
        if quote == "'":
            if char == "'":
                quote = ""
            else:
                assert current is not None
                current.append(char)
            i += 1
            continue
        if not quote and char in " \t":
            if current is not None:
                result.append("".join(current))
                current = None
            i += 1
            continue
        if not quote and char == "#":
            break
        if current is None:
            current = []
        if char in "'\"" and not quote:
            quote = char
        elif char == '"' and quote == '"':
            quote = ""
        elif char == "\\":
            i += 1
            current.append(_escape(line, i))
            if line[i : i + 1] == "x":
                i += 2
        elif char == "$" and quote == '"':
            name = _ENV_NAME.match(line, i + 1)
            raise HAProxySyntaxError(
                f"environment variable {name.group() if name else '(bad name)'} in {line!r}"
            )
        else:
            current.append(char)
        i += 1
    if quote:
        raise HAProxySyntaxError(f"unterminated {quote} in {line!r}")
    if current is not None:
        result.append("".join(current))
    return result


def _escape(line: str, i: int) -> str:
    nxt = line[i : i + 1]
    if not nxt:
        raise HAProxySyntaxError(f"a line ends with a backslash: {line!r}")
    if nxt in _ESCAPED:
        return _ESCAPED[nxt]
    if nxt in _CONTROL_BYTES:
        return _CONTROL_BYTES[nxt]
    if nxt == "x":
        digits = line[i + 1 : i + 3]
        if not re.fullmatch(r"[0-9A-Fa-f]{2}", digits):
            raise HAProxySyntaxError(f"bad \\x escape in {line!r}")
        return chr(int(digits, 16))
    return "\\" + nxt


def config_lines(text: str) -> list[list[str]]:
    """Every line of a configuration file as its words (empty for blank and comment lines)."""
    return [words(line) for line in text.split("\n")]


def map_line(line: str) -> tuple[str, str] | None:
    """The (key, value) HAProxy reads from one map file line; None for a blank or comment."""
    stripped = line.lstrip(" \t")
    if not stripped or line.startswith("#"):
        return None
    found = _MAP_LINE.fullmatch(stripped)
    assert found is not None
    return found.group(1), found.group(2).rstrip(" \t\r")


_MAP_LINE = re.compile(r"([^ \t]+)[ \t]*(.*)", re.DOTALL)
