"""Request rate limits (`rate_limit` of routes and virtual hosts): Envoy's local rate limit.

Each limited route carries a `envoy.filters.http.local_ratelimit` config of its own (its own
buckets, shared by the workers): the route's token bucket, and for a `client_ip` or header key
a dynamic descriptor per key value (`max_dynamic_descriptors`: the keys kept). Requests without
the key header find no descriptor and share the route's bucket (`always_consume_default_token_
bucket: false` keeps the others out of it); with `missing: deny` an RBAC filter that runs first
answers them 403.

Answers of a limited route carry `x-ratelimit-limit` (the bucket's size),
`x-ratelimit-remaining` and `x-ratelimit-reset` (seconds until a token is back; draft 03);
a 429 also carries `retry-after`: the seconds a token takes to come back, rounded up.
"""

from __future__ import annotations

from collections.abc import Iterable

from envoy.config.core.v3 import base_pb2
from envoy.config.rbac.v3 import rbac_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.common.ratelimit.v3 import ratelimit_pb2
from envoy.extensions.filters.http.local_ratelimit.v3 import local_rate_limit_pb2 as lrl
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as rbac_filter
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm,
)
from envoy.type.v3 import percent_pb2, token_bucket_pb2
from google.protobuf import wrappers_pb2

from ...model import KEYS_KEPT, Listener, RateLimit, Route, TokenBucket
from ..common import duration, packed
from .base import Feature, RouteScope

LOCAL_RATE_LIMIT = "envoy.filters.http.local_ratelimit"
KEY_CHECK = "controlplane.rate_limit_key"
"""The RBAC filter refusing requests without their key header (`missing: deny`)."""
STAT_PREFIX = "rate_limit"
KEY = "key"
"""The descriptor entry of a header key's value."""
REMOTE_ADDRESS = "remote_address"
"""The descriptor entry Envoy's `remote_address` action gives."""

_ALWAYS = base_pb2.RuntimeFractionalPercent(
    default_value=percent_pb2.FractionalPercent(
        numerator=100, denominator=percent_pb2.FractionalPercent.HUNDRED
    )
)


def _limits(listener: Listener) -> Iterable[RateLimit]:
    for vhost in listener.virtual_hosts:
        for route in vhost.routes:
            limit = vhost.rate_limit_of(route)
            if limit is not None:
                yield limit


def _token_bucket(bucket: TokenBucket) -> token_bucket_pb2.TokenBucket:
    return token_bucket_pb2.TokenBucket(
        max_tokens=bucket.capacity,
        tokens_per_fill=wrappers_pb2.UInt32Value(value=bucket.requests),
        fill_interval=duration(bucket.per_ms),
    )


def local_rate_limit(limit: RateLimit, bucket: TokenBucket) -> lrl.LocalRateLimit:
    """One route's local rate limit: `bucket` for the route, or per value of its key."""
    config = lrl.LocalRateLimit(
        stat_prefix=STAT_PREFIX,
        token_bucket=_token_bucket(bucket),
        filter_enabled=_ALWAYS,
        filter_enforced=_ALWAYS,
        enable_x_ratelimit_headers=ratelimit_pb2.DRAFT_VERSION_03,
        response_headers_to_add=[
            base_pb2.HeaderValueOption(
                header=base_pb2.HeaderValue(key="retry-after", value=str(bucket.retry_after)),
                append_action=base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD,
            )
        ],
    )
    action: rc.RateLimit.Action | None = None
    entry = ""
    if limit.key == "client_ip":
        action = rc.RateLimit.Action(remote_address=rc.RateLimit.Action.RemoteAddress())
        entry = REMOTE_ADDRESS
    elif limit.header is not None:
        action = rc.RateLimit.Action(
            request_headers=rc.RateLimit.Action.RequestHeaders(
                header_name=limit.header.header, descriptor_key=KEY
            )
        )
        entry = KEY
    if action is not None:
        config.rate_limits.append(rc.RateLimit(actions=[action]))
        config.descriptors.append(
            ratelimit_pb2.LocalRateLimitDescriptor(
                entries=[ratelimit_pb2.RateLimitDescriptor.Entry(key=entry)],  # any value
                token_bucket=_token_bucket(bucket),
            )
        )
        config.always_consume_default_token_bucket.value = False
        config.max_dynamic_descriptors.value = KEYS_KEPT
    return config


def key_required(header: str) -> rbac_filter.RBACPerRoute:
    """Admit only requests that carry `header`."""
    policy = rbac_pb2.Policy(
        permissions=[rbac_pb2.Permission(any=True)],
        principals=[rbac_pb2.Principal(header=rc.HeaderMatcher(name=header, present_match=True))],
    )
    return rbac_filter.RBACPerRoute(
        rbac=rbac_filter.RBAC(
            rules=rbac_pb2.RBAC(action=rbac_pb2.RBAC.ALLOW, policies={"key": policy})
        )
    )


class RateLimits(Feature):
    """`rate_limit` of routes and virtual hosts."""

    name = "rate_limits"

    def http_filters(self, listener: Listener) -> Iterable[hcm.HttpFilter]:
        limits = list(_limits(listener))
        if any(limit.header is not None and limit.header.missing == "deny" for limit in limits):
            yield hcm.HttpFilter(name=KEY_CHECK, typed_config=packed(rbac_filter.RBAC()))
        if limits:
            yield hcm.HttpFilter(
                name=LOCAL_RATE_LIMIT,
                typed_config=packed(lrl.LocalRateLimit(stat_prefix=STAT_PREFIX)),
            )

    def route(self, route: Route, result: rc.Route, scope: RouteScope) -> None:
        limit = scope.vhost.rate_limit_of(route)
        if limit is None:
            return
        bucket = limit.per_proxy(scope.facts.members)
        result.typed_per_filter_config[LOCAL_RATE_LIMIT].CopyFrom(
            packed(local_rate_limit(limit, bucket))
        )
        if limit.header is not None and limit.header.missing == "deny":
            result.typed_per_filter_config[KEY_CHECK].CopyFrom(
                packed(key_required(limit.header.header))
            )


FEATURE = RateLimits()
