"""Gateway API resources (Gateway, HTTPRoute, GRPCRoute, TLSRoute, TCPRoute) as a config.

A Gateway's listeners of one port become one model listener (named after the Gateway, or
`GATEWAY-PORT` when it has several ports): HTTP listeners hold a virtual host per set of
hostnames their routes serve (a route's hostnames narrowed to its listener's), TLS
passthrough listeners an SNI route per TLSRoute, TCP listeners their TCPRoute's backend as
`default_cluster`. A rule with several matches is a route per match. Services become
clusters named after them, their endpoints taken from the `backends` mapping.

Whatever cannot be carried over is left out with one line saying why (`Imported.dropped`);
namespaces are not kept (names must be unique across them).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .hostnames import served

Data = dict[str, Any]

ROUTE_KINDS = ("HTTPRoute", "GRPCRoute", "TLSRoute", "TCPRoute")
KINDS_BY_PROTOCOL = {"http": ("HTTPRoute", "GRPCRoute"), "tls": ("TLSRoute",), "tcp": ("TCPRoute",)}
_DURATION = re.compile(r"[0-9]{1,9}(ms|s|m|h)")
_REDIRECT_FIELDS = {"scheme": "scheme", "hostname": "host", "port": "port", "statusCode": "status"}


@dataclass
class Resource:
    """One document of a file: its kind, name, spec and where it came from."""

    source: str
    kind: str
    name: str
    spec: Data

    @property
    def label(self) -> str:
        return f"{self.source}: {self.kind}/{self.name}"


@dataclass
class Imported:
    """The config (plain data, as a config file holds it) and a line per thing left out."""

    config: Data
    dropped: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.config["listeners"]


@dataclass
class _Port:
    """A model listener: a Gateway's listeners of one port."""

    name: str
    port: int
    protocol: str
    listeners: list[Data]
    domains: dict[str, list[str]] = field(default_factory=dict)
    """HTTP: each domain served, with the keys of the routes serving it, in order."""
    sni_routes: list[Data] = field(default_factory=list)
    default_cluster: str | None = None


