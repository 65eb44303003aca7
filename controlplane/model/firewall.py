"""Firewall policies: address rules (L3/L4) on any listener, and a `firewall` of L7 rules and
OWASP CRS inspection on HTTP listeners, overridable or switched off per route.

Meaning, once for both proxies:

- `AddressRules`: a connection whose client address (the PROXY protocol source where the
  listener accepts it) is in `deny`, or is not in a non-empty `allow`, is closed before any
  byte of it is read.
- `Firewall`: each request a route with a firewall takes is checked by the L7 rules (all of
  them: the verdict lists every rule that matched), then, when nothing matched or in `detect`
  mode, by the CRS. In `block` mode a match answers 403 with `BLOCKED_BODY`; in `detect` mode
  the request goes on and the answer names what matched (`x-firewall-rules`,
  `x-waf-rules`).
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, WithJsonSchema, model_validator

from .regex import Regex
from .types import (
    Address,
    Duration,
    MatchName,
    Method,
    Model,
    Name,
    control_character_problem,
    shown,
)

BLOCKED_BODY = "blocked by the firewall\n"
"""The body of a 403 a firewall in `block` mode answers, on both proxies."""
RULES_HEADER = "x-firewall-rules"
"""Response header naming the L7 rules a request matched, in `detect` mode."""
CRS_HEADER = "x-waf-rules"
"""Response header naming the CRS rule ids a request matched, in `detect` mode."""
BODY_INSPECTED_BYTES = 8192
"""How much of a request body `target: body` rules read (the first bytes)."""
MAX_CIDRS = 100_000


def _check_cidr(text: str) -> str:
    problem = control_character_problem(text)
    if problem:
        raise ValueError(problem)
    try:
        network = ipaddress.ip_network(text, strict=True)
    except ValueError:
        raise ValueError(
            f"{shown(text)} is not an address or a CIDR range with its host bits zero "
            "(10.0.0.0/8, 2001:db8::/32, 192.0.2.7)"
        ) from None
    if "%" in text or not text.isascii():
        raise ValueError(f"{shown(text)} is not an address or a CIDR range")
    return str(network)


Cidr = Annotated[
    str,
    Field(max_length=49),
    AfterValidator(_check_cidr),
    WithJsonSchema(
        {
            "type": "string",
            "maxLength": 49,
            "pattern": r"^[0-9A-Fa-f:.]+(/[0-9]{1,3})?$",
            "description": "An IPv4 or IPv6 address or CIDR range with its host bits zero "
            "(10.0.0.0/8, 2001:db8::/32); held as written by Python's ipaddress "
            "(a plain address becomes /32 or /128).",
        }
    ),
]


class AddressRules(Model):
    """Who may connect: a connection from an address in `deny` is refused, and so is one
    from an address outside `allow` when `allow` is not empty (deny wins over allow).

    In a config file an entry may be `{file: path}`: a file of one CIDR a line (blank lines
    and `#` comments ignored), read when the file is loaded, for large lists such as a
    country's ranges. The REST API takes the CIDRs inline."""

    allow: list[Cidr] = Field(default_factory=list, max_length=MAX_CIDRS)
    deny: list[Cidr] = Field(default_factory=list, max_length=MAX_CIDRS)

    @model_validator(mode="after")
    def _some(self) -> AddressRules:
        if not self.allow and not self.deny:
            raise ValueError("set allow, deny or both")
        return self


def _check_phrase(text: str) -> str:
    problem = control_character_problem(text)
    if problem:
        raise ValueError(problem)
    if text != text.strip(" "):
        raise ValueError("a phrase has no leading or trailing blanks")
    return text


Phrase = Annotated[
    str,
    Field(min_length=1, max_length=256),
    AfterValidator(_check_phrase),
    WithJsonSchema(
        {
            "type": "string",
            "minLength": 1,
            "maxLength": 256,
            "pattern": r"^[^\x00-\x20\x7f]([^\x00-\x1f\x7f]*[^\x00-\x20\x7f])?$",
            "description": "Literal text of 1 to 256 characters, compared as UTF-8 bytes: no "
            "control character, no leading or trailing blanks.",
        }
    ),
]

