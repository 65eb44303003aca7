"""A firewall's triggers (`controlplane.firewall.triggers`) as the matcher that lets a route's
Lua filter run: the filter is wrapped in `ExtensionWithMatcher`, and each route's
`ExtensionWithMatcherPerRoute` skips it for a request that fires none of the route's
triggers. Phrases are matched by header inputs (`:path` is the request target, `:authority`
the Host), as few regexes a header as fit, since each is one more scan of the value; sizes
by CEL expressions, given as their parsed syntax tree (this Envoy reads no CEL text), asked
only of values a regex finds long enough."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeAlias

from cel.expr import syntax_pb2 as cel
from envoy.extensions.filters.common.matcher.action.v3 import skip_action_pb2
from envoy.type.matcher.v3 import http_inputs_pb2
from google.protobuf.message import Message
from xds.core.v3 import extension_pb2
from xds.type.matcher.v3 import cel_pb2 as cel_matcher_pb2
from xds.type.matcher.v3 import http_inputs_pb2 as xds_http_inputs_pb2
from xds.type.matcher.v3 import matcher_pb2, regex_pb2, string_pb2
from xds.type.v3 import cel_pb2 as cel_expression_pb2

from ...firewall.triggers import Triggers, Watch
from ...model.regex import RE2_MAX_PROGRAM_SIZE
from ..common import packed

Predicate: TypeAlias = matcher_pb2.Matcher.MatcherList.Predicate


def _extension(name: str, config: Message) -> extension_pb2.TypedExtensionConfig:
    return extension_pb2.TypedExtensionConfig(name=name, typed_config=packed(config))


def _header(name: str, match: string_pb2.StringMatcher) -> Predicate:
    input_ = _extension("header", http_inputs_pb2.HttpRequestHeaderMatchInput(header_name=name))
    return Predicate(single_predicate=Predicate.SinglePredicate(input=input_, value_match=match))


def _regex(pattern: str) -> string_pb2.StringMatcher:
    return string_pb2.StringMatcher(
        safe_regex=regex_pb2.RegexMatcher(
            google_re2=regex_pb2.RegexMatcher.GoogleRE2(), regex=pattern
        )
    )


def _any(predicates: list[Predicate]) -> Predicate:
    if len(predicates) == 1:
        return predicates[0]
    return Predicate(or_matcher=Predicate.PredicateList(predicate=predicates))


def _all(predicates: list[Predicate]) -> Predicate:
    return Predicate(and_matcher=Predicate.PredicateList(predicate=predicates))


def _not(predicate: Predicate) -> Predicate:
    return Predicate(not_matcher=predicate)


class _Cel:
    """A CEL syntax tree, its nodes numbered as the parser would."""

    def __init__(self) -> None:
        self.ids = 0

    def _node(self, **kind: Message) -> cel.Expr:
        self.ids += 1
        return cel.Expr(id=self.ids, **kind)

    def attribute(self, *path: str) -> cel.Expr:
        node = self._node(ident_expr=cel.Expr.Ident(name=path[0]))
        for field in path[1:]:
            node = self._node(select_expr=cel.Expr.Select(operand=node, field=field))
        return node

    def call(self, function: str, *args: cel.Expr) -> cel.Expr:
        return self._node(call_expr=cel.Expr.Call(function=function, args=list(args)))

    def int(self, value: int) -> cel.Expr:
        return self._node(const_expr=cel.Constant(int64_value=value))

    def true(self) -> cel.Expr:
        return self._node(const_expr=cel.Constant(bool_value=True))


def _cel(expression: Callable[[_Cel], cel.Expr]) -> Predicate:
    """A predicate that holds when `expression`, built on a fresh tree, is true."""
    matcher = cel_matcher_pb2.CelMatcher(
        expr_match=cel_expression_pb2.CelExpression(
            cel_expr_parsed=cel.ParsedExpr(expr=expression(_Cel()))
        )
    )
    input_ = _extension("request", xds_http_inputs_pb2.HttpAttributesCelMatchInput())
    return Predicate(
        single_predicate=Predicate.SinglePredicate(
            input=input_, custom_match=_extension("cel", matcher)
        )
    )


Attribute = Callable[[_Cel], cel.Expr]


def _above(attribute: Attribute, limit: int) -> Predicate:
    return _cel(lambda tree: tree.call("_>_", attribute(tree), tree.int(limit)))


def _target_bytes(tree: _Cel) -> cel.Expr:
    return tree.call("size", tree.call("bytes", tree.attribute("request", "path")))


def _headers_bytes(tree: _Cel) -> cel.Expr:
    return tree.attribute("request", "total_size")


def _body_bytes(tree: _Cel) -> cel.Expr:
    return tree.attribute("request", "size")


REGEX_BUDGET = RE2_MAX_PROGRAM_SIZE // 10
"""The RE2 instructions one trigger regex may take, counted from above: a tenth of what the
bootstrap lets Envoy accept (`RE2_MAX_PROGRAM_SIZE`). A longer list of phrases takes several
regexes, and a longer phrase is looked for by its beginning (a value holding the phrase holds
that too)."""

GATE = 64
"""The longest value a regex gate counts (an RE2 program of about 8 instructions a
character)."""


def _weight(char: str) -> int:
    """What `char` costs at most in a case-ignoring RE2 program: 1 for ASCII, but 4 for the
    letters Unicode folds with another character (`k` with the Kelvin sign, `s` with the long
    s) and 6 for any other character (several UTF-8 bytes, its case variants)."""
    if char in "kKsS":
        return 4
    return 1 if char.isascii() else 6


@dataclass(frozen=True)
class _Alternative:
    """A way for a value to fire a trigger, as an RE2 pattern matching the whole value, and
    what it costs at most in instructions."""

    pattern: str
    weight: int


PRESENT = _Alternative(".*", 11)
BLANKS = _Alternative(".*[\\t-\\r ].*", 20)


def _gate(characters: int) -> _Alternative:
    """A value of `characters` characters or more (at most `GATE`: a longer one has as many)."""
    counted = min(characters, GATE)
    return _Alternative(f".{{{counted}}}.*", 8 * counted + 11)


def _literal(text: str) -> str:
    """`text` as RE2 syntax matching exactly it."""
    return "".join(
        char if char.isalnum() or not char.isascii() else f"\\x{ord(char):02x}" for char in text
    )


def _beginning(phrase: str, budget: int) -> str:
    kept, weight = [], 0
    for char in phrase:
        weight += _weight(char)
        if weight > budget:
            break
        kept.append(char)
    return "".join(kept)


def _containing(phrases: tuple[str, ...]) -> list[_Alternative]:
    """Alternatives that, together, match a value holding one of `phrases`, ASCII case
    ignored."""
    frame = 20
    groups: list[tuple[list[str], int]] = []
    for phrase in sorted({_beginning(phrase, REGEX_BUDGET - frame - 1) for phrase in phrases}):
        weight = sum(map(_weight, phrase)) + 1
        if not groups or groups[-1][1] + weight > REGEX_BUDGET - frame:
            groups.append(([], 0))
        group, total = groups[-1]
        groups[-1] = ([*group, phrase], total + weight)
    return [
        _Alternative(f".*(?i:{'|'.join(map(_literal, group))}).*", frame + total)
        for group, total in groups
    ]


def _packed(alternatives: list[_Alternative]) -> list[string_pb2.StringMatcher]:
    """Regexes that, together, match what one of `alternatives` matches, each within
    `REGEX_BUDGET`: every regex is one more scan of the value, so as few as fit."""
    regexes: list[list[_Alternative]] = []
    for alternative in alternatives:
        if not regexes or sum(a.weight for a in regexes[-1]) + alternative.weight > REGEX_BUDGET:
            regexes.append([])
        regexes[-1].append(alternative)
    return [_regex(f"(?s)(?:{'|'.join(a.pattern for a in group)})") for group in regexes]


def _alternatives(watch: Watch) -> list[_Alternative]:
    if watch.present:
        return [PRESENT]
    return _containing(watch.phrases) + ([BLANKS] if watch.blanks else [])


def _matching(header: str, alternatives: list[_Alternative]) -> list[Predicate]:
    return [_header(header, regex) for regex in _packed(alternatives)]


def _watched(
    header: str, watch: Watch, gated: tuple[_Alternative, Predicate] | None
) -> list[Predicate]:
    """The predicates for `header`'s watch and for a check (`gated`: a gate on its length, and
    a CEL predicate) asked only of values that pass the gate. When the watch and the gate fit
    one regex, that regex screens the value first: a value that fits neither is scanned once."""
    alternatives = _alternatives(watch)
    watching = _matching(header, alternatives)
    if gated is None:
        return watching
    gate, then = gated
    screen = _packed([*alternatives, gate])
    if alternatives and len(screen) == 1:
        return [_all([_header(header, screen[0]), _any([*watching, then])])]
    return [*watching, _all([*_matching(header, [gate]), then])]


def _terms(found: Triggers) -> list[Predicate]:
    if found.always:
        return [_cel(_Cel.true)]
    terms = []
    if found.methods is not None:
        allowed = "|".join(_literal(method) for method in found.methods)
        terms.append(_not(_header(":method", _regex(allowed))))
    target_check = None
    if found.target_longer is not None:
        # a target of more bytes than that has more than a quarter as many characters
        target_check = (_gate(found.target_longer // 4), _above(_target_bytes, found.target_longer))
    terms += _watched(":path", found.target, target_check)
    for name, watch in found.headers:
        terms += _watched(":authority" if name == "host" else name, watch, None)
    if found.content_length_above is not None:
        # `size` is the Content-Length when there is one; a larger one has as many digits
        digits = len(str(found.content_length_above + 1))
        above = _above(_body_bytes, found.content_length_above)
        terms += _watched("content-length", Watch(), (_gate(digits), above))
    if found.headers_longer is not None:
        # a header's name, ": " and value are over the size only if the request's headers,
        # counted as names and values (`total_size`), are over it less 2
        terms.append(_above(_headers_bytes, found.headers_longer - 2))
    if found.host_missing:
        terms.append(_not(_header(":authority", _regex(".+"))))
    return terms


def skipping(found: Triggers) -> matcher_pb2.Matcher:
    """The matcher that skips the Lua filter for a request firing none of `found`."""
    skip = _extension("skip", skip_action_pb2.SkipFilter())
    entry = matcher_pb2.Matcher.MatcherList.FieldMatcher(
        predicate=_not(_any(_terms(found))),
        on_match=matcher_pb2.Matcher.OnMatch(action=skip),
    )
    return matcher_pb2.Matcher(matcher_list=matcher_pb2.Matcher.MatcherList(matchers=[entry]))


NEVER_SKIPPING = skipping(Triggers(always=True))
"""The matcher that lets the filter run for every request."""
