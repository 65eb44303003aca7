"""CRS verdicts: one ModSecurity v3 engine with the OWASP Core Rule Set, asked about requests.

CRS's own method enforcement (911100) admits every method the model knows: a firewall's
`methods` rule is the one knob for methods. Rules known to refuse ordinary prose run only from
a higher paranoia level than CRS gives them (`RAISED_RULES`).

`CrsPolicy.parse` reads what a proxy says of a route's crs (`controlplane.firewall.policy.
crs_policy_text`); `Inspector.inspect` runs the request rules of the CRS (phases 1 and 2: the
URI, the headers, the body it was given) at that policy's paranoia level, anomaly threshold and
exclusions, and says whether to block and which rules matched. Both proxies' front doors (gRPC
ext_authz for Envoy, SPOP for HAProxy) build the same `HttpRequest`, so a request gets the same
verdict through either.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import libmodsecurity

CRS_RULES = Path("/usr/share/modsecurity-crs/rules")
"""Where Debian's `modsecurity-crs` package puts the rules."""
SKIPPED_FILES = frozenset({"REQUEST-910-IP-REPUTATION.conf"})
"""Needs GeoIP, which the PyPI libmodsecurity build lacks."""
SUMMARY_RULES = frozenset({949110, 980130})
"""The anomaly evaluation and correlation rules: they summarise, they detect nothing."""
RAISED_RULES = {942190: 2}
"""CRS rules that run only from this paranoia level. 942190 (paranoia level 1 in CRS 3.3 and
4) reads `union`, some words, then `select` as MSSQL injection in any argument, so prose such as
"I love union and selecting shoes" is refused; its false-positive record (SpiderLabs/
owasp-modsecurity-crs#1529, coreruleset/coreruleset#2047 and #4289) and the corpus, where each
attack it matches is also matched by 942100 (libinjection, enough alone to block), put it at
paranoia level 2 (docs/model.md)."""
_POLICY = re.compile(r"m=(?P<m>[bd]);pl=(?P<pl>[1-4]);t=(?P<t>[0-9]{1,5})(;x=(?P<x>[0-9,]+))?")


class PolicyError(ValueError):
    """A policy text no compiler writes."""


@dataclass(frozen=True)
class CrsPolicy:
    """One route's crs as the service applies it."""

    block: bool
    paranoia_level: int
    anomaly_threshold: int
    exclusions: tuple[int, ...] = ()

    @classmethod
    def parse(cls, text: str) -> CrsPolicy:
        found = _POLICY.fullmatch(text)
        if found is None:
            raise PolicyError(f"not a crs policy: {text[:80]!r}")
        excluded = tuple(int(x) for x in found["x"].split(",")) if found["x"] else ()
        if any(not 1 <= rule <= 999_999 for rule in excluded):
            raise PolicyError("an excluded rule id is out of range")
        return cls(found["m"] == "b", int(found["pl"]), int(found["t"]), excluded)


@dataclass(frozen=True)
class HttpRequest:
    """A request as both proxies describe it: `uri` is the path and query as sent, `headers`
    in order (Host as `host`), `body` its first bytes."""

    method: str
    uri: str
    version: str
    headers: tuple[tuple[str, str], ...]
    body: bytes = b""
    client: str = "127.0.0.1"


@dataclass(frozen=True)
class Verdict:
    """Whether to refuse the request, and the CRS rules it matched (summaries left out)."""

    block: bool
    rules: tuple[int, ...] = field(default_factory=tuple)


