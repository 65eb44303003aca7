"""The regular-expression dialect both proxies accept: RE2 (Envoy) ∩ PCRE (HAProxy)."""

from __future__ import annotations

import re

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
_BAD_ESCAPES = {"Z": r"\Z (use $)", "k": "backreference", "g": "backreference"}
_REPEAT = re.compile(r"\{(\d+)(?:,(\d*))?\}")
RE2_MAX_REPEAT = 1000


def regex_problem(pattern: str) -> str | None:
    """Why `pattern` is not portable to both proxies, or None when it is.

    Patterns must compile and avoid what RE2 lacks: lookaround, backreferences, atomic
    groups, possessive quantifiers, conditionals, and counted repeats above 1000.
    """
    try:
        re.compile(pattern)
    except re.error as exc:
        return f"invalid regex: {exc}"
    in_class = False
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            escaped = pattern[i + 1 : i + 2]
            if not in_class and escaped.isdigit() and escaped != "0":
                return "backreferences are not supported by Envoy (RE2)"
            if escaped in _BAD_ESCAPES:
                return f"{_BAD_ESCAPES[escaped]} is not portable between Envoy and HAProxy"
            i += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
            if pattern[i + 1 : i + 2] == "]":
                i += 1
        elif char == "(":
            for opener, what in _GROUP_OPENERS.items():
                if pattern.startswith(opener, i):
                    return f"{what} ({opener}) is not supported by Envoy (RE2)"
        elif char in "*+?}" and pattern[i + 1 : i + 2] == "+":
            return "possessive quantifiers are not supported by Envoy (RE2)"
        elif (repeat := _REPEAT.match(pattern, i)) and _largest(repeat) > RE2_MAX_REPEAT:
            return f"Envoy (RE2) repeats at most {RE2_MAX_REPEAT} times"
        i += 1
    return None


def _largest(repeat: re.Match[str]) -> int:
    return max(int(n) for n in repeat.groups() if n)
