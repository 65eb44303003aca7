"""What each proxy cannot express: `check(config, target)` refuses it by field and proxy."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

from .config import Config
from .errors import ConfigError, Issue, PathPart
from .kinds import ProxyKind
from .limits import RateLimit
from .parts import PARTS
from .route import Route, ValueMatch

TargetRule = Callable[[Config], Iterator[Issue]]


def _haproxy_has_no_maglev(config: Config) -> Iterator[Issue]:
    for ci, cluster in enumerate(config.clusters):
        if cluster.lb_policy == "maglev":
            yield Issue(
                ("clusters", ci, "lb_policy"),
                "haproxy has no maglev hashing; use ring_hash (consistent hashing)",
            )


def _value_matches(config: Config) -> Iterator[tuple[tuple[PathPart, ...], str, ValueMatch]]:
    """Every header, query and cookie condition: its path, its field, the condition."""
    for li, listener in enumerate(config.listeners):
        for vi, vhost in enumerate(listener.virtual_hosts):
            for ri in PARTS.positions(_conditioned, vhost, "routes"):
                route = vhost.routes[ri]
                for field in ("headers", "query", "cookies"):
                    for mi, item in enumerate(getattr(route.match, field)):
                        path = ("listeners", li, "virtual_hosts", vi, "routes", ri, "match")
                        yield (*path, field, mi), field, item


def _conditioned(route: Route) -> bool:
    """Whether the route has header, query or cookie conditions."""
    return bool(route.match.headers or route.match.query or route.match.cookies)


def _envoy_cannot_match_absent_query(config: Config) -> Iterator[Issue]:
    for path, field, item in _value_matches(config):
        if field == "query" and item.present is False:
            yield Issue((*path, "present"), "envoy cannot match an absent query parameter")


_HAPROXY_SAFE_NAME = re.compile(r"[A-Za-z0-9._~*+!-]+", re.ASCII)


def _haproxy_names_fit_fetch_arguments(config: Config) -> Iterator[Issue]:
    for path, _, item in _value_matches(config):
        if not _HAPROXY_SAFE_NAME.fullmatch(item.name):
            yield Issue(
                (*path, "name"),
                "haproxy reads this name inside a sample fetch argument; use "
                "letters, digits and . _ ~ * + ! - only",
            )


def _haproxy_cannot_mirror(config: Config) -> Iterator[Issue]:
    for li, listener in enumerate(config.listeners):
        for vi, vhost in enumerate(listener.virtual_hosts):
            for ri in PARTS.positions(_mirrors, vhost, "routes"):
                yield Issue(
                    ("listeners", li, "virtual_hosts", vi, "routes", ri, "mirrors"),
                    "haproxy 2.6 cannot mirror requests (it has no request mirroring; "
                    "serve mirrored routes with envoy)",
                )


def _mirrors(route: Route) -> bool:
    return bool(route.mirrors)


def _envoy_has_no_queue_timeout(config: Config) -> Iterator[Issue]:
    for ci, cluster in enumerate(config.clusters):
        if cluster.queue_timeout is not None:
            yield Issue(
                ("clusters", ci, "queue_timeout"),
                "envoy cannot bound the time a request waits for a connection (it waits as "
                "long as its route's timeout allows); bound the queue with max_pending_requests",
            )


def rate_limits(config: Config) -> Iterator[tuple[tuple[PathPart, ...], RateLimit]]:
    """Every rate limit a config sets (virtual host defaults and routes), with its path."""
    for li, listener in enumerate(config.listeners):
        for vi, vhost in enumerate(listener.virtual_hosts):
            path: tuple[PathPart, ...] = ("listeners", li, "virtual_hosts", vi)
            if vhost.rate_limit is not None:
                yield (*path, "rate_limit"), vhost.rate_limit
            for ri in PARTS.positions(_limited, vhost, "routes"):
                limit = vhost.routes[ri].rate_limit
                assert isinstance(limit, RateLimit)
                yield (*path, "routes", ri, "rate_limit"), limit


def _limited(route: Route) -> bool:
    """Whether the route sets a rate limit of its own."""
    return isinstance(route.rate_limit, RateLimit)


MAX_HAPROXY_REFILL_MS = 24 * 86_400_000
"""HAProxy keeps a bucket's state in 32 bits of milliseconds (a time at most 24.8 days ahead):
an empty bucket must fill within 24 days."""


def _haproxy_buckets_fit(config: Config) -> Iterator[Issue]:
    for path, limit in rate_limits(config):
        if limit.per_proxy().refill_ms > MAX_HAPROXY_REFILL_MS:
            yield Issue(
                (*path, "burst"),
                "haproxy keeps a bucket in 32 bits of milliseconds: an empty bucket must fill "
                "within 24 days (burst x per / requests)",
            )


RULES_BY_TARGET: dict[ProxyKind, tuple[TargetRule, ...]] = {
    "envoy": (_envoy_cannot_match_absent_query, _envoy_has_no_queue_timeout),
    "haproxy": (
        _haproxy_has_no_maglev,
        _haproxy_names_fit_fetch_arguments,
        _haproxy_buckets_fit,
        _haproxy_cannot_mirror,
    ),
}


def target_issues(config: Config, target: ProxyKind) -> list[Issue]:
    """What `target` cannot express in `config`; each message names the proxy."""
    return [issue for rule in RULES_BY_TARGET[target] for issue in rule(config)]


def check(config: Config, target: ProxyKind) -> None:
    """Raise ConfigError when `target` cannot express `config`."""
    issues = target_issues(config, target)
    if issues:
        raise ConfigError(issues)