Extension = Annotated[
    str,
    Field(
        pattern=r"^[A-Za-z0-9]{1,16}$",
        description="A file extension without its dot: 1 to 16 letters and digits; compared "
        "case-insensitively.",
    ),
    AfterValidator(str.lower),
]

Transform = Literal["url_decode", "lowercase", "compress_whitespace", "html_entity_decode"]
"""Named transforms, applied in order to a value before it is matched:

- `url_decode`: `%XX` becomes the byte XX, `+` a space (an invalid escape stays as it is);
- `lowercase`: ASCII letters in lower case;
- `compress_whitespace`: each run of blanks (space, tab, CR, LF, FF, VT) becomes one space;
- `html_entity_decode`: `&lt; &gt; &amp; &quot; &apos; &nbsp;` and `&#NN;`/`&#xHH;` (the
  `;` optional after a number) become their characters (UTF-8).
"""


class UserAgentRule(Model):
    """A user agent refused: the `User-Agent` header contains `contains`, or `regex` matches
    anywhere in it; both case-insensitive."""

    contains: Phrase | None = None
    regex: Regex | None = None

    @model_validator(mode="after")
    def _one(self) -> UserAgentRule:
        if (self.contains is None) == (self.regex is None):
            raise ValueError("set exactly one of contains, regex")
        return self


class MaxSizes(Model):
    """Largest sizes accepted, in bytes: `url` the request target (path and query as sent),
    `header` any one header (name, `: ` and value), `body` the `Content-Length`."""

    url: int | None = Field(None, ge=1, le=65536)
    header: int | None = Field(None, ge=1, le=65536)
    body: int | None = Field(None, ge=0, le=1 << 40)


Target = Literal["path", "query", "header", "cookie", "body"]


class Rule(Model):
    """A custom rule: the value `target` names, after `transforms` in order, matches `regex`
    (anywhere in it) or contains one of `phrases`.

    `target`: `path` (as sent, without the query), `query` (the raw query string, without `?`),
    `header` or `cookie` (the one `field` names; absent means no match), `body` (its first
    `BODY_INSPECTED_BYTES` bytes). Values are compared as bytes; a regex is the model's
    shared dialect, run by the firewall's own engine (the same on both proxies)."""

    name: Name
    target: Target
    field: MatchName | None = None
    transforms: list[Transform] = Field(default_factory=list, max_length=8)
    regex: Regex | None = None
    phrases: list[Phrase] | None = Field(None, min_length=1, max_length=1000)

    @model_validator(mode="after")
    def _fits(self) -> Rule:
        if (self.regex is None) == (self.phrases is None):
            raise ValueError("set exactly one of regex, phrases")
        named = self.target in ("header", "cookie")
        if named and self.field is None:
            raise ValueError(f"a rule on a {self.target} needs field (its name)")
        if not named and self.field is not None:
            raise ValueError(f"field names a header or cookie; a rule on {self.target} has none")
        return self


ExclusionId = Annotated[int, Field(ge=1, le=999_999)]


class Crs(Model):
    """OWASP Core Rule Set inspection by the verdict service (`controlplane waf-serve`).

    `paranoia_level` (1-4) selects how many CRS rules run; a request whose inbound anomaly
    score reaches `anomaly_threshold` is blocked; `exclusions` are CRS rule ids switched off.
    The proxies reach the service at `service` (Envoy: gRPC `ext_authz` on that port;
    HAProxy: SPOE on the next port), send it the method, URI, headers and the first
    `max_body_bytes` of the body (at most 8192: what one SPOE frame carries), and wait at
    most `timeout`; when the service does not
    answer, `failure: open` lets the request through and `closed` answers 403.
    """

    paranoia_level: int = Field(1, ge=1, le=4)
    anomaly_threshold: int = Field(5, ge=1, le=10_000)
    exclusions: list[ExclusionId] = Field(default_factory=list, max_length=1000)
    service: Address = "127.0.0.1:9470"
    failure: Literal["open", "closed"] = "closed"
    timeout: Duration = Field(1000, le=60_000)
    max_body_bytes: int = Field(8192, ge=0, le=8192)

    @property
    def connection(self) -> tuple[str, str, int, int]:
        """What every CRS of one listener must share: service, failure, timeout, body."""
        return (self.service, self.failure, self.timeout, self.max_body_bytes)


