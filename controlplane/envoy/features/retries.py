"""Retries: up to `attempts` more tries on the listed conditions, each on an endpoint not tried
yet when one exists, each attempt bounded by the route's timeout (its total is set by the
route's action)."""

from __future__ import annotations

from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.retry.host.previous_hosts.v3 import previous_hosts_pb2
from google.protobuf import wrappers_pb2

from ...model import Route
from ..common import duration, packed
from .base import Feature, RouteScope

_RETRY_ON = {
    "connect_failure": "connect-failure",
    "reset": "reset",
    "gateway_error": "gateway-error",
    "5xx": "5xx",
}

HOST_SELECTION_ATTEMPTS = 5
"""How often Envoy re-picks an endpoint for a retry before settling for one already tried."""


def retry_policy(model_route: Route) -> rc.RetryPolicy:
    """Retries on the listed conditions, each on an endpoint not tried yet when one exists,
    each attempt bounded by the route's timeout."""
    assert model_route.retries is not None
    retries = model_route.retries
    conditions = sorted({_RETRY_ON[c] for c in retries.retry_on})
    return rc.RetryPolicy(
        retry_on=",".join(conditions),
        num_retries=wrappers_pb2.UInt32Value(value=retries.attempts),
        per_try_timeout=duration(model_route.timeout),
        retry_host_predicate=[
            rc.RetryPolicy.RetryHostPredicate(
                name="envoy.retry_host_predicates.previous_hosts",
                typed_config=packed(previous_hosts_pb2.PreviousHostsPredicate()),
            )
        ],
        host_selection_retry_max_attempts=HOST_SELECTION_ATTEMPTS,
    )


class Retries(Feature):
    """A forwarding route's `retries`."""

    name = "retries"

    def route(self, route: Route, result: rc.Route, scope: RouteScope) -> None:
        if route.backends is not None and route.retries is not None:
            result.route.retry_policy.CopyFrom(retry_policy(route))


FEATURE = Retries()
