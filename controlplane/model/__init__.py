"""The configuration model: what a config means, independent of any proxy.

Nothing here imports a proxy or a compiler. `parse_config` and `load_file` give a
validated `Config`; `check(config, target)` refuses what one proxy cannot express.
"""

from .cluster import Cluster, Endpoint, HashCookie, HashOn, HealthCheck
from .config import Config, NodeGroup, referenced_clusters
from .errors import ConfigError, Issue, format_path
from .firewall import AddressRules, Crs, Firewall, effective_firewall
from .kinds import DEFAULT_GROUP, PROXY_KINDS, ProxyKind
from .limits import KEYS_KEPT, GroupFacts, HeaderKey, RateLimit, TokenBucket, counts_members
from .listener import Certificate, Listener, SniRoute
from .loading import (
    ConfigFileError,
    dump_yaml,
    load_file,
    load_text,
    parse_text,
    resolve_certificate_files,
)
from .precedence import ordered_routes, precedence_order
from .route import (
    DirectResponse,
    HeaderMutation,
    Match,
    PathMatch,
    Redirect,
    Retries,
    Route,
    RouteId,
    ValueMatch,
    VirtualHost,
    WeightedBackend,
    route_ids,
)
from .targets import check, target_issues
from .types import format_duration, split_address
from .validate import parse_config, validate_config

__all__ = [
    "DEFAULT_GROUP",
    "KEYS_KEPT",
    "PROXY_KINDS",
    "AddressRules",
    "Certificate",
    "Cluster",
    "Config",
    "ConfigError",
    "ConfigFileError",
    "Crs",
    "DirectResponse",
    "Endpoint",
    "Firewall",
    "GroupFacts",
    "HashCookie",
    "HashOn",
    "HeaderKey",
    "HeaderMutation",
    "HealthCheck",
    "Issue",
    "Listener",
    "Match",
    "NodeGroup",
    "PathMatch",
    "ProxyKind",
    "RateLimit",
    "Redirect",
    "Retries",
    "Route",
    "RouteId",
    "SniRoute",
    "TokenBucket",
    "ValueMatch",
    "VirtualHost",
    "WeightedBackend",
    "check",
    "counts_members",
    "dump_yaml",
    "effective_firewall",
    "format_duration",
    "format_path",
    "load_file",
    "load_text",
    "ordered_routes",
    "parse_config",
    "parse_text",
    "precedence_order",
    "referenced_clusters",
    "resolve_certificate_files",
    "route_ids",
    "split_address",
    "target_issues",
    "validate_config",
]
