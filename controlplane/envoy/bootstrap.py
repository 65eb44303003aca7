"""The bootstrap of an Envoy node: fetch everything over ADS from the control plane.

The bootstrap holds only what Envoy needs before it can talk to us: its node identity (the
node's `cluster` is its group, which picks its snapshot), the admin listener, and one static
cluster reaching the xDS server over HTTP/2 (over mutual TLS with `XdsClientTls`: the node's
certificate must name its id and group, see `controlplane.xds.identity`). Listeners and
clusters come over ADS.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from ..model.kinds import ADMIN_METADATA
from ..model.regex import RE2_MAX_PROGRAM_SIZE

XDS_CLUSTER = "controlplane_xds"
"""Name of the static cluster that reaches the xDS server."""


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _duration(seconds: float) -> str:
    return f"{seconds:.3f}s"


@dataclass(frozen=True)
class XdsClientTls:
    """Files (on the Envoy's host) for mutual TLS to the xDS server: the CA that signed the
    server's certificate, and the node's own certificate chain and private key."""

    ca: str
    cert: str
    key: str


def _tls_socket(tls: XdsClientTls, xds_hosts: Sequence[str]) -> dict[str, Any]:
    """An UpstreamTlsContext that presents the node's certificate and accepts only a server
    certificate from `tls.ca` naming one of `xds_hosts` (as a DNS or IP SAN); the first one
    is the SNI when it is a name."""
    names = [
        {"san_type": "IP_ADDRESS" if _is_ip(host) else "DNS", "matcher": {"exact": host}}
        for host in dict.fromkeys(xds_hosts)
    ]
    context: dict[str, Any] = {
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
        "common_tls_context": {
            "alpn_protocols": ["h2"],
            "tls_certificates": [
                {"certificate_chain": {"filename": tls.cert}, "private_key": {"filename": tls.key}}
            ],
            "validation_context": {
                "trusted_ca": {"filename": tls.ca},
                "match_typed_subject_alt_names": names,
            },
        },
    }
    if not _is_ip(xds_hosts[0]):
        context["sni"] = xds_hosts[0]
    return {"name": "envoy.transport_sockets.tls", "typed_config": context}


def bootstrap(
    node_id: str,
    group: str,
    xds_host: str,
    xds_port: int,
    admin_port: int,
    delta: bool = False,
    *,
    admin_host: str = "127.0.0.1",
    retry_base_s: float = 0.5,
    retry_max_s: float = 10.0,
    tls: XdsClientTls | None = None,
    re2_max_program_size: int = RE2_MAX_PROGRAM_SIZE,
    also_xds: Sequence[tuple[str, int]] = (),
) -> dict[str, Any]:
    """An Envoy v3 bootstrap (as a dict) for one node of `group`.

    The xDS server is `xds_host:xds_port`, and with `also_xds` the other replicas of the
    control plane: endpoints of the same xDS cluster, so a lost stream reconnects to another
    one (replicas send identical content-hash versions, so nothing changes on the Envoy).

    `delta` picks incremental xDS (`DELTA_GRPC`) over state of the world (`GRPC`). A fixed
    `admin_port` is announced in the node's metadata (`ADMIN_METADATA`); 0 lets Envoy choose
    one and announces nothing.
    `retry_base_s`/`retry_max_s` bound the backoff with which Envoy reconnects to the
    xDS server after losing it. `tls` reaches the xDS server over mutual TLS (plain text
    without it). `re2_max_program_size` is the largest regex program Envoy accepts; the
    model keeps every regex within the default.
    """
    config_source = {"ads": {}, "resource_api_version": "V3"}
    servers = list(dict.fromkeys([(xds_host, xds_port), *also_xds]))
    xds_cluster: dict[str, Any] = {
        "name": XDS_CLUSTER,
        "type": "STATIC" if all(_is_ip(host) for host, _ in servers) else "STRICT_DNS",
        "connect_timeout": "1s",
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/"
                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        },
        "load_assignment": {
            "cluster_name": XDS_CLUSTER,
            "endpoints": [
                {
                    "lb_endpoints": [
                        {
                            "endpoint": {
                                "address": {"socket_address": {"address": h, "port_value": p}}
                            }
                        }
                        for h, p in servers
                    ]
                }
            ],
        },
    }
    if tls is not None:
        xds_cluster["transport_socket"] = _tls_socket(tls, [host for host, _ in servers])
    node: dict[str, Any] = {"id": node_id, "cluster": group}
    if admin_port:
        node["metadata"] = {ADMIN_METADATA: f"{admin_host}:{admin_port}"}
    return {
        "node": node,
        "admin": {
            "address": {"socket_address": {"address": admin_host, "port_value": admin_port}},
        },
        "dynamic_resources": {
            "ads_config": {
                "api_type": "DELTA_GRPC" if delta else "GRPC",
                "transport_api_version": "V3",
                "set_node_on_first_message_only": True,
                "grpc_services": [
                    {
                        "envoy_grpc": {
                            "cluster_name": XDS_CLUSTER,
                            "retry_policy": {
                                "retry_back_off": {
                                    "base_interval": _duration(retry_base_s),
                                    "max_interval": _duration(retry_max_s),
                                }
                            },
                        }
                    }
                ],
            },
            "cds_config": config_source,
            "lds_config": config_source,
        },
        "layered_runtime": {
            "layers": [
                {
                    "name": "static",
                    "static_layer": {
                        "re2.max_program_size.error_level": re2_max_program_size,
                        "re2.max_program_size.warn_level": re2_max_program_size,
                    },
                }
            ]
        },
        "static_resources": {"clusters": [xds_cluster]},
    }


def bootstrap_yaml(
    node_id: str,
    group: str,
    xds_host: str,
    xds_port: int,
    admin_port: int,
    delta: bool = False,
    **options: Any,
) -> str:
    """The same bootstrap as YAML text, ready for `envoy -c`."""
    config = bootstrap(node_id, group, xds_host, xds_port, admin_port, delta, **options)
    return yaml.safe_dump(config, sort_keys=False)
