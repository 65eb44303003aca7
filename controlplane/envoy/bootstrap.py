"""The bootstrap of an Envoy node: fetch everything over ADS from the control plane.

The bootstrap holds only what Envoy needs before it can talk to us: its node identity (the
node's `cluster` is its group, which picks its snapshot), the admin listener, and one static
cluster reaching the xDS server over HTTP/2. Listeners and clusters come over ADS.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import yaml

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
    re2_max_program_size: int = RE2_MAX_PROGRAM_SIZE,
) -> dict[str, Any]:
    """An Envoy v3 bootstrap (as a dict) for one node of `group`.

    `delta` picks incremental xDS (`DELTA_GRPC`) over state of the world (`GRPC`).
    `retry_base_s`/`retry_max_s` bound the backoff with which Envoy reconnects to the
    xDS server after losing it. `re2_max_program_size` is the largest regex program Envoy
    accepts; the model keeps every regex within the default.
    """
    config_source = {"ads": {}, "resource_api_version": "V3"}
    return {
        "node": {"id": node_id, "cluster": group},
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
        "static_resources": {
            "clusters": [
                {
                    "name": XDS_CLUSTER,
                    "type": "STATIC" if _is_ip(xds_host) else "STRICT_DNS",
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
                                            "address": {
                                                "socket_address": {
                                                    "address": xds_host,
                                                    "port_value": xds_port,
                                                }
                                            }
                                        }
                                    }
                                ]
                            }
                        ],
                    },
                }
            ]
        },
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
