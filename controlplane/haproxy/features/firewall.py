"""Firewall policies: address rules of every listener (`addresses`), and the L7 rules and CRS
inspection of HTTP routes (`firewall`, the listener's or a route's own).

- Address rules: `tcp-request connection reject` (`tcp-request session` where the listener
  accepts the PROXY protocol, whose source is known only then) matching `src` against pattern
  files of the bundle (`-f`, a tree lookup however long the list).
- L7 rules: the shared Lua core (`controlplane/firewall/lua`), loaded in `global` and run as
  `lua.firewall` only for routes whose firewall has L7 rules, and only for requests that fire
  one of its triggers (`controlplane.firewall.triggers`), natively checked ACLs: a map keyed
  by route id gives the policy's data text (`controlplane.firewall.policy`), never code, and
  another the number of its triggers' condition; phrases are in pattern files.
- CRS: SPOE (`filter spoe`, `send-spoe-group`) to the verdict service on the port after the
  crs `service`, for routes with a crs: a map gives what the service is told; its answer
  (`txn.waf.block`, `txn.waf.rules`) or its failure (`txn.waf.error`, when fail-closed)
  answers 403.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from ...firewall.policy import crs_policy_text, policy_text
from ...firewall.sources import lua_source
from ...firewall.triggers import Triggers, Watch, triggers
from ...model import Firewall, Listener, effective_firewall, split_address
from ...model.firewall import BLOCKED_BODY, CRS_HEADER, RULES_HEADER
from ...model.types import HostPort
from ..render_text import RESOLVERS, Raw, address
from ..scopes import GlobalScope, ListenerScope, RouteEntry
from ..templating import render_template
from .base import Feature


def _firewall_of(scope: ListenerScope, entry: RouteEntry) -> Firewall | None:
    return effective_firewall(scope.listener.firewall, entry.route.firewall)


def uses_lua(listener: Listener) -> bool:
    """Whether a route of `listener` runs L7 rules."""
    return any(fw is not None and fw.has_l7_rules for fw in listener.route_firewalls())


@dataclass(frozen=True)
class Head:
    """Frontend lines: address pattern files, body buffering, the SPOE filter."""

    stage: str
    """`connection`, or `session` behind the PROXY protocol (its source is known then)."""
    deny: str | None
    allow: str | None
    buffer_body: bool
    spoe: str | None


@dataclass(frozen=True)
class Checks:
    """The request rules: the L7 maps (None: no route has rules) and the conditions of the
    triggers, the CRS map and failure."""

    rules_map: str | None
    triggers_map: str | None
    conditions: list[list[Raw]]
    """For the routes whose triggers are number i + 1, the ACL criteria any one of which
    fires."""
    crs_map: str | None
    fail_closed: bool
    blocked_body: str = BLOCKED_BODY


@dataclass(frozen=True)
class Answers:
    """Response headers naming detections."""

    rules_header: str | None
    crs_header: str | None


@dataclass(frozen=True)
class VerdictBackend:
    """The backend SPOE reaches the verdict service through."""

    name: str
    server: str
    timeout: str
    resolvers: str | None = None
    """The resolvers a service given by host name is found through (None: an IP address)."""


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class FirewallFeature(Feature):
    name = "firewall"

    def global_section(self, scope: GlobalScope) -> str | None:
        if not any(uses_lua(listener) for listener in scope.config.listeners):
            return None
        return scope.files.add("firewall", "lua", lua_source("haproxy"))

    def frontend(self, scope: ListenerScope) -> Head | None:
        listener = scope.listener
        rules = listener.addresses
        deny = allow = None
        if rules is not None:
            if rules.deny:
                deny = scope.files.add(f"{listener.name}.deny", "acl", _lines(rules.deny))
            if rules.allow:
                allow = scope.files.add(f"{listener.name}.allow", "acl", _lines(rules.allow))
        crs = listener.verdict_service()
        reads_body = any(
            fw is not None and fw.reads_body
            for entry in scope.routes
            for fw in [_firewall_of(scope, entry)]
        )
        buffer_body = reads_body or (crs is not None and crs.max_body_bytes > 0)
        spoe = None
        if crs is not None:
            spoe_conf, _ = render_template(
                "features/firewall/spoe.conf.j2",
                backend=_verdict_backend_name(listener),
                timeout=f"{crs.timeout}ms",
                body_bytes=crs.max_body_bytes,
            )
            spoe = scope.files.add(f"{listener.name}.waf", "spoe", spoe_conf)
        if deny is None and allow is None and not buffer_body and spoe is None:
            return None
        stage = "session" if listener.accept_proxy_protocol else "connection"
        return Head(stage, deny, allow, buffer_body, spoe)

    def request(self, scope: ListenerScope) -> Checks | None:
        crs = scope.listener.verdict_service()
        numbers: dict[Triggers, int] = {}
        for entry in scope.routes:
            firewall = _firewall_of(scope, entry)
            if firewall is None:
                continue
            text = policy_text(firewall)
            if text is not None:
                scope.maps.add("firewall", entry.id, text)
                number = numbers.setdefault(triggers(firewall), len(numbers) + 1)
                scope.maps.add("firewall.triggers", entry.id, str(number))
            crs_text = crs_policy_text(firewall)
            if crs_text is not None:
                scope.maps.add("waf", entry.id, crs_text)
        rules_map = scope.maps.name("firewall") if "firewall" in scope.maps else None
        crs_map = scope.maps.name("waf") if "waf" in scope.maps else None
        if rules_map is None and crs_map is None:
            return None
        files = _PatternFiles(scope, scope.listener.name)
        return Checks(
            rules_map,
            scope.maps.name("firewall.triggers") if rules_map is not None else None,
            [files.criteria(each, number) for each, number in numbers.items()],
            crs_map,
            crs is not None and crs.failure == "closed",
        )

    def response(self, scope: ListenerScope) -> Answers | None:
        has_rules = "firewall" in scope.maps
        has_crs = "waf" in scope.maps
        if not has_rules and not has_crs:
            return None
        return Answers(
            RULES_HEADER if has_rules else None,
            CRS_HEADER if has_crs else None,
        )

    def sections(self, scope: ListenerScope) -> VerdictBackend | None:
        crs = scope.listener.verdict_service()
        if crs is None:
            return None
        host, port = split_address(crs.service)
        spop = address(HostPort(host, port + 1))
        resolvers = None if _is_ip(host) else RESOLVERS
        return VerdictBackend(
            _verdict_backend_name(scope.listener), spop, f"{crs.timeout}ms", resolvers
        )


@dataclass(frozen=True)
class _PatternFiles:
    """How one listener's triggers become ACL criteria, their phrases in pattern files."""

    scope: ListenerScope
    listener: str

    def criteria(self, found: Triggers, number: int) -> list[Raw]:
        """The criteria of `found`, declared under one ACL name: any one fires."""
        if found.always:
            return [Raw("always_true")]
        criteria = []
        if found.methods is not None:
            allowed = "|".join(re.escape(method) for method in found.methods)
            others = f"^(?!(?:{allowed})$)"
            criteria.append(Raw("method -m reg %s") % others)
        criteria += self._watch(Raw("url"), found.target, f"{number}.target", None)
        for index, (name, watch) in enumerate(found.headers, 1):
            fetch = Raw("req.fhdr(%s)") % name
            criteria += self._watch(fetch, watch, f"{number}.header{index}", name)
        if found.target_longer is not None:
            criteria.append(Raw("url_len gt %s") % found.target_longer)
        if found.headers_longer is not None:
            criteria.append(Raw("req.hdrs,length gt %s") % found.headers_longer)
        if found.content_length_above is not None:
            criteria.append(Raw("req.hdr_val(content-length) gt %s") % found.content_length_above)
        if found.host_missing:
            criteria += [Raw("req.hdr_cnt(host) 0 2:"), Raw("req.fhdr(host) -m len 0")]
        return criteria

    def _watch(self, fetch: Raw, watch: Watch, stem: str, header: str | None) -> list[Raw]:
        lines = None if watch.present else _pattern_lines(watch.phrases)
        if lines is None:
            return [Raw("req.hdr_cnt(%s) gt 0") % header if header else Raw("always_true")]
        criteria = []
        if lines:
            name = self.scope.files.add(f"{self.listener}.fw{stem}", "pat", lines)
            criteria.append(Raw("%s -m sub -i -f %s") % (fetch, name))
        if watch.blanks:
            criteria.append(Raw("%s -m reg [[:space:]]") % fetch)
        return criteria


def _pattern_lines(phrases: tuple[str, ...]) -> str | None:
    """A pattern file's text finding every value that contains one of `phrases`: each as
    written, but from its first character a pattern file keeps (it skips leading blanks and
    reads a leading `#` as a comment); a shorter phrase is found wherever the phrase is.
    None when a phrase has nothing such a file can hold (then any value fires)."""
    lines = []
    for phrase in phrases:
        kept = phrase.lstrip(" #")
        if not kept:
            return None
        lines.append(f"{kept}\n")
    return "".join(lines)


def _verdict_backend_name(listener: Listener) -> str:
    return f"waf.{listener.name}"


def _lines(cidrs: list[str]) -> str:
    return "".join(f"{cidr}\n" for cidr in cidrs)
