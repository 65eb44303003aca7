"""Cookie affinity: Envoy's stateful-session filter with a cookie naming the endpoint.

A client without the cookie is balanced by the cluster's policy; the answer sets the cookie
(Envoy writes the endpoint's address in it), and later requests carrying it go to that
endpoint while it is healthy, as HAProxy's inserted cookie does. The listener runs the filter
without a session state of its own (it does nothing there); routes to cookie clusters enable
it with their cookie.
"""

from __future__ import annotations

from envoy.extensions.filters.http.stateful_session.v3 import stateful_session_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm,
)
from envoy.extensions.http.stateful_session.cookie.v3 import cookie_pb2
from envoy.type.http.v3 import cookie_pb2 as http_cookie_pb2
from google.protobuf import any_pb2

from ..model import HashCookie, Listener
from .common import Affinities, duration, extension, packed

STATEFUL_SESSION = "envoy.filters.http.stateful_session"
COOKIE_SESSION_STATE = "envoy.http.stateful_session.cookie"


def uses_session_cookies(listener: Listener, affinities: Affinities) -> bool:
    """Whether a route of `listener` forwards to a cluster with cookie affinity."""
    for vhost in listener.virtual_hosts:
        for route in vhost.routes:
            for backend in route.backends or ():
                hash_on = affinities.get(backend.cluster)
                if hash_on is not None and hash_on.cookie:
                    return True
    return False


def session_filter() -> hcm.HttpFilter:
    """The filter of a listener with cookie routes; inert until a route enables it."""
    return hcm.HttpFilter(
        name=STATEFUL_SESSION, typed_config=packed(stateful_session_pb2.StatefulSession())
    )


def session_cookie_config(cookie: HashCookie) -> tuple[str, any_pb2.Any]:
    """The per-route configuration that keeps a route's clients on their endpoints."""
    state = cookie_pb2.CookieBasedSessionState(
        cookie=http_cookie_pb2.Cookie(name=cookie.name, ttl=duration(cookie.ttl), path=cookie.path)
    )
    per_route = stateful_session_pb2.StatefulSessionPerRoute(
        stateful_session=stateful_session_pb2.StatefulSession(
            session_state=extension(COOKIE_SESSION_STATE, state)
        )
    )
    return STATEFUL_SESSION, packed(per_route)