def _setup(policy: CrsPolicy, max_body: int) -> tuple[str, str]:
    raised = (rule for rule, level in RAISED_RULES.items() if policy.paranoia_level < level)
    off = sorted({*policy.exclusions, *raised})
    removed = "".join(f"SecRuleRemoveById {rule}\n" for rule in off)
    return (
        f"""
SecRuleEngine On
SecRequestBodyAccess On
SecRequestBodyLimit {max(max_body, 1)}
SecRequestBodyNoFilesLimit {max(max_body, 1)}
SecRequestBodyLimitAction ProcessPartial
SecResponseBodyAccess Off
SecAuditEngine Off
SecDefaultAction "phase:1,log,auditlog,pass"
SecDefaultAction "phase:2,log,auditlog,pass"
SecRule REQUEST_HEADERS:Content-Type "@rx ^application/json" \
  "id:200001,phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=JSON"
SecAction "id:900000,phase:1,pass,nolog,t:none,setvar:tx.paranoia_level={policy.paranoia_level}"
SecAction "id:900110,phase:1,pass,nolog,t:none,\\
  setvar:tx.inbound_anomaly_score_threshold={policy.anomaly_threshold},\\
  setvar:tx.outbound_anomaly_score_threshold=4"
SecAction "id:900200,phase:1,pass,nolog,t:none,\\
  setvar:'tx.allowed_methods=GET HEAD POST PUT DELETE PATCH OPTIONS TRACE'"
SecAction "id:900990,phase:1,pass,nolog,t:none,setvar:tx.crs_setup_version=334"
""",
        removed,
    )


class Inspector:
    """The engine and one compiled rule set per policy (at most `cache` kept)."""

    def __init__(self, rules_dir: Path = CRS_RULES, max_body: int = 8192, cache: int = 32):
        self._lib = libmodsecurity
        self.engine = libmodsecurity.ModSecurity()
        self.engine.set_connector_information("controlplane waf-serve")
        self.rules_dir = rules_dir
        self.max_body = max_body
        self._files = sorted(
            p for p in rules_dir.glob("REQUEST-*.conf") if p.name not in SKIPPED_FILES
        )
        if not self._files:
            raise FileNotFoundError(f"no CRS rules in {rules_dir} (apt install modsecurity-crs)")
        self._sets: OrderedDict[CrsPolicy, libmodsecurity.RulesSet] = OrderedDict()
        self._cache = cache
        self._hits: list[int] = []
        self.engine.set_rule_message_callback(lambda message: self._hits.append(message.rule_id))

    @property
    def version(self) -> str:
        return str(self.engine.who_am_i())

    def rules_for(self, policy: CrsPolicy) -> libmodsecurity.RulesSet:
        """The compiled rule set of `policy`."""
        found = self._sets.get(policy)
        if found is not None:
            self._sets.move_to_end(policy)
            return found
        rules = self._lib.RulesSet()
        setup, removed = _setup(policy, self.max_body)
        if rules.load(setup) < 0:
            raise RuntimeError(rules.get_parser_error())
        for path in self._files:
            if rules.load_from_uri(str(path)) < 0:
                raise RuntimeError(rules.get_parser_error())
        if removed and rules.load(removed) < 0:
            raise RuntimeError(rules.get_parser_error())
        self._sets[policy] = rules
        if len(self._sets) > self._cache:
            self._sets.popitem(last=False)
        return rules

    def inspect(self, request: HttpRequest, policy: CrsPolicy) -> Verdict:
        """The CRS's verdict on `request` under `policy`."""
        rules = self.rules_for(policy)
        self._hits.clear()
        transaction = self._lib.Transaction(self.engine, rules)
        blocked = False
        transaction.process_connection(request.client, 0, "127.0.0.1", 0)
        transaction.process_uri(request.uri, request.method, request.version)
        for name, value in request.headers:
            transaction.add_request_header(name, value)
        transaction.process_request_headers()
        blocked = _disrupts(transaction.intervention())
        if not blocked:
            if request.body:
                transaction.append_request_body(request.body[: self.max_body])
            transaction.process_request_body()
            blocked = _disrupts(transaction.intervention())
        transaction.process_logging()
        matched = tuple(sorted({r for r in self._hits if r not in SUMMARY_RULES}))
        return Verdict(blocked, matched)


def _disrupts(intervention: object) -> bool:
    return intervention is not None and bool(getattr(intervention, "disruptive", False))
