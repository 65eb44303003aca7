"""The regular-expression dialect both proxies accept: RE2 (Envoy) ∩ PCRE2 (HAProxy).

A pattern is printable ASCII and is read the same way by RE2, PCRE2 and Python (which the
HAProxy renderer uses to tell which exact paths a regex route also takes):

- no lookaround, backreferences, atomic groups, conditionals, comments or possessive
  quantifiers (RE2 has none);
- inline flags only `i`, `m` and `s`, as `(?ims)`, `(?-i)` or `(?i:...)` (RE2 has no `x`;
  `a`, `L`, `u` are Python's own); both compilers anchor the pattern to the whole value and
  no request value holds a line break, so `m` and `s` change nothing but are harmless;
- escapes: `\\d \\D \\w \\W \\s \\S \\b \\B \\A`, `\\n \\r \\t \\f`, `\\xHH` up to `\\x7F`, and a
  backslash before punctuation; no `\\Z`, `\\v` (PCRE reads it as any vertical space), digit
  escapes or `\\u` (RE2 refuses them); a `[` inside a class is written `\\[` (RE2 and PCRE
  read `[:alpha:]` as a POSIX class, Python does not); `{` starts a counted repeat or is
  written `\\{` (`{,n}` means a repeat to Python only);
- counted repeats at most 1000, and nested ones multiplying to at most 1000
  (`(a{100}){100}` is refused, as RE2 refuses it);
- a compiled RE2 program within what Envoy is configured to accept (`RE2_MAX_PROGRAM_SIZE`),
  estimated from above: `[a-z]{1000}` fits ten times, `[a-z]{1000}` eleven times does not.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Annotated

from pydantic import AfterValidator, Field

RE2_MAX_REPEAT = 1000
RE2_MAX_PROGRAM_SIZE = 10_000
"""The RE2 program size Envoy accepts (its `re2.max_program_size.error_level` runtime key,
which `envoy-bootstrap` sets); Envoy's default of 100 refuses a long exact value inside a
cookie condition already, and HAProxy (PCRE2) has no such limit."""
_PROGRAM_HEADROOM = 200
"""Instructions kept free for what Envoy adds around a pattern: the framing of a cookie
condition (about 150 for a cookie name of 128 characters) and the program's own start."""

_FLAGS = frozenset("ims")
_GROUP_OPENERS = {
    "(?=": "lookahead",
    "(?!": "negative lookahead",
    "(?<=": "lookbehind",
    "(?<!": "negative lookbehind",
    "(?>": "atomic group",
    "(?(": "conditional",
    "(?P=": "backreference",
    "(?#": "comment group",
}
_ANCHOR_ESCAPES = frozenset("bBA")
_LITERAL_ESCAPES = {"n": 10, "r": 13, "t": 9, "f": 12}
_ASCII = frozenset(range(128))
_DIGITS = frozenset(range(48, 58))
_WORD = _DIGITS | frozenset(range(65, 91)) | frozenset(range(97, 123)) | {95}
_SPACE = frozenset({9, 10, 12, 13, 32})
_CLASS_ESCAPES = {"d": _DIGITS, "w": _WORD, "s": _SPACE}
_ABOVE_ASCII = 128
"""Stands for every character above ASCII in a character set (one range to RE2)."""
_EVERYTHING = _ASCII | {_ABOVE_ASCII}


class _Unportable(ValueError):
    """The pattern is valid for Python but not read alike by both proxies."""


@dataclass
class _Piece:
    """What a parsed part of a pattern costs: RE2 instructions, and the largest product of
    counted repeats nested in it."""

    size: int
    repeats: int = 1


