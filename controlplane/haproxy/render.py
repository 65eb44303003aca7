"""Config → HAProxy: `render(config, group)` gives the bundle (haproxy.cfg, map entries, files,
runtime table) one HAProxy of a node group runs, with the same meaning Envoy gives the config.
A pure function of (config, group, facts): certificates are inline in the config; `facts` is
what the fleet knows of the group (its size divides `scope: group` rate limits).

Python builds the structure (this module, `render_routes`, `render_backends`, the features);
the templates in `templates/` write it, quoting every value (`controlplane.haproxy.templating`).

Output is readable and deterministic: each block opens with a comment naming the model object
behind it (`# listener web (listeners[0])`, `# cluster api (clusters[1])`), map files are named
`<listener>.<purpose>.map`, and the same config always renders byte for byte the same.

- Listeners become frontends: `mode http` for http/https (TLS terminated with a crt-list),
  `mode tcp` for tcp and tls (passthrough: the ClientHello's SNI picks the backend).
- Routing of HTTP listeners is map lookups, so 10,000 routes cost what 10 do; the design
  (decision points, condition shapes, route ids) is in `controlplane.haproxy.render_routes`.
- Clusters become backends, one more per other set of backend-level route options; see
  `controlplane.haproxy.render_backends`.
- Route- and listener-level policies are features (`controlplane.haproxy.features`), each
  adding rules at defined phases of the frontends and backends.

Where HAProxy cannot express the model, `model/targets.py` refuses the config for haproxy
(maglev; condition names that do not fit a sample fetch argument). Known remaining
differences from Envoy: a repeated request header is matched by its last occurrence (Envoy
joins the occurrences with ","); a route timeout bounds each attempt as `timeout server`, an
inactivity timeout (Envoy's per-try timeout runs from the attempt's start); the cookie of a
`hash_on.cookie` cluster names the endpoint instead of holding a hash; errors HAProxy answers
itself (403, 404, 503) carry its own bodies.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..model import Config, GroupFacts, Listener, check, split_address
from .bundle import Bundle
from .features import FEATURES, Part, parts
from .render_backends import BackendSet
from .render_routes import HttpRouting, http_routing
from .render_text import RESOLVERS, address
from .render_tls import tls_files
from .scopes import BackendScope, BundleFiles, GlobalScope, ListenerScope, MapFiles, route_entries
from .templating import render_template


@dataclass(frozen=True)
class TcpRouting:
    """Where a tcp or tls listener sends a connection: by SNI (tls passthrough: exact names,
    then `.suffix`es, longest first), else to its default backend."""

    passthrough: bool
    exact: list[tuple[str, str]]
    suffixes: list[tuple[str, str]]
    default_backend: str | None


@dataclass
class Frontend:
    """One listener's frontend as its template (`frontend_<kind>.j2`) writes it."""

    listener: Listener
    index: int
    template: str
    mode: str
    bind: str
    accept_proxy: bool
    crt_list: str | None
    routing: HttpRouting | TcpRouting
    parts: dict[str, list[Part]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.listener.name


THREADS = 1
"""HAProxy's threads (`nbthread`) unless told otherwise: one thread serves tens of thousands
of requests a second, and a bundle must not depend on the machine it was rendered on (every
replica renders the same bundle, and HAProxy's own default is the number of CPUs it finds)."""


def render(
    config: Config, group: str, facts: GroupFacts = GroupFacts(), threads: int = THREADS
) -> Bundle:
    """The bundle of node group `group`, whose proxies `facts` describes, for HAProxies
    running `threads` threads.

    Raises ConfigError when HAProxy cannot express the config (`target_issues(config,
    "haproxy")`) and KeyError for an unknown group.
    """
    check(config, "haproxy")
    part = config.for_group(group)
    index = {listener.name: i for i, listener in enumerate(config.listeners)}
    cluster_index = {cluster.name: i for i, cluster in enumerate(config.clusters)}
    backends = BackendSet({cluster.name: cluster for cluster in part.clusters})
    map_files: dict[str, list[tuple[str, str]]] = {}
    files: dict[str, str] = {}
    contributed = BundleFiles()
    frontends = []
    sections: list[Part] = []
    for listener in part.listeners:
        position = index[listener.name]
        scope = ListenerScope(
            listener,
            position,
            route_entries(listener, position) if listener.is_l7 else [],
            MapFiles(listener.name),
            facts,
            contributed,
        )
        crt_list = None
        if listener.protocol == "https":
            tls = tls_files(listener)
            files.update(tls.files)
            crt_list = tls.crt_list
        routing: HttpRouting | TcpRouting = (
            http_routing(scope, backends) if listener.is_l7 else _tcp_routing(listener)
        )
        frontend = Frontend(
            listener=listener,
            index=position,
            template="frontend_http.j2" if listener.is_l7 else "frontend_tcp.j2",
            mode="http" if listener.is_l7 else "tcp",
            bind=address(split_address(listener.address)),
            accept_proxy=listener.accept_proxy_protocol,
            crt_list=crt_list,
            routing=routing,
        )
        for phase in ("frontend", "request", "forward", "response"):
            frontend.parts[phase] = parts(FEATURES, phase, scope)
        sections.extend(parts(FEATURES, "sections", scope))
        frontends.append(frontend)
        map_files.update(scope.maps.entries)
    backend_sections = backends.sections(cluster_index)
    for section in backend_sections:
        scope_of = BackendScope(section.cluster, section.name, section.primary)
        section.parts = parts(FEATURES, "backend", scope_of)
    global_parts = parts(FEATURES, "global_section", GlobalScope(part, contributed))
    files.update(contributed.files)
    cfg, masked = render_template(
        "haproxy.cfg.j2",
        group=group,
        threads=threads,
        global_parts=global_parts,
        resolvers=RESOLVERS,
        frontends=frontends,
        backends=backend_sections,
        sections=sections,
    )
    servers = {s.name: tuple(line.server for line in s.servers) for s in backend_sections}
    return Bundle.of(cfg, dict(sorted(map_files.items())), files, servers, masked)


def _tcp_routing(listener: Listener) -> TcpRouting:
    exact: list[tuple[str, str]] = []
    wildcards: list[tuple[str, str]] = []
    for sni_route in listener.sni_routes:
        for name in sni_route.server_names:
            if name.startswith("*."):
                wildcards.append((name[1:], sni_route.cluster))
            else:
                exact.append((name, sni_route.cluster))
    return TcpRouting(
        passthrough=listener.protocol == "tls",
        exact=exact,
        suffixes=sorted(wildcards, key=lambda w: (-len(w[0]), w[0])),
        default_backend=listener.default_cluster,
    )
