"""Fleet drift: what each proxy actually runs, against what the control plane intended.

An ACK says a proxy accepted a configuration, not that it still serves it: an operator's
runtime command, a hand edit or another control plane can change it behind our back. The
verifier reads what each proxy runs and compares it with what the planes compile for its group
from the head revision:

- an Envoy (its admin address announced in its node metadata): `/config_dump`, every dynamic
  resource by type and name, compared as content (private keys, which Envoy shows redacted,
  aside; endpoints by address, weight and priority); the version each came with is reported;
- a local HAProxy (one `serve` manages): the version its manager applied and the file on
  disk against the bundle, and through the runtime API the servers (`show servers state`:
  address, port, weight) and every map's entries (`show map`).

Agent-fed HAProxies run on their own hosts; their runtime API is not reachable from here, and
they are listed as not verified.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from google.protobuf import any_pb2, json_format
from google.protobuf.message import Message

from ..haproxy.bundle import Bundle
from ..model import Config
from ..proxies.envoy import DumpedResource, dumped_resources, fetch_config_dump
from ..proxies.haproxy.observe import Observed, observe
from .envoy_plane import EnvoyBuild
from .haproxy_plane import HAProxyBuild, LocalHAProxy
from .ledger import Ledger
from .planes import DataPlane

REDACTED = "[redacted]"
SHOWN = 20
"""Differences listed per proxy at most (the count says how many there are)."""


@dataclass(frozen=True)
class ProxyCheck:
    """One proxy verified: `verified` is False when what it runs could not be read (`error`
    says why); `differences` lists, one line each, where it departs from the intended."""

    id: str
    kind: str
    group: str
    verified: bool
    differences: list[str] = field(default_factory=list)
    count: int = 0
    error: str | None = None
    running: dict[str, Any] = field(default_factory=dict)
    """What it runs, in brief: versions per type (Envoy), the bundle version (HAProxy)."""

    @property
    def drifted(self) -> bool:
        return bool(self.differences)


@dataclass(frozen=True)
class Verification:
    """Every proxy verified against revision `revision`, at `at`."""

    revision: int | None
    at: float
    proxies: list[ProxyCheck]

    @property
    def drifted(self) -> list[ProxyCheck]:
        return [p for p in self.proxies if p.drifted]

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["drifted"] = [p.id for p in self.drifted]
        data["unverified"] = [p.id for p in self.proxies if not p.verified]
        return data


# -- Envoy ------------------------------------------------------------------------------------


def _redacted(value: Any) -> Any:
    """`value` with every private key's content shown as Envoy's config dump shows it."""
    if isinstance(value, dict):
        return {
            k: (
                {kk: REDACTED for kk in v}
                if k == "private_key" and isinstance(v, dict)
                else _redacted(v)
            )
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_redacted(v) for v in value]
    return value


def _as_shown(message: Message) -> dict[str, Any]:
    data = json_format.MessageToDict(message, preserving_proto_field_name=True)
    data["@type"] = f"type.googleapis.com/{message.DESCRIPTOR.full_name}"
    return data


def _pruned(value: Any) -> Any:
    """`value` without empty objects and lists (Envoy shows some submessages it fills in
    itself, such as an endpoint's empty `health_check_config`)."""
    if isinstance(value, dict):
        kept = {k: _pruned(v) for k, v in value.items()}
        return {k: v for k, v in kept.items() if v not in ({}, [])}
    if isinstance(value, list):
        return [_pruned(v) for v in value]
    return value


def _endpoints(data: dict[str, Any]) -> list[tuple[int, str, int]]:
    """An endpoint assignment's (priority, address, weight) entries: what it says, without the
    health Envoy shows beside it."""
    found = []
    for locality in data.get("endpoints", []):
        for lb in locality.get("lb_endpoints", []):
            socket = lb.get("endpoint", {}).get("address", {}).get("socket_address", {})
            address = f"{socket.get('address')}:{socket.get('port_value')}"
            weight = int(lb.get("load_balancing_weight", 1))
            found.append((int(locality.get("priority", 0)), address, weight))
    return sorted(found)


def _comparable(kind: str, data: dict[str, Any]) -> Any:
    """A resource as compared: endpoints by their entries, the others by their whole content
    (private keys, which Envoy shows redacted, and empty submessages aside)."""
    if kind == "endpoints":
        return _endpoints(data)
    return _pruned(_redacted(data))


def _content(message_type: type[Message], body: dict[str, Any]) -> dict[str, Any] | None:
    """`body` (dumped JSON with its `@type`) parsed and printed again; None if it does not parse."""
    packed = any_pb2.Any()
    try:
        json_format.ParseDict(body, packed, ignore_unknown_fields=True)
        message = message_type()
        if not packed.Unpack(message):
            return None
    except (json_format.ParseError, TypeError, ValueError):
        return None
    data = json_format.MessageToDict(message, preserving_proto_field_name=True)
    data["@type"] = body.get("@type")
    return data


def envoy_differences(
    build: EnvoyBuild, running: Mapping[str, Mapping[str, DumpedResource]]
) -> list[str]:
    """Where an Envoy's dynamic resources depart from `build`'s, per type and name."""
    found: list[str] = []
    for kind, intended in build.resources.kinds().items():
        kind_name = kind.rstrip("s")
        have = running.get(kind, {})
        for name in sorted(set(intended) - set(have)):
            found.append(f"{kind_name} {name}: intended, not running")
        for name in sorted(set(have) - set(intended)):
            found.append(f"{kind_name} {name}: running, not intended")
        for name in sorted(set(intended) & set(have)):
            message = intended[name]
            want = _comparable(kind, _as_shown(message))
            parsed = _content(type(message), have[name].body)
            got = _comparable(kind, parsed) if parsed is not None else None
            if got != want:
                version = have[name].version
                found.append(
                    f"{kind_name} {name}: runs other content"
                    + (f" (version {version})" if version else "")
                    + _first_change(want, got)
                )
    return found


def _first_change(want: Any, got: Any, path: str = "") -> str:
    """Where two JSON values first differ, as `: at <path>`."""
    if isinstance(want, dict) and isinstance(got, dict):
        for key in sorted(set(want) | set(got)):
            if want.get(key) != got.get(key):
                return _first_change(want.get(key), got.get(key), f"{path}.{key}" if path else key)
    if isinstance(want, list) and isinstance(got, list) and len(want) == len(got):
        for index, (a, b) in enumerate(zip(want, got, strict=True)):
            if a != b:
                return _first_change(a, b, f"{path}[{index}]")
    return f": at {path}" if path else ""


# -- HAProxy ----------------------------------------------------------------------------------


def haproxy_differences(bundle: Bundle, observed: Observed) -> list[str]:
    """Where a running HAProxy departs from `bundle`: the version applied, the file on disk,
    the servers and the maps the runtime API shows."""
    found: list[str] = []
    if observed.version != bundle.version:
        found.append(f"runs bundle {observed.version or 'none'}, intended {bundle.version}")
    if observed.cfg is not None and observed.cfg != bundle.cfg:
        found.append("haproxy.cfg on disk differs from the bundle's")
    for backend, servers in bundle.servers.items():
        table = {
            name: (address, port, weight)
            for name, address, port, weight in observed.servers.get(backend, [])
        }
        for server in servers:
            running = table.get(server.name)
            where = f"server {backend}/{server.name}"
            if running is None:
                found.append(f"{where}: intended, not running")
                continue
            address, port, weight = running
            if server.has_ip and (address, port) != (server.host, server.port):
                found.append(f"{where}: runs {address}:{port}, intended {server.address}")
            if weight != server.weight:
                found.append(f"{where}: runs weight {weight}, intended {server.weight}")
    for name, entries in bundle.map_entries.items():
        loaded = observed.maps.get(name)
        if loaded is None:
            found.append(f"map {name}: intended, not loaded")
            continue
        want = list(entries)
        if loaded != want:
            found.extend(f"map {name}: {line}" for line in _map_changes(want, loaded))
    for name in sorted(set(observed.maps) - set(bundle.map_entries)):
        found.append(f"map {name}: loaded, not intended")
    return found


def _map_changes(want: list[tuple[str, str]], have: list[tuple[str, str]]) -> list[str]:
    intended, running = dict(want), dict(have)
    lines = []
    for key in sorted(set(intended) | set(running)):
        if key not in running:
            lines.append(f"{key} intended {intended[key]!r}, missing")
        elif key not in intended:
            lines.append(f"{key} = {running[key]!r}, not intended")
        elif intended[key] != running[key]:
            lines.append(f"{key} = {running[key]!r}, intended {intended[key]!r}")
    return lines or ["the same entries in another order"]


# -- the fleet --------------------------------------------------------------------------------


DumpReader = Callable[[str], dict[str, Any]]


class FleetVerifier:
    """Verifies every proxy the ledger knows against the head, through the planes' builds; keeps
    the last verification for `/v1/status`."""

    def __init__(
        self,
        planes: Sequence[DataPlane[Any]],
        ledger: Ledger,
        local: Sequence[LocalHAProxy] = (),
        read_dump: DumpReader = fetch_config_dump,
    ) -> None:
        self.planes: dict[str, DataPlane[Any]] = {plane.kind: plane for plane in planes}
        self.ledger = ledger
        self.local = {haproxy.instance_id: haproxy for haproxy in local}
        self.read_dump = read_dump
        self._last: Verification | None = None
        self._lock = threading.Lock()

    def last(self) -> dict[str, Any] | None:
        """The last verification, as JSON (None before the first)."""
        with self._lock:
            return self._last.as_json() if self._last is not None else None

    def verify(self, config: Config, revision: int | None) -> dict[str, Any]:
        """Verify every connected proxy against `config` (revision `revision`); as JSON."""
        builds: dict[tuple[str, str], Any] = {}

        def build(kind: str, group: str) -> Any:
            key = (kind, group)
            if key not in builds:
                plane = self.planes[kind]
                builds[key] = plane.compile(config, group)
            return builds[key]

        groups = set(config.group_names())
        checks = []
        for proxy in self.ledger.proxies():
            if proxy.group not in groups or proxy.kind not in self.planes:
                checks.append(
                    ProxyCheck(
                        proxy.node_id,
                        proxy.kind,
                        proxy.group,
                        False,
                        error="its group is not in the head",
                    )
                )
                continue
            try:
                checks.append(
                    self._check(proxy.node_id, proxy.kind, proxy.group, proxy.detail, build)
                )
            except Exception as exc:  # one proxy's failure is its own line, never the whole run
                checks.append(
                    ProxyCheck(
                        proxy.node_id,
                        proxy.kind,
                        proxy.group,
                        False,
                        error=f"{type(exc).__name__}: {exc}",
                    )
                )
        result = Verification(revision, time.time(), checks)
        with self._lock:
            self._last = result
        return result.as_json()

    def _check(
        self,
        node_id: str,
        kind: str,
        group: str,
        detail: Mapping[str, Any],
        build: Callable[[str, str], Any],
    ) -> ProxyCheck:
        if kind == "envoy":
            admin = detail.get("admin")
            if not admin:
                return ProxyCheck(
                    node_id,
                    kind,
                    group,
                    False,
                    error="it announced no admin address (envoy-bootstrap --admin-port)",
                )
            envoy: EnvoyBuild = build(kind, group)
            running = dumped_resources(self.read_dump(str(admin)))
            differences = envoy_differences(envoy, running)
            versions = {
                k: sorted({r.version for r in v.values() if r.version}) for k, v in running.items()
            }
            return self._result(node_id, kind, group, differences, {"versions": versions})
        local = self.local.get(node_id)
        if local is None:
            return ProxyCheck(
                node_id,
                kind,
                group,
                False,
                error="an agent-fed HAProxy: its runtime API is on its own host",
            )
        haproxy: HAProxyBuild = build(kind, group)
        bundle = haproxy.for_instance(node_id)
        observed = observe(local.manager)
        differences = haproxy_differences(bundle, observed)
        return self._result(node_id, kind, group, differences, {"version": observed.version})

    @staticmethod
    def _result(
        node_id: str, kind: str, group: str, differences: list[str], running: dict[str, Any]
    ) -> ProxyCheck:
        return ProxyCheck(
            node_id, kind, group, True, differences[:SHOWN], len(differences), running=running
        )
