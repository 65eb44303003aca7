"""The Envoy compiler's features: one module per route- or listener-level feature, registered
in `FEATURES`, as Envoy Gateway registers its HTTP filters.

A feature reads its own fields of the model and adds to what the compiler builds, at these
points (each a method with a no-op default in `Feature`):

- `route(route, result, scope)`: the Envoy route of a model route (its action already built;
  `scope` holds its listener, its virtual host and the group's facts);
- `http_filters(listener)`: HTTP filters the listener's connection manager runs, before the
  router (a policy that needs one: rate limits, firewall rules);
- `network_filters(listener)`: network filters every filter chain of the listener runs first
  (L3/L4 policies that act on the first bytes);
- `listener(listener, result)`: the built Envoy listener, to change its filter chains or
  their match (address rules refuse connections there, before any byte is read).

Features are applied in `FEATURES` order; see docs/contributing.md for the recipe.
"""

from __future__ import annotations

from . import connection_limits, firewall, headers, rate_limits, retries
from .base import Feature, RouteScope

FEATURES: tuple[Feature, ...] = (
    firewall.FEATURE,
    connection_limits.FEATURE,
    rate_limits.FEATURE,
    headers.FEATURE,
    retries.FEATURE,
)
"""Every feature, in the order they are applied."""

__all__ = ["FEATURES", "Feature", "RouteScope"]
