"""A regex of the model's dialect compiled to a program for the firewall's Lua engine.

The program is data: instructions a Pike VM in `lua/core.lua` runs over the bytes of a value,
in time linear in the value's length (no backtracking), the same on Envoy (LuaJIT) and HAProxy
(Lua 5.3). It answers one question: does the pattern match anywhere in the value.

Instructions (positions count from 1, as Lua does):

- `c<ranges>`: consume one byte in the ranges, written as pairs of two hex digits
  (`3039` is `0-9`);
- `s<a>:<b>`: go on at both `a` and `b`; `j<a>`: go on at `a`;
- `a<kind>`: a zero-width assertion: `A` start of the value, `z` its end, `Z` its end or
  before a final line feed, `^`/`$` start/end of a line, `b`/`B` a word boundary or none;
- `m`: a match.

Values are bytes: `.` and negated classes consume one byte, so a character beyond ASCII is
several (as PCRE reads it on HAProxy).
"""

from __future__ import annotations

import re
from re import _constants as sre  # type: ignore[attr-defined]
from re import _parser as sre_parse  # type: ignore[attr-defined]
from typing import Any

_WORD = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
_DIGIT = frozenset(b"0123456789")
_SPACE = frozenset(b" \t\n\r\f")
_ALL = frozenset(range(256))
_CATEGORIES = {
    sre.CATEGORY_DIGIT: _DIGIT,
    sre.CATEGORY_NOT_DIGIT: _ALL - _DIGIT,
    sre.CATEGORY_WORD: _WORD,
    sre.CATEGORY_NOT_WORD: _ALL - _WORD,
    sre.CATEGORY_SPACE: _SPACE,
    sre.CATEGORY_NOT_SPACE: _ALL - _SPACE,
}


def _caseless(chars: frozenset[int]) -> frozenset[int]:
    more = {c ^ 0x20 for c in chars if 65 <= c <= 90 or 97 <= c <= 122}
    return chars | more


def _ranges(chars: frozenset[int]) -> str:
    out = []
    ordered = sorted(chars)
    start = prev = ordered[0]
    for c in ordered[1:]:
        if c != prev + 1:
            out.append(f"{start:02x}{prev:02x}")
            start = c
        prev = c
    out.append(f"{start:02x}{prev:02x}")
    return "".join(out)


class _Builder:
    def __init__(self) -> None:
        self.code: list[list[Any]] = []

    def emit(self, *instruction: Any) -> int:
        self.code.append(list(instruction))
        return len(self.code)  # 1-based position of the instruction

    @property
    def next(self) -> int:
        return len(self.code) + 1

    def items(self, items: Any, flags: int) -> None:
        for op, av in items:
            self.node(op, av, flags)

    def chars(self, chars: frozenset[int], flags: int) -> None:
        if flags & re.IGNORECASE:
            chars = _caseless(chars)
        if not chars:
            raise ValueError("a character class that matches nothing")
        self.emit("c", _ranges(chars))

    def node(self, op: Any, av: Any, flags: int) -> None:
        if op is sre.LITERAL:
            self.chars(frozenset({av}), flags)
        elif op is sre.NOT_LITERAL:
            self.chars(_ALL - _caseless(frozenset({av})) if flags & re.I else _ALL - {av}, 0)
        elif op is sre.ANY:
            self.chars(_ALL if flags & re.DOTALL else _ALL - {10}, 0)
        elif op is sre.IN:
            self.chars(self.class_set(av, flags), 0)
        elif op is sre.BRANCH:
            self.branch(av[1], flags)
        elif op is sre.SUBPATTERN:
            _, add, remove, pattern = av
            self.items(pattern, (flags | add) & ~remove)
        elif op in (sre.MAX_REPEAT, sre.MIN_REPEAT):
            low, high, item = av
            self.repeat(low, high, item, flags)
        elif op is sre.AT:
            self.emit("a", self.anchor(av, flags))
        else:
            raise ValueError(f"the firewall's engine does not run {op}")

    def class_set(self, items: Any, flags: int) -> frozenset[int]:
        chars: set[int] = set()
        negate = False
        for op, av in items:
            if op is sre.NEGATE:
                negate = True
            elif op is sre.LITERAL:
                chars.add(av)
            elif op is sre.RANGE:
                chars.update(range(av[0], av[1] + 1))
            elif op is sre.CATEGORY:
                chars |= _CATEGORIES[av]
            else:
                raise ValueError(f"the firewall's engine does not run {op} in a class")
        found = frozenset(chars)
        if flags & re.IGNORECASE:
            found = _caseless(found)
        return _ALL - found if negate else found

    def branch(self, alternatives: Any, flags: int) -> None:
        jumps = []
        for index, alternative in enumerate(alternatives):
            if index < len(alternatives) - 1:
                split = self.emit("s", 0, 0)
                self.code[split - 1][1] = self.next
                self.items(alternative, flags)
                jumps.append(self.emit("j", 0))
                self.code[split - 1][2] = self.next
            else:
                self.items(alternative, flags)
        for jump in jumps:
            self.code[jump - 1][1] = self.next

    def repeat(self, low: int, high: int, item: Any, flags: int) -> None:
        for _ in range(low):
            self.items(item, flags)
        if high == sre.MAXREPEAT:
            loop = self.emit("s", 0, 0)
            self.code[loop - 1][1] = self.next
            self.items(item, flags)
            self.emit("j", loop)
            self.code[loop - 1][2] = self.next
            return
        splits = []
        for _ in range(high - low):
            split = self.emit("s", 0, 0)
            self.code[split - 1][1] = self.next
            splits.append(split)
            self.items(item, flags)
        for split in splits:
            self.code[split - 1][2] = self.next

    @staticmethod
    def anchor(at: Any, flags: int) -> str:
        multiline = bool(flags & re.MULTILINE)
        kinds = {
            sre.AT_BEGINNING: "^" if multiline else "A",
            sre.AT_BEGINNING_STRING: "A",
            sre.AT_END: "$" if multiline else "Z",
            sre.AT_END_STRING: "z",
            sre.AT_BOUNDARY: "b",
            sre.AT_NON_BOUNDARY: "B",
        }
        if at not in kinds:
            raise ValueError(f"the firewall's engine does not run {at}")
        return kinds[at]


def compile_program(pattern: str, caseless: bool = False) -> str:
    """The program of `pattern` (a regex the model accepted), matching anywhere in a value;
    `caseless` makes it case-insensitive (ASCII letters)."""
    parsed = sre_parse.parse(pattern, re.IGNORECASE if caseless else 0)
    builder = _Builder()
    builder.items(parsed, parsed.state.flags)
    builder.emit("m")
    return " ".join(f"{op}{':'.join(str(arg) for arg in args)}" for op, *args in builder.code)
