"""Every request a scenario sends, checked against `controlplane explain`: the backend a client
observed must be one the decision forwards to, and an answer the proxy gives itself must be
the one the decision names. So every scenario, on every proxy, proves the explainer."""

from __future__ import annotations

from collections.abc import Mapping

from controlplane.explain import explain
from controlplane.model import Config
from controlplane.model.decision import Decision, Request
from tests.harness import clients

from .format import Step
from .sending import LOOPBACK, ListenerAt, Observation

GATEWAY_ERRORS = frozenset({502, 503, 504})
"""What a proxy answers itself when the backends it forwards to fail; not explain's business."""
RATE_LIMITED = 429


def _written(step: Step, raw: str) -> Request:
    """The request a `raw` step writes: its request line, its headers (a repeated one's values
    joined by ", ", their HTTP meaning) and its body."""
    head, _, body = raw.partition("\r\n\r\n")
    line, *fields = head.split("\r\n")
    method, target, _ = line.split(" ", 2)
    headers: dict[str, str] = {}
    for field in fields:
        name, _, value = field.partition(":")
        name, value = name.strip().lower(), value.strip()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    host = headers.pop("host", None)
    client = step.source or LOOPBACK
    return Request(
        listener=step.listener,
        host=host,
        path=target,
        method=method,
        headers=headers,
        client_ip=client,
        body=body or None,
    )


def request_of(step: Step, listener: ListenerAt) -> Request:
    """The request (or connection) a step sends, as `explain` takes it."""
    if step.raw is not None:
        return _written(step, step.raw)
    own_address = f"{LOOPBACK}:{listener.port}"
    headers = {name.lower(): value for name, value in step.headers.items()}
    path, method = step.path, step.method
    if step.kind == "websocket":
        headers |= {"upgrade": "websocket", "connection": "Upgrade"}
    if step.kind == "grpc":
        path = clients.DEFAULT_GRPC_METHOD if step.path == "/" else step.path
        method = "POST"
        headers |= {"content-type": "application/grpc", "te": "trailers"}
    host = step.host or own_address if step.kind in ("http", "websocket", "grpc") else None
    sni = step.sni
    if sni is None and step.kind == "http" and listener.protocol == "https" and step.host:
        sni = step.host.rsplit(":", 1)[0]
    client = step.proxy_protocol.rsplit(":", 1)[0] if step.proxy_protocol else step.source
    return Request(
        listener=step.listener,
        host=host,
        path=path,
        method=method,
        headers=headers,
        sni=sni,
        client_ip=client or LOOPBACK,
        body=step.body if step.kind == "http" else None,
    )


def explained(config: Config, step: Step, listener: ListenerAt) -> Decision:
    return explain(config, request_of(step, listener))


def disagreements(
    decision: Decision, observations: list[Observation], backend_names: Mapping[str, str]
) -> list[str]:
    """Where what the client observed disagrees with `decision`; `backend_names` gives the
    scenario backend listening at each endpoint address."""
    action = decision.action
    allowed = {
        backend_names[e.address]
        for share in action.backends
        for e in share.endpoints
        if e.address in backend_names
    }
    # a verdict the model cannot foresee (the CRS's) may answer instead of the action
    may_answer = {p.may_answer for p in decision.policies if p.may_answer is not None}
    found = []
    for number, seen in enumerate(observations):
        problem = None
        if seen.backend is None and seen.status in may_answer:
            continue
        if action.kind == "forward":
            if seen.backend is not None and seen.backend not in allowed:
                problem = (
                    f"backend {seen.backend!r} answered; explain forwards to {sorted(allowed)}"
                )
            elif seen.backend is None and _answered_itself(seen, decision):
                problem = (
                    f"the proxy answered {seen.status} itself; explain forwards to "
                    f"{sorted(allowed)}"
                )
        elif action.kind == "closed":
            if seen.backend is not None:
                problem = f"backend {seen.backend!r} answered; explain says the connection closes"
        elif seen.backend is not None or seen.status != action.status:
            problem = (
                f"{seen.summary()}; explain says the proxy answers {action.status} itself "
                f"({action.kind})"
            )
        if problem is not None:
            found.append(f"request {number + 1}: {problem}")
    return found[:5]


def _answered_itself(seen: Observation, decision: Decision) -> bool:
    """An answer without a backend that no failing backend explains, nor a rate limit the
    decision names (whether its bucket is empty is the proxy's state, not explain's)."""
    failed = seen.error is not None or seen.status in GATEWAY_ERRORS
    limited = seen.status == RATE_LIMITED and any(p.kind == "rate_limit" for p in decision.policies)
    return not failed and not limited and seen.upgraded is not True