@dataclass
class _Parser:
    pattern: str
    at: int = 0
    flags: set[str] = field(default_factory=set)

    def peek(self, count: int = 1) -> str:
        return self.pattern[self.at : self.at + count]

    def alternation(self) -> _Piece:
        branches = [self.sequence()]
        while self.peek() == "|":
            self.at += 1
            branches.append(self.sequence())
        return _Piece(
            sum(b.size for b in branches) + len(branches) - 1, max(b.repeats for b in branches)
        )

    def sequence(self) -> _Piece:
        pieces: list[_Piece] = []
        while self.at < len(self.pattern) and self.peek() not in "|)":
            pieces.append(self.quantified(self.atom()))
        return _Piece(sum(p.size for p in pieces), max((p.repeats for p in pieces), default=1))

    def atom(self) -> _Piece:
        char = self.peek()
        if char == "(":
            return self.group()
        if char == "[":
            return _Piece(_ranges(self.char_class(), "i" in self.flags))
        if char == "\\":
            return self.escape()
        if char == "{":
            raise _Unportable(r"write \{ for a literal '{' (Python reads {,n} as a repeat)")
        self.at += 1
        if char == ".":
            return _Piece(1 if "s" in self.flags else 2)
        return _Piece(1)

    def group(self) -> _Piece:
        for opener, what in _GROUP_OPENERS.items():
            if self.pattern.startswith(opener, self.at):
                raise _Unportable(f"{what} ({opener}) is not supported by Envoy (RE2)")
        self.at += 1
        outer = set(self.flags)
        capture = 2
        if self.peek() == "?":
            self.at += 1
            if self.peek(2) == "P<" or self.peek() == "<":
                self.at = self.pattern.index(">", self.at) + 1
            else:
                capture = 0
                if self.set_flags():
                    return _Piece(0)
        inner = self.alternation()
        self.at += 1  # ")"
        self.flags = outer
        return _Piece(inner.size + capture, inner.repeats)

    def set_flags(self) -> bool:
        """Read `ims-ims` after `(?`; True for a `(?flags)` group, which sets them for the
        rest of the enclosing group, False for `(?flags:` or `(?:`."""
        start = self.at
        while self.at < len(self.pattern) and self.peek() not in (":", ")"):
            self.at += 1
        text = self.pattern[start : self.at]
        on, _, off = text.partition("-")
        for flag in on + off:
            if flag not in _FLAGS:
                raise _Unportable(
                    f"inline flag (?{flag}) is not supported by both Envoy (RE2) and HAProxy "
                    "(PCRE); use i, m or s"
                )
        self.flags |= set(on)
        self.flags -= set(off)
        closing = self.peek() == ")"
        self.at += 1
        return closing

    def escape(self) -> _Piece:
        letter = self.peek(2)[1:]
        if letter in _ANCHOR_ESCAPES:
            self.at += 2
            return _Piece(1)
        return _Piece(_ranges(self.escape_set(), "i" in self.flags))

    def escape_set(self) -> frozenset[int]:
        """The characters an escape (outside an anchor) stands for; moves past it."""
        letter = self.peek(2)[1:]
        self.at += 2
        if not letter:
            raise ValueError("a pattern ends with a backslash")
        if letter.lower() in _CLASS_ESCAPES:
            chars = _CLASS_ESCAPES[letter.lower()]
            return chars if letter.islower() else _EVERYTHING - chars
        if letter in _LITERAL_ESCAPES:
            return frozenset({_LITERAL_ESCAPES[letter]})
        if letter == "x":
            code = int(self.pattern[self.at : self.at + 2], 16)
            self.at += 2
            if code > 0x7F:
                raise _Unportable(
                    r"\x escapes above \x7F mean a character to Envoy (RE2) and a byte to "
                    "HAProxy (PCRE); regexes are ASCII"
                )
            return frozenset({code})
        if letter == "Z":
            raise _Unportable(r"\Z is not portable between Envoy and HAProxy (use $)")
        if letter.isdigit():
            raise _Unportable(
                "backreferences and octal escapes are not supported by Envoy (RE2); "
                r"write \xHH for a character"
            )
        if letter == "v":
            raise _Unportable(
                r"\v is a vertical tab to Envoy (RE2) and any vertical space to HAProxy (PCRE)"
            )
        if letter.isalnum():
            raise _Unportable(f"\\{letter} is not read alike by Envoy (RE2) and HAProxy (PCRE)")
        return frozenset({ord(letter)})

    def char_class(self) -> frozenset[int]:
        self.at += 1
        negated = self.peek() == "^"
        if negated:
            self.at += 1
        chars: set[int] = set()
        first = True
        while self.at < len(self.pattern) and (first or self.peek() != "]"):
            first = False
            if self.peek() == "[":
                raise _Unportable(
                    r"write \[ inside a character class: Envoy (RE2) and HAProxy (PCRE) read "
                    "[: as a POSIX class"
                )
            self.refuse_set_operation()
            low = self.class_member()
            if self.peek() == "-" and self.peek(2) != "-]":
                self.at += 1
                self.refuse_set_operation("-")
                high = self.class_member()
                chars.update(range(min(low), max(high) + 1))
            else:
                chars.update(low)
        self.at += 1  # "]"
        return frozenset(_EVERYTHING - chars if negated else chars)

    def refuse_set_operation(self, before: str = "") -> None:
        pair = (before + self.peek(2))[:2]
        if pair in ("&&", "||", "~~", "--"):
            raise _Unportable(
                f"write \\{pair[0]} for a repeated {pair[0]!r} in a character class (Python "
                "reserves it for set operations)"
            )

    def class_member(self) -> frozenset[int]:
        if self.peek() == "\\":
            letter = self.peek(2)[1:]
            if letter in _ANCHOR_ESCAPES:
                raise _Unportable(f"\\{letter} inside a character class is not portable")
            return self.escape_set()
        char = self.peek()
        self.at += 1
        return frozenset({ord(char)})

    def quantified(self, piece: _Piece) -> _Piece:
        char = self.peek()
        if char in ("*", "+", "?"):
            self.at += 1
            result = _Piece(piece.size + 1, piece.repeats)
        elif char == "{" and (repeat := _REPEAT.match(self.pattern, self.at)):
            self.at = repeat.end()
            low = int(repeat.group(1))
            high = low if repeat.group(2) is None else int(repeat.group(3) or -1)
            if max(low, high) > RE2_MAX_REPEAT:
                raise _Unportable(f"Envoy (RE2) repeats at most {RE2_MAX_REPEAT} times")
            count = high if high >= 0 else low
            repeats = piece.repeats * max(count, 1)
            if repeats > RE2_MAX_REPEAT:
                raise _Unportable(
                    f"nested counted repeats multiply to {repeats}; Envoy (RE2) allows at most "
                    f"{RE2_MAX_REPEAT}"
                )
            size = piece.size * max(low, 1) + 1 if high < 0 else piece.size * high + high - low
            result = _Piece(size, repeats)
        else:
            return piece
        if self.peek() == "?":
            self.at += 1
        elif self.peek() == "+":
            raise _Unportable("possessive quantifiers are not supported by Envoy (RE2)")
        return result


