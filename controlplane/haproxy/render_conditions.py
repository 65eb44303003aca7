"""Request conditions (method, headers, query parameters, cookies) in the two forms the route
tables use: *facts* compared by map lookups, and ACL terms for routes walked one by one.

A fact is a log-format expression whose text, for a given request, says whether a condition
holds: `%[method]` is the method, `%[req.fhdr(x-a),hex,concat(=)]` is the header's last value in
hex followed by `=` (empty when the header is absent), `%[req.fhdr(x-a),length,add(1),bool]` is
`1` when the header is present (empty otherwise), and a regex condition is a variable set to `1`
by one rule. A route's condition is then a set of (fact, required text) pairs.

ACL terms are `Raw` configuration text, built from quoted parts by `Raw.__mod__`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from ..model import Match, ValueMatch
from .render_text import Raw, acl_exact, hex_value, regex_word

Condition = tuple[tuple[str, str], ...]
"""(fact, required text) pairs, sorted by fact; empty for a route without conditions."""

METHOD_FACT = "%[method]"


_SOURCE_LABEL = {"headers": "header", "query": "query", "cookies": "cookie"}


def _fetch(source: str, name: str, last: bool = False) -> str:
    if source == "headers":
        name = name.lower()
        return f"req.fhdr({name},-1)" if last else f"req.fhdr({name})"
    if source == "query":
        return f"url_param({name})"
    return f"req.cook({name})"


@dataclass(frozen=True)
class RegexFact:
    """A regex condition computed once per request: `var` is set to 1 when the value `fetch`
    reads matches `pattern`."""

    var: str
    fetch: str
    pattern: str


@dataclass
class RegexFacts:
    """The regex conditions of one listener, each computed by one rule, and a label for every
    fact (for comments)."""

    rules: list[RegexFact] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=lambda: {METHOD_FACT: "method"})
    _vars: dict[tuple[str, str, str], str] = field(default_factory=dict)

    def fact(self, source: str, name: str, pattern: str) -> str:
        key = (source, name, pattern)
        var = self._vars.get(key)
        if var is None:
            var = f"txn.x{len(self._vars)}"
            self._vars[key] = var
            self.labels[f"%[var({var})]"] = f"{_SOURCE_LABEL[source]} {name} ~ {pattern}"
            self.rules.append(RegexFact(var, _fetch(source, name, last=True), pattern))
        return f"%[var({var})]"


def _value_atoms(source: str, item: ValueMatch, regexes: RegexFacts) -> Iterator[tuple[str, str]]:
    fetch = _fetch(source, item.name)
    label = f"{_SOURCE_LABEL[source]} {item.name.lower() if source == 'headers' else item.name}"
    if item.exact is not None:
        fact = f"%[{fetch},hex,concat(=)]"
        regexes.labels[fact] = label
        yield fact, hex_value(item.exact) + "="
    elif item.regex is not None:
        yield regexes.fact(source, item.name, item.regex), "1"
    else:
        fact = f"%[{fetch},length,add(1),bool]"
        regexes.labels[fact] = f"{label} present"
        yield fact, "1" if item.present else ""


def condition(match: Match, regexes: RegexFacts) -> Condition | None:
    """The facts a request must show for `match` to hold (its path aside), or None when no
    request can (two different values required of one fact)."""
    required: dict[str, str] = {}
    atoms: list[tuple[str, str]] = []
    if match.method is not None:
        atoms.append((METHOD_FACT, match.method))
    for source in ("headers", "query", "cookies"):
        for item in getattr(match, source):
            atoms.extend(_value_atoms(source, item, regexes))
    for fact, text in atoms:
        if required.setdefault(fact, text) != text:
            return None
    return tuple(sorted(required.items()))


def acl_terms(match: Match) -> list[Raw]:
    """ACL terms (ANDed) for `match`'s method, headers, query and cookies."""
    terms: list[Raw] = []
    if match.method is not None:
        terms.append(Raw("{ method %s }") % match.method)
    for source in ("headers", "query", "cookies"):
        for item in getattr(match, source):
            fetch = _fetch(source, item.name, last=True)
            if item.exact is not None:
                terms.append(Raw("{ %s -m str %s }") % (fetch, acl_exact(item.exact)))
            elif item.regex is not None:
                terms.append(Raw("{ %s -m reg %s }") % (fetch, regex_word(item.regex)))
            elif item.present:
                terms.append(Raw("{ %s -m found }") % _fetch(source, item.name))
            else:
                terms.append(Raw("!{ %s -m found }") % _fetch(source, item.name))
    return terms