class _Importer:
    def __init__(self, backends: Mapping[str, list[str]]) -> None:
        self.backends = backends
        self.dropped: list[str] = []
        self.ports: dict[tuple[str, int], _Port] = {}
        self.routes: dict[str, list[Data]] = {}
        self.clusters: dict[str, Data] = {}

    def drop(self, where: str, why: str) -> None:
        self.dropped.append(f"{where}: {why}")

    # -- Gateways -----------------------------------------------------------------------------

    def gateway(self, gateway: Resource) -> None:
        listeners = gateway.spec.get("listeners") or []
        ports = sorted({int(x.get("port", 0)) for x in listeners})
        for index, listener in enumerate(listeners):
            where = f"{gateway.label} listeners[{index}]"
            protocol = _listener_protocol(listener)
            if isinstance(protocol, tuple):
                self.drop(where, protocol[0])
                continue
            port = int(listener.get("port", 0))
            name = gateway.name if len(ports) == 1 else f"{gateway.name}-{port}"
            found = self.ports.setdefault((gateway.name, port), _Port(name, port, protocol, []))
            if found.protocol != protocol:
                self.drop(where, f"port {port} already serves {found.protocol}")
                continue
            found.listeners.append(listener)

    def _attachments(self, route: Resource) -> Iterator[tuple[_Port, Data]]:
        """The Gateway listeners the route attaches to, with their model listener."""
        for index, parent in enumerate(route.spec.get("parentRefs") or []):
            where = f"{route.label} parentRefs[{index}]"
            if parent.get("kind", "Gateway") != "Gateway":
                self.drop(where, f"a parent of kind {parent.get('kind')} is not a Gateway")
                continue
            ports = [p for (gw, _), p in self.ports.items() if gw == parent.get("name")]
            if not ports:
                self.drop(where, f"Gateway {parent.get('name')} is not among the files")
                continue
            attached = 0
            for port in ports:
                if "port" in parent and int(parent["port"]) != port.port:
                    continue
                for listener in port.listeners:
                    section = parent.get("sectionName")
                    if section is not None and listener.get("name") != section:
                        continue
                    if route.kind in _allowed_kinds(listener, port.protocol):
                        attached += 1
                        yield port, listener
            if not attached:
                self.drop(where, f"no listener of Gateway {parent.get('name')} takes {route.kind}")

    # -- routes -------------------------------------------------------------------------------

    def route(self, route: Resource) -> None:
        if route.kind in ("HTTPRoute", "GRPCRoute"):
            self._http_route(route)
        elif route.kind == "TLSRoute":
            self._tls_route(route)
        else:
            self._tcp_route(route)

    def _http_route(self, route: Resource) -> None:
        key = route.name
        converted = []
        for index, rule in enumerate(route.spec.get("rules") or [{}]):
            where = f"{route.label} rules[{index}]"
            converted.extend(self._rule(route.kind, rule, where))
        if not converted:
            return
        self.routes[key] = converted
        hostnames = list(route.spec.get("hostnames") or [])
        attached = list(self._attachments(route))
        serving = False
        for port, listener in attached:
            for domain in served(listener.get("hostname"), hostnames):
                serving = True
                keys = port.domains.setdefault(domain, [])
                if key not in keys:
                    keys.append(key)
        if attached and not serving:
            self.drop(route.label, "shares no hostname with the listeners it attaches to")

    def _rule(self, kind: str, rule: Data, where: str) -> list[Data]:
        common: Data = {}
        request: Data = {}
        response: Data = {}
        for index, item in enumerate(rule.get("filters") or []):
            self._filter(item, f"{where} filters[{index}]", common, request, response)
        if request:
            common["request_headers"] = request
        if response:
            common["response_headers"] = response
        answers = "redirect" in common or "direct_response" in common
        backends = [] if answers else self._backends(kind, rule, where, common)
        if answers:
            for name in ("path_rewrite", "prefix_rewrite", "mirrors"):
                if common.pop(name, None) is not None:
                    self.drop(where, f"{name} applies to forwarded requests; the rule answers")
            if rule.get("backendRefs"):
                self.drop(f"{where} backendRefs", "the rule answers itself (a filter's answer)")
        elif backends:
            common["backends"] = backends
        else:
            common["direct_response"] = {"status": 500}
        timeout = self._timeout(rule, where)
        if timeout is not None and not answers:
            common["timeout"] = timeout
        if rule.get("sessionPersistence"):
            self.drop(f"{where} sessionPersistence", "set hash_on.cookie on the clusters instead")
        matches = rule.get("matches") or [{}]
        routes = []
        for index, match in enumerate(matches):
            converted = self._match(kind, match, f"{where} matches[{index}]")
            if converted is None:
                continue
            route: Data = {"match": converted} if converted else {}
            if rule.get("name") and len(matches) == 1:
                route["name"] = rule["name"]
            routes.append({**route, **common})
        return routes

    def _match(self, kind: str, match: Data, where: str) -> Data | None:
        result: Data = {}
        if kind == "GRPCRoute":
            path = _grpc_path(match.get("method"))
            if isinstance(path, str):
                self.drop(where, path)
                return None
            if path:
                result["path"] = path
        elif "path" in match:
            path_match = match["path"]
            value = path_match.get("value", "/")
            path_kind = path_match.get("type", "PathPrefix")
            if path_kind == "Exact":
                result["path"] = {"exact": value}
            elif path_kind == "RegularExpression":
                result["path"] = {"regex": value}
            elif value != "/":
                result["path"] = {"prefix": value}
        if match.get("method") and kind == "HTTPRoute":
            result["method"] = match["method"]
        headers = [_value_match(h, lower=True) for h in match.get("headers") or []]
        if headers:
            result["headers"] = headers
        query = [_value_match(q, lower=False) for q in match.get("queryParams") or []]
        if query:
            result["query"] = query
        return result

    def _filter(self, item: Data, where: str, common: Data, request: Data, response: Data) -> None:
        kind = item.get("type")
        if kind == "RequestHeaderModifier":
            _merge_headers(request, item.get("requestHeaderModifier") or {})
        elif kind == "ResponseHeaderModifier":
            _merge_headers(response, item.get("responseHeaderModifier") or {})
        elif kind == "RequestRedirect":
            common["redirect"] = _redirect(item.get("requestRedirect") or {})
        elif kind == "URLRewrite":
            rewrite = item.get("urlRewrite") or {}
            if rewrite.get("hostname"):
                request.setdefault("set", {})["host"] = rewrite["hostname"]
            common.update(_path_modifier(rewrite.get("path"), "path_rewrite", "prefix_rewrite"))
        elif kind == "RequestMirror":
            mirror = self._mirror(item.get("requestMirror") or {}, where)
            if mirror is not None:
                common.setdefault("mirrors", []).append(mirror)
        elif kind == "CORS":
            common["cors"] = _cors(item.get("cors") or {})
        elif kind == "DirectResponse":
            answer = item.get("directResponse") or {}
            body = (answer.get("body") or {}).get("string")
            direct: Data = {"status": answer.get("statusCode", 200)}
            if body:
                direct["body"] = body
            common["direct_response"] = direct
        else:
            self.drop(where, f"the {kind} filter has no equivalent in the model")

    def _mirror(self, mirror: Data, where: str) -> Data | None:
        name = (mirror.get("backendRef") or {}).get("name")
        if not self._cluster(name, "http1", f"{where} backendRef"):
            return None
        result: Data = {"cluster": name}
        if "percent" in mirror:
            result["percent"] = mirror["percent"]
        elif "fraction" in mirror:
            fraction = mirror["fraction"]
            result["percent"] = round(
                100 * fraction.get("numerator", 0) / fraction.get("denominator", 100), 4
            )
        return result

    def _backends(self, kind: str, rule: Data, where: str, common: Data) -> list[Data]:
        refs = rule.get("backendRefs") or []
        protocol = "http2" if kind == "GRPCRoute" else "http1"
        result = []
        for index, ref in enumerate(refs):
            here = f"{where} backendRefs[{index}]"
            if not self._cluster(ref.get("name"), protocol, here):
                continue
            backend: Data = {"cluster": ref["name"]}
            if "weight" in ref:
                backend["weight"] = ref["weight"]
            for fi, item in enumerate(ref.get("filters") or []):
                self._backend_filter(item, f"{here} filters[{fi}]", backend, common, len(refs))
            result.append(backend)
        return result

    def _backend_filter(
        self, item: Data, where: str, backend: Data, common: Data, siblings: int
    ) -> None:
        kind = item.get("type")
        if kind == "RequestHeaderModifier":
            changes = backend.setdefault("request_headers", {})
            _merge_headers(changes, item.get("requestHeaderModifier") or {})
        elif kind == "ResponseHeaderModifier":
            changes = backend.setdefault("response_headers", {})
            _merge_headers(changes, item.get("responseHeaderModifier") or {})
        elif kind == "URLRewrite" and siblings == 1:
            rewrite = item.get("urlRewrite") or {}
            if rewrite.get("hostname"):
                self.drop(where, "a backend's hostname rewrite: set it on the rule")
            common.update(_path_modifier(rewrite.get("path"), "path_rewrite", "prefix_rewrite"))
        else:
            self.drop(where, f"a backend's {kind} filter has no equivalent in the model")

    def _timeout(self, rule: Data, where: str) -> str | None:
        timeouts = rule.get("timeouts") or {}
        value = timeouts.get("backendRequest", timeouts.get("request"))
        if value is None:
            return None
        if _DURATION.fullmatch(str(value)) is None:
            self.drop(f"{where} timeouts", f"{value!r} is not one whole number and unit")
            return None
        return "none" if re.fullmatch(r"0+(ms|s|m|h)", str(value)) else str(value)

    def _tls_route(self, route: Resource) -> None:
        cluster = self._single_backend(route, "tcp")
        if cluster is None:
            return
        hostnames = list(route.spec.get("hostnames") or [])
        for port, listener in self._attachments(route):
            names = served(listener.get("hostname"), hostnames)
            if names == ["*"]:
                port.default_cluster = port.default_cluster or cluster
            elif names:
                port.sni_routes.append({"server_names": names, "cluster": cluster})
            else:
                self.drop(route.label, f"shares no hostname with listener {listener.get('name')}")

    def _tcp_route(self, route: Resource) -> None:
        cluster = self._single_backend(route, "tcp")
        if cluster is None:
            return
        for port, _ in self._attachments(route):
            if port.default_cluster is not None:
                self.drop(route.label, f"listener {port.name} already has a TCPRoute")
            else:
                port.default_cluster = cluster

    def _single_backend(self, route: Resource, protocol: str) -> str | None:
        """The one backend of an L4 route (its connections go to one cluster)."""
        refs = [
            ref for rule in route.spec.get("rules") or [] for ref in rule.get("backendRefs") or []
        ]
        if not refs:
            self.drop(route.label, "no backendRefs")
            return None
        if len(refs) > 1:
            self.drop(f"{route.label} backendRefs", "an L4 route has one backend; the first kept")
        name = refs[0].get("name")
        return name if self._cluster(name, protocol, f"{route.label} backendRefs[0]") else None

    def _cluster(self, name: Any, protocol: str, where: str) -> bool:
        """Whether Service `name` is a cluster (added on first use); why not, dropped."""
        if not isinstance(name, str) or name not in self.backends:
            self.drop(where, f"Service {name} is not in the --backends mapping")
            return False
        found = self.clusters.get(name)
        if found is None:
            self.clusters[name] = {
                "name": name,
                **({"protocol": protocol} if protocol != "http1" else {}),
                "endpoints": [{"address": address} for address in self.backends[name]],
            }
        elif found.get("protocol", "http1") != protocol:
            self.drop(where, f"Service {name} is already used as {found.get('protocol', 'http1')}")
            return False
        return True

    # -- the config ---------------------------------------------------------------------------

    def config(self) -> Data:
        listeners = []
        for port in self.ports.values():
            listener: Data = {
                "name": port.name,
                "address": f"0.0.0.0:{port.port}",
                "protocol": port.protocol,
            }
            if port.protocol == "http":
                listener["virtual_hosts"] = self._virtual_hosts(port)
                if not listener["virtual_hosts"]:
                    continue
            elif port.protocol == "tls":
                if not port.sni_routes and port.default_cluster is None:
                    continue
                if port.sni_routes:
                    listener["sni_routes"] = port.sni_routes
                if port.default_cluster is not None:
                    listener["default_cluster"] = port.default_cluster
            else:
                if port.default_cluster is None:
                    continue
                listener["default_cluster"] = port.default_cluster
            listeners.append(listener)
        return {"listeners": listeners, "clusters": list(self.clusters.values())}

    def _virtual_hosts(self, port: _Port) -> list[Data]:
        """A virtual host per set of domains served by the same routes."""
        grouped: dict[tuple[str, ...], list[str]] = {}
        for domain, keys in port.domains.items():
            grouped.setdefault(tuple(keys), []).append(domain)
        result = []
        taken: set[str] = set()
        for group, domains in grouped.items():
            name = group[0]
            number = 2
            while name in taken:
                name, number = f"{group[0]}-{number}", number + 1
            taken.add(name)
            routes = [route for key in group for route in self.routes[key]]
            result.append({"name": name, "domains": domains, "routes": routes})
        return result