_REPEAT = re.compile(r"\{([0-9]+)(,([0-9]*))?\}", re.ASCII)


def _ranges(chars: frozenset[int], caseless: bool) -> int:
    """How many RE2 instructions a set of characters takes at most: one per run."""
    if caseless:
        letters = {c ^ 0x20 for c in chars if 65 <= c <= 90 or 97 <= c <= 122}
        chars = chars | letters
    ordered = sorted(chars)
    return max(1, sum(1 for i, c in enumerate(ordered) if i == 0 or c != ordered[i - 1] + 1))


MAX_GROUP_DEPTH = 50
"""How deeply groups may nest (the parsers here recurse once per level)."""


def _group_depth(pattern: str) -> int:
    depth = deepest = 0
    escaped = in_class = False
    for char in pattern:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
        elif char == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif char == ")":
            depth -= 1
    return deepest


def regex_problem(pattern: str) -> str | None:
    """Why `pattern` is not read alike by both proxies (see the module docstring), or None."""
    for position, char in enumerate(pattern):
        if not " " <= char <= "~":
            return (
                f"a regex is printable ASCII (U+{ord(char):04X} at position {position}); "
                r"Envoy (RE2) reads characters and HAProxy (PCRE) bytes"
            )
    if _group_depth(pattern) > MAX_GROUP_DEPTH:
        return f"a regex nests groups at most {MAX_GROUP_DEPTH} deep"
    try:
        piece: _Piece | None = _Parser(pattern).alternation()
    except _Unportable as exc:
        return str(exc)
    except (IndexError, ValueError):
        piece = None  # malformed: Python says how
    try:
        re.compile(pattern)
    except re.error as exc:
        return f"invalid regex: {exc}"
    if piece is None:
        return "invalid regex"
    budget = RE2_MAX_PROGRAM_SIZE - _PROGRAM_HEADROOM
    if piece.size > budget:
        return (
            f"this regex compiles to about {piece.size} RE2 instructions; Envoy (RE2) accepts "
            f"{budget} for a route condition"
        )
    return None


def _check_regex(pattern: str) -> str:
    problem = regex_problem(pattern)
    if problem:
        raise ValueError(problem)
    return pattern


Regex = Annotated[
    str,
    Field(
        min_length=1,
        max_length=1024,
        description="A regular expression matching the whole value, in the dialect RE2 "
        "(Envoy) and PCRE (HAProxy) share: printable ASCII; no lookaround, backreferences, "
        "atomic groups or possessive quantifiers; inline flags i, m, s only; counted repeats "
        "at most 1000, nested ones multiplying to at most 1000; at most 1024 characters.",
    ),
    AfterValidator(_check_regex),
]
