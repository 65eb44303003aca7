"""Config → HAProxy: `render(config, group)` gives the bundle (haproxy.cfg, maps, files) one
HAProxy of a node group runs, with the same meaning Envoy gives the config.

Output is readable and deterministic: each block opens with a comment naming the model object
behind it (`# listener web (listeners[0])`, `# cluster api (clusters[1])`), map files are named
`<listener>.<purpose>.map`, and the same config always renders byte for byte the same.

- Listeners become frontends: `mode http` for http/https (TLS terminated with a crt-list),
  `mode tcp` for tcp and tls (passthrough: the ClientHello's SNI picks the backend).
- Routing of HTTP listeners is map lookups, so 10,000 routes cost what 10 do; the design
  (decision points, condition shapes, route ids) is in `controlplane.haproxy.render_routes`.
- Clusters become backends, one more per other set of backend-level route options; see
  `controlplane.haproxy.render_backends`.

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
from functools import lru_cache

import jinja2

from ..model import Config, Listener, split_address
from .bundle import Bundle
from .render_backends import RESOLVERS, BackendSet
from .render_routes import route_tables
from .render_text import address, word
from .render_tls import tls_files


@dataclass
class _Frontend:
    head: list[str]
    body: list[str] = field(default_factory=list)


@lru_cache(maxsize=1)
def _template() -> jinja2.Template:
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("controlplane.haproxy", "templates"),
        autoescape=False,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )
    return environment.get_template("haproxy.cfg.j2")


def render(config: Config, group: str) -> Bundle:
    """The bundle of node group `group` (KeyError for an unknown group)."""
    part = config.for_group(group)
    index = {listener.name: i for i, listener in enumerate(config.listeners)}
    cluster_index = {cluster.name: i for i, cluster in enumerate(config.clusters)}
    backends = BackendSet({cluster.name: cluster for cluster in part.clusters})
    maps: dict[str, str] = {}
    files: dict[str, str] = {}
    frontends = []
    for listener in part.listeners:
        frontend = _Frontend(
            head=[
                f"# listener {listener.name} (listeners[{index[listener.name]}])",
                f"frontend {word(listener.name)}",
            ]
        )
        bind = f"bind {address(split_address(listener.address))}"
        if listener.accept_proxy_protocol:
            bind += " accept-proxy"
        if listener.protocol == "https":
            tls = tls_files(listener)
            files.update(tls.files)
            bind += f" ssl crt-list {tls.crt_list} alpn h2,http/1.1"
        if listener.is_l7:
            frontend.body.extend(["mode http", bind])
            frontend.body.extend(_http_head(listener))
            tables = route_tables(listener, index[listener.name], backends)
            frontend.body.extend(tables.lines)
            maps.update(tables.maps)
        else:
            frontend.body.extend(["mode tcp", bind, "timeout client 1h"])
            frontend.body.extend(_l4_rules(listener))
        frontends.append(frontend)
    cfg = _template().render(
        group=group,
        resolvers=RESOLVERS,
        frontends=frontends,
        backends=backends.sections(cluster_index),
    )
    return Bundle.of(cfg, maps, files)


def _http_head(listener: Listener) -> list[str]:
    lines = []
    if listener.forwarded_for:
        lines.append("option forwardfor")
    lines.append("# the Host header loses its port, as Envoy's strip_any_host_port does")
    lines.append(
        "http-request set-header host %[req.fhdr(host),regsub(:[0-9]+$,)] "
        "if { req.fhdr(host) -m reg :[0-9]+$ }"
    )
    if listener.request_id:
        lines.append(
            "http-request set-header x-request-id %[uuid] unless { req.hdr(x-request-id) -m found }"
        )
    return lines


def _l4_rules(listener: Listener) -> list[str]:
    lines = []
    if listener.protocol == "tls":
        lines.extend(
            [
                "# TLS passthrough: route by the ClientHello's SNI",
                "tcp-request inspect-delay 5s",
                "tcp-request content accept if { req.ssl_hello_type 1 }",
            ]
        )
        exact: list[tuple[str, str]] = []
        wildcards: list[tuple[str, str]] = []
        for sni_route in listener.sni_routes:
            for name in sni_route.server_names:
                if name.startswith("*."):
                    wildcards.append((name[1:], sni_route.cluster))
                else:
                    exact.append((name, sni_route.cluster))
        for name, cluster in exact:
            lines.append(f"use_backend {word(cluster)} if {{ req.ssl_sni -i {word(name)} }}")
        for suffix, cluster in sorted(wildcards, key=lambda w: (-len(w[0]), w[0])):
            lines.append(
                f"use_backend {word(cluster)} if {{ req.ssl_sni -i -m end {word(suffix)} }}"
            )
    if listener.default_cluster is not None:
        lines.append(f"default_backend {word(listener.default_cluster)}")
    return lines