def _listener_protocol(listener: Data) -> str | tuple[str]:
    """The model protocol of a Gateway listener, or (why it cannot be imported,)."""
    protocol = listener.get("protocol")
    mode = (listener.get("tls") or {}).get("mode", "Terminate")
    if protocol == "HTTP":
        return "http"
    if protocol == "TLS" and mode == "Passthrough":
        return "tls"
    if protocol == "TCP":
        return "tcp"
    if protocol in ("HTTPS", "TLS"):
        return (
            "terminating TLS needs the certificate and key files: certificateRefs name "
            "Kubernetes Secrets, which are not read (add the listener's certificates by hand)",
        )
    return (f"protocol {protocol} has no equivalent in the model",)


def _allowed_kinds(listener: Data, protocol: str) -> tuple[str, ...]:
    kinds = [k.get("kind") for k in (listener.get("allowedRoutes") or {}).get("kinds") or []]
    defaults = KINDS_BY_PROTOCOL[protocol]
    return tuple(k for k in kinds if k in defaults) if kinds else defaults


def _value_match(item: Data, *, lower: bool) -> Data:
    name = str(item.get("name", ""))
    result: Data = {"name": name.lower() if lower else name}
    key = "regex" if item.get("type") == "RegularExpression" else "exact"
    result[key] = item.get("value", "")
    return result


