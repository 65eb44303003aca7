"""A firewall's triggers (`controlplane.firewall.triggers`) as the matcher that lets a route's
Lua filter run: the filter is wrapped in `ExtensionWithMatcher`, and each route's
`ExtensionWithMatcherPerRoute` skips it for a request that fires none of the route's
triggers. Phrases are matched by header inputs (`:path` is the request target, `:authority`
the Host); sizes by CEL expressions, given as their parsed syntax tree (this Envoy reads no
CEL text)."""

from __future__ import annotations

from collections.abc import Callable
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


GATE = 64
"""The longest value a regex gate counts (an RE2 program of about as many instructions)."""


def _gated(header: str, characters: int, then: Predicate) -> Predicate:
    """`then`, asked only of requests whose `header` has `characters` characters or more (a
    regex, far cheaper than a CEL expression, tells first)."""
    if characters < 2:
        return then
    gate = _header(header, _regex(f"(?s).{{{min(characters, GATE)}}}.*"))
    return Predicate(and_matcher=Predicate.PredicateList(predicate=[gate, then]))


def _target_bytes(tree: _Cel) -> cel.Expr:
    return tree.call("size", tree.call("bytes", tree.attribute("request", "path")))


def _headers_bytes(tree: _Cel) -> cel.Expr:
    return tree.attribute("request", "total_size")


def _body_bytes(tree: _Cel) -> cel.Expr:
    return tree.attribute("request", "size")


REGEX_WEIGHT = 40
"""How much literal text one regex holds, an ASCII character weighing 1 and any other 6 (in
UTF-8 and case-folded it takes several instructions): Envoy refuses an RE2 program over 100
instructions unless its runtime says otherwise, so long lists take several regexes, and a
longer phrase is looked for by its beginning (a value holding the phrase holds that too)."""


def _weight(char: str) -> int:
    return 1 if char.isascii() else 6


def _literal(text: str) -> str:
    """`text` as RE2 syntax matching exactly it."""
    return "".join(
        char if char.isalnum() or not char.isascii() else f"\\x{ord(char):02x}" for char in text
    )


def _beginning(phrase: str) -> str:
    kept, weight = [], 0
    for char in phrase:
        weight += _weight(char)
        if weight > REGEX_WEIGHT:
            break
        kept.append(char)
    return "".join(kept)


def _containing(phrases: tuple[str, ...]) -> list[string_pb2.StringMatcher]:
    """Regexes that, together, match a value holding one of `phrases`, ASCII case ignored."""
    groups: list[list[str]] = [[]]
    weight = 0
    for phrase in sorted({_beginning(phrase) for phrase in phrases}):
        heavy = sum(map(_weight, phrase))
        if groups[-1] and weight + heavy > REGEX_WEIGHT:
            groups.append([])
            weight = 0
        groups[-1].append(phrase)
        weight += heavy
    return [_regex(f"(?s).*(?i:{'|'.join(map(_literal, group))}).*") for group in groups if group]


def _watch(header: str, watch: Watch) -> list[Predicate]:
    if watch.present:
        return [_header(header, _regex("(?s).*"))]
    found = [_header(header, match) for match in _containing(watch.phrases)]
    if watch.blanks:
        found.append(_header(header, _regex("(?s).*[\\t-\\r ].*")))
    return found


def _terms(found: Triggers) -> list[Predicate]:
    if found.always:
        return [_cel(_Cel.true)]
    terms = []
    if found.methods is not None:
        allowed = "|".join(_literal(method) for method in found.methods)
        terms.append(_not(_header(":method", _regex(allowed))))
    terms += _watch(":path", found.target)
    for name, watch in found.headers:
        terms += _watch(":authority" if name == "host" else name, watch)
    if found.target_longer is not None:
        # a target of more bytes than that has more than a quarter as many characters
        longer = _above(_target_bytes, found.target_longer)
        terms.append(_gated(":path", found.target_longer // 4, longer))
    if found.content_length_above is not None:
        # `size` is the Content-Length when there is one; a larger one has as many digits
        above = _above(_body_bytes, found.content_length_above)
        digits = len(str(found.content_length_above + 1))
        terms.append(_gated("content-length", digits, above))
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
