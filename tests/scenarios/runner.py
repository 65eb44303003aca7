"""Playing a scenario against one real proxy and asserting what its clients observe."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import cast

from controlplane.model import Config, ConfigError, format_path, target_issues
from tests.harness.backends import BackendFleet, BackendSpec
from tests.harness.backends import BackendKind as HarnessKind
from tests.harness.ports import free_port
from tests.harness.target import Target
from tests.harness.verdicts import VerdictService

from .addressing import concrete_config, listener_names
from .expectations import mismatches
from .explained import disagreements, explained
from .format import BackendDecl, ProxyName, Scenario, Step
from .sending import LOOPBACK, ListenerAt, Observation, send

POLL_INTERVAL = 0.1


class ScenarioFailure(AssertionError):
    """A target did not behave as a scenario expects."""


def proxy_of(target: Target) -> ProxyName:
    """Which proxy a target runs, from its name (`envoy-sotw` → envoy)."""
    for proxy in ("envoy", "haproxy"):
        if target.name.startswith(proxy):
            return cast(ProxyName, proxy)
    raise ValueError(f"target {target.name!r} names no known proxy")


def play(scenario: Scenario, target: Target) -> None:
    """Start the scenario's backends, give `target` the config and check every step.

    On the proxy named by `rejected_by`, checks the refusal instead and sends nothing.
    Raises ScenarioFailure naming the scenario, step and target on the first failing step.
    """
    proxy = proxy_of(target)
    with _running_backends(scenario.backends) as addresses:
        listeners = {name: f"{LOOPBACK}:{free_port()}" for name in listener_names(scenario)}
        try:
            config = concrete_config(scenario, addresses, listeners)
        except ConfigError as exc:
            raise ScenarioFailure(
                f"{scenario.name}: the config does not validate:\n{exc}"
            ) from None
        issues = target_issues(config, proxy)
        rejected = scenario.rejected_by
        if rejected is not None and rejected.target == proxy:
            _check_refusal(scenario, target, [(format_path(i.path), i.message) for i in issues])
            return
        if issues:
            text = "\n".join(str(issue) for issue in issues)
            raise ScenarioFailure(f"{scenario.name} on {target.name}: refused:\n{text}")
        target.apply(config, scenario.group)
        protocols = {x.name: x.protocol for x in config.listeners}
        names = {address: name for name, address in addresses.items()}
        for index, step in enumerate(scenario.requests):
            port = int(listeners[step.listener].rsplit(":", 1)[1])
            at = ListenerAt(port, protocols[step.listener])
            _play_step(scenario, target, index, step, at, Explained(config, names))


def _check_refusal(scenario: Scenario, target: Target, issues: list[tuple[str, str]]) -> None:
    rejected = scenario.rejected_by
    assert rejected is not None
    for path, message in issues:
        if (
            path == rejected.path
            and rejected.message_contains in message
            and rejected.target in message
        ):
            return
    raise ScenarioFailure(
        f"{scenario.name} on {target.name}: expected target_issues to refuse {rejected.path} "
        f"naming {rejected.target} with {rejected.message_contains!r}; it gave {issues or 'none'}"
    )


@dataclass(frozen=True)
class Explained:
    """What every request is checked against besides its expectations: `explain` on the
    config, the scenario backend at each endpoint address telling who answered."""

    config: Config
    backend_names: dict[str, str]

    def disagreements(self, step: Step, at: ListenerAt, seen: list[Observation]) -> list[str]:
        decision = explained(self.config, step, at)
        return [f"explain: {line}" for line in disagreements(decision, seen, self.backend_names)]


def _play_step(
    scenario: Scenario,
    target: Target,
    index: int,
    step: Step,
    listener: ListenerAt,
    explain: Explained,
) -> None:
    deadline = time.monotonic() + (step.within or 0) / 1000
    while True:
        observations: list[Observation] = send(step, listener)
        found = mismatches(step.expect, observations)
        found += explain.disagreements(step, listener, observations)
        if not found or time.monotonic() >= deadline:
            break
        time.sleep(POLL_INTERVAL)
    if found:
        what = f"{step.kind} {step.method} {step.path}" if step.kind == "http" else step.kind
        host = f" host {step.host}" if step.host else ""
        waited = f" (still after {step.within} ms)" if step.within else ""
        raise ScenarioFailure(
            f"scenario {scenario.name}, step requests[{index}] ({what}{host} to listener "
            f"{step.listener}, {_how_many(step)}) on {target.name}{waited}:\n  "
            + "\n  ".join(found)
        )


def _how_many(step: Step) -> str:
    sent = f"rate {step.rate:g}/s for {step.for_} ms" if step.rate else f"count {step.count}"
    return f"{sent}, {step.clients} clients" if step.clients > 1 else sent


@contextlib.contextmanager
def _running_backends(declared: list[BackendDecl]) -> Iterator[dict[str, str]]:
    """The backends running, by name → address; all stopped on exit."""
    with BackendFleet() as fleet, contextlib.ExitStack() as sockets:
        addresses: dict[str, str] = {}
        for decl in declared:
            if decl.kind in ("closed", "silent"):
                addresses[decl.name] = _reserved_port(sockets, listening=decl.kind == "silent")
            elif decl.kind == "verdicts":
                addresses[decl.name] = sockets.enter_context(VerdictService()).address
            else:
                spec = BackendSpec(
                    name=decl.name,
                    kind=cast(HarnessKind, decl.kind),
                    status=decl.status,
                    proxy_protocol=decl.proxy_protocol,
                    cert=decl.cert,
                    headers=dict(decl.headers),
                    delay=(decl.delay or 0) / 1000,
                )
                addresses[decl.name] = fleet.start(spec).address
        yield addresses


def _reserved_port(sockets: contextlib.ExitStack, listening: bool) -> str:
    """A port held for the scenario: refusing connections (bound, not listening), or
    listening with connections the kernel completes and nobody ever reads or answers."""
    sock = sockets.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
    sock.bind((LOOPBACK, 0))
    if listening:
        sock.listen(128)
    host, port = sock.getsockname()
    return f"{host}:{port}"