def _grpc_path(method: Data | None) -> Data | str | None:
    """The path condition of a GRPCRoute method match (None: any), or why it has none."""
    if not method:
        return None
    service, name = method.get("service"), method.get("method")
    if method.get("type", "Exact") != "Exact":
        return "a RegularExpression method match has no equivalent path condition here"
    if service and name:
        return {"exact": f"/{service}/{name}"}
    if service:
        return {"prefix": f"/{service}"}
    return {"regex": f"/[^/]+/{re.escape(name or '')}"}


def _merge_headers(changes: Data, modifier: Data) -> None:
    for verb in ("set", "add"):
        for item in modifier.get(verb) or []:
            changes.setdefault(verb, {})[str(item.get("name", "")).lower()] = item.get("value", "")
    removed = [str(name).lower() for name in modifier.get("remove") or []]
    if removed:
        changes.setdefault("remove", []).extend(removed)


def _path_modifier(path: Data | None, full: str, prefix: str) -> Data:
    if not path:
        return {}
    if path.get("type") == "ReplaceFullPath":
        return {full: path.get("replaceFullPath", "/")}
    return {prefix: path.get("replacePrefixMatch", "/")}


def _redirect(redirect: Data) -> Data:
    result = {
        ours: redirect[theirs] for theirs, ours in _REDIRECT_FIELDS.items() if theirs in redirect
    }
    result.update(_path_modifier(redirect.get("path"), "path", "prefix_rewrite"))
    return result


