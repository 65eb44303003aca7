"""Request conditions: a model `Match` as an Envoy RouteMatch.

Path prefixes match whole path elements (`path_separated_prefix`); regexes match whole
values (Envoy's `safe_regex` is a full match); a method is the `:method` header; a cookie
condition is a regex over the `cookie` header, since Envoy's route match has no cookie field.
"""

from __future__ import annotations

from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.type.matcher.v3 import regex_pb2, string_pb2

from ..model import Match, PathMatch, ValueMatch

_RE2_SPECIAL = frozenset("\\.+*?()|[]{}^$")


def re2_escape(text: str) -> str:
    """`text` as an RE2 pattern matching exactly `text`."""
    return "".join("\\" + char if char in _RE2_SPECIAL else char for char in text)


def regex(pattern: str) -> regex_pb2.RegexMatcher:
    """A full-match RE2 matcher."""
    return regex_pb2.RegexMatcher(regex=pattern)


def path_match(match: rc.RouteMatch, path: PathMatch) -> None:
    """Set the path condition of `match`."""
    if path.exact is not None:
        match.path = path.exact
    elif path.regex is not None:
        match.safe_regex.CopyFrom(regex(path.regex))
    elif path.normalized_prefix == "/":
        match.prefix = "/"
    else:
        match.path_separated_prefix = path.normalized_prefix or "/"


def header_matcher(name: str, condition: ValueMatch) -> rc.HeaderMatcher:
    """A condition on header `name` (lower case); an absent header is an inverted presence."""
    matcher = rc.HeaderMatcher(name=name)
    if condition.exact is not None:
        matcher.string_match.CopyFrom(string_pb2.StringMatcher(exact=condition.exact))
    elif condition.regex is not None:
        matcher.string_match.CopyFrom(string_pb2.StringMatcher(safe_regex=regex(condition.regex)))
    else:
        matcher.present_match = True
        matcher.invert_match = condition.present is False
    return matcher


def cookie_pattern(name: str, value_pattern: str) -> str:
    """An RE2 pattern for a whole `cookie` header holding cookie `name` with a value matching
    `value_pattern` (cookies are separated by `;` and optional spaces)."""
    return f"(?:.*;\\s*)?{re2_escape(name)}=(?:{value_pattern})(?:\\s*;.*)?"


def cookie_matcher(condition: ValueMatch) -> rc.HeaderMatcher:
    """A condition on one cookie, as a regex over the `cookie` header."""
    if condition.exact is not None:
        value_pattern = re2_escape(condition.exact)
    elif condition.regex is not None:
        value_pattern = condition.regex
    else:
        value_pattern = "[^;]*"
    return rc.HeaderMatcher(
        name="cookie",
        string_match=string_pb2.StringMatcher(
            safe_regex=regex(cookie_pattern(condition.name, value_pattern))
        ),
        invert_match=condition.present is False,
    )


def query_matcher(condition: ValueMatch) -> rc.QueryParameterMatcher:
    """A condition on a query parameter; an absent parameter has no Envoy form (see targets)."""
    matcher = rc.QueryParameterMatcher(name=condition.name)
    if condition.exact is not None:
        matcher.string_match.CopyFrom(string_pb2.StringMatcher(exact=condition.exact))
    elif condition.regex is not None:
        matcher.string_match.CopyFrom(string_pb2.StringMatcher(safe_regex=regex(condition.regex)))
    elif condition.present:
        matcher.present_match = True
    else:
        raise ValueError(f"envoy cannot match an absent query parameter ({condition.name!r})")
    return matcher


def route_match(match: Match) -> rc.RouteMatch:
    """The Envoy RouteMatch holding every condition of `match`."""
    result = rc.RouteMatch()
    path_match(result, match.path)
    if match.method is not None:
        result.headers.append(
            rc.HeaderMatcher(
                name=":method", string_match=string_pb2.StringMatcher(exact=match.method)
            )
        )
    result.headers.extend(header_matcher(h.name, h) for h in match.headers)
    result.headers.extend(cookie_matcher(c) for c in match.cookies)
    result.query_parameters.extend(query_matcher(q) for q in match.query)
    return result