class Firewall(Model):
    """L7 rules and CRS inspection for the requests of a listener, or of one route.

    On a listener it applies to every route; a route's own `firewall` replaces it for that
    route, and `firewall: {enabled: false}` switches it off there. `mode: block` answers 403
    (`BLOCKED_BODY`) to a request that matches; `detect` lets it through, logs it and names
    what matched in the `x-firewall-rules` (L7 rules) and `x-waf-rules` (CRS ids) response
    headers.

    Rules: `methods` allowed (others match `methods`); `user_agents` refused;
    `file_extensions` refused as the last segment's extension of the URL-decoded path;
    `max_sizes`; `protocol: true` refuses requests with an empty Host or an invalid `%`
    escape in the path or query (a missing Host and conflicting Content-Length values are
    refused by both proxies first); custom `rules`. An L7 rule is named in verdicts by its
    field (`methods`, `user_agents`, `file_extensions`, `max_sizes.url`, `max_sizes.header`,
    `max_sizes.body`, `protocol`) or, for a custom rule, its `name`.
    """

    enabled: bool = True
    mode: Literal["block", "detect"] = "block"
    methods: list[Method] | None = Field(None, min_length=1)
    user_agents: list[UserAgentRule] = Field(default_factory=list, max_length=1000)
    file_extensions: list[Extension] = Field(default_factory=list, max_length=1000)
    max_sizes: MaxSizes = Field(default_factory=MaxSizes)
    protocol: bool = False
    rules: list[Rule] = Field(default_factory=list, max_length=1000)
    crs: Crs | None = None

    @model_validator(mode="after")
    def _off_means_nothing_else(self) -> Firewall:
        if not self.enabled and set(self.model_dump(exclude_defaults=True)) - {"enabled"}:
            raise ValueError("a firewall that is switched off (enabled: false) has no rules")
        if self.enabled and not (self.has_l7_rules or self.crs is not None):
            raise ValueError("a firewall needs rules or crs (or enabled: false)")
        names = [rule.name for rule in self.rules]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"rule names repeat: {', '.join(repeated)}")
        return self

    @property
    def has_l7_rules(self) -> bool:
        """Whether any L7 rule is set (the CRS aside)."""
        sizes = self.max_sizes
        return bool(
            self.methods
            or self.user_agents
            or self.file_extensions
            or self.protocol
            or self.rules
            or sizes.url is not None
            or sizes.header is not None
            or sizes.body is not None
        )

    @property
    def reads_body(self) -> bool:
        """Whether an L7 rule reads the request body."""
        return any(rule.target == "body" for rule in self.rules)


def effective_firewall(
    listener_firewall: Firewall | None, route_firewall: Firewall | None
) -> Firewall | None:
    """The firewall that checks a route's requests: the route's own, else the listener's;
    None when there is none or it is switched off."""
    chosen = route_firewall if route_firewall is not None else listener_firewall
    return chosen if chosen is not None and chosen.enabled else None


__all__ = [
    "BLOCKED_BODY",
    "BODY_INSPECTED_BYTES",
    "CRS_HEADER",
    "RULES_HEADER",
    "AddressRules",
    "Cidr",
    "Crs",
    "Firewall",
    "MaxSizes",
    "Rule",
    "UserAgentRule",
    "effective_firewall",
]