def _origin(origin: str) -> Data:
    """An allowed origin: exact, or a regex for a wildcard (`*` any labels, `*` alone any)."""
    if "*" not in origin:
        return {"exact": origin}
    if origin == "*":
        return {"regex": "[a-z][a-z0-9+.-]*://.+"}
    labels = r"([a-z0-9-]+[.])+"
    parts = [re.sub(r"\.", "[.]", part) for part in origin.split("*.")]
    return {"regex": labels.join(parts)}


def _cors(cors: Data) -> Data:
    result: Data = {"allow_origins": [_origin(o) for o in cors.get("allowOrigins") or []]}
    for theirs, ours, lower in (
        ("allowMethods", "allow_methods", False),
        ("allowHeaders", "allow_headers", True),
        ("exposeHeaders", "expose_headers", True),
    ):
        values = [str(v).lower() if lower else str(v) for v in cors.get(theirs) or []]
        if values:
            result[ours] = values
    if cors.get("allowCredentials"):
        result["allow_credentials"] = True
    if "maxAge" in cors:
        result["max_age"] = f"{int(cors['maxAge'])}s"
    return result


def resources_of(documents: Sequence[tuple[str, Any]]) -> tuple[list[Resource], list[str]]:
    """The Gateway API resources among parsed YAML documents (source, document), and a line
    for each document that is not one."""
    found, dropped = [], []
    for source, document in documents:
        if document is None:
            continue
        kind = document.get("kind") if isinstance(document, dict) else None
        name = (document.get("metadata") or {}).get("name") if isinstance(document, dict) else None
        if kind not in ("Gateway", *ROUTE_KINDS) or not isinstance(name, str):
            what = f"kind {kind}" if kind else "a document without a kind"
            dropped.append(f"{source}: {what} is not a Gateway or a route; left out")
            continue
        found.append(Resource(source, kind, name, document.get("spec") or {}))
    return found, dropped


def import_resources(resources: Sequence[Resource], backends: Mapping[str, list[str]]) -> Imported:
    """The config the resources describe, Services resolved by `backends` (name →
    endpoint addresses), and a line for everything left out."""
    importer = _Importer(backends)
    for resource in resources:
        if resource.kind == "Gateway":
            importer.gateway(resource)
    for resource in resources:
        if resource.kind in ROUTE_KINDS:
            importer.route(resource)
    return Imported(importer.config(), importer.dropped)
