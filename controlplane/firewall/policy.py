"""A firewall's L7 rules as the data the shared Lua core (`lua/core.lua`) reads.

Both compilers hand the core the same text for the same firewall, Envoy in route metadata and
HAProxy in a map keyed by route id, so both run the same checks on the same data. Model values
reach the core only inside this text, never as code.

The text is `key=value` items joined by `;`. Every model value in it is percent-encoded
(all bytes but `A-Z a-z 0-9 _ . -`), so `;`, `=`, `,`, `+` and blanks only ever separate:

- `m=b|d` (block or detect), `me=GET,POST` (methods allowed), `ex=exe,bat`,
  `su=N`, `sh=N`, `sb=N` (maximum sizes), `pr=1` (protocol checks);
- `ua=<matcher>,...`: `c<phrase>` (contains, lower case) or `x<program>` (a regex);
- `r=<name>,<on>,<field>,<transforms joined by +>,p|x,<phrase or program>,...`, one per
  custom rule, in declaration order.

Regexes are programs of `controlplane.firewall.nfa`, except a regex that is only literal
words and `|` (`sqlmap|nikto`): it matches exactly where one of its words is contained, so it
is written as those phrases, which the core finds without running the regex engine. `None`
when the firewall has no L7 rule.
"""

from __future__ import annotations

import re
from urllib.parse import quote

from ..model import Firewall
from ..model.firewall import Rule
from .nfa import compile_program

_LITERALS = re.compile(r"[A-Za-z0-9_ /-]+(\|[A-Za-z0-9_ /-]+)*")


def literal_words(regex: str) -> list[str] | None:
    """The words of a regex made only of literal words and `|`, or None for any other."""
    if _LITERALS.fullmatch(regex) is None:
        return None
    return regex.split("|")


def _enc(text: str) -> str:
    return quote(text.encode("utf-8", "surrogatepass"), safe="_.-")


def _rule(rule: Rule) -> str:
    words = literal_words(rule.regex) if rule.regex is not None else None
    if words is not None:
        kind, items = "p", words
    elif rule.regex is not None:
        kind, items = "x", [compile_program(rule.regex)]
    else:
        assert rule.phrases is not None
        kind, items = "p", list(rule.phrases)
    parts = [rule.name, rule.target, rule.field or "", "+".join(rule.transforms), kind, *items]
    return ",".join(_enc(part) for part in parts)


def policy_text(firewall: Firewall) -> str | None:
    """The core's data for `firewall`'s L7 rules, or None when it has none."""
    if not firewall.has_l7_rules:
        return None
    items = [f"m={'b' if firewall.mode == 'block' else 'd'}"]
    if firewall.methods:
        items.append("me=" + ",".join(firewall.methods))
    if firewall.user_agents:
        matchers: list[str] = []
        for ua in firewall.user_agents:
            words = [ua.contains] if ua.contains is not None else literal_words(str(ua.regex))
            if words is not None:
                matchers.extend("c" + _enc(word.lower()) for word in words)
            else:
                matchers.append("x" + _enc(compile_program(str(ua.regex), caseless=True)))
        items.append("ua=" + ",".join(matchers))
    if firewall.file_extensions:
        items.append("ex=" + ",".join(_enc(ext) for ext in firewall.file_extensions))
    sizes = firewall.max_sizes
    for key, value in (("su", sizes.url), ("sh", sizes.header), ("sb", sizes.body)):
        if value is not None:
            items.append(f"{key}={value}")
    if firewall.protocol:
        items.append("pr=1")
    items.extend("r=" + _rule(rule) for rule in firewall.rules)
    return ";".join(items)


def crs_policy_text(firewall: Firewall) -> str | None:
    """What the verdict service is told of `firewall`'s CRS with each request (`m=b|d`,
    `pl=<paranoia level>`, `t=<anomaly threshold>`, `x=<excluded ids>`), or None without CRS.
    Parsed by `controlplane.firewall.verdicts.CrsPolicy.parse`."""
    crs = firewall.crs
    if crs is None:
        return None
    items = [f"m={'b' if firewall.mode == 'block' else 'd'}", f"pl={crs.paranoia_level}"]
    items.append(f"t={crs.anomaly_threshold}")
    if crs.exclusions:
        items.append("x=" + ",".join(str(rule) for rule in sorted(set(crs.exclusions))))
    return ";".join(items)
