"""The kinds of proxy a config is compiled for, and the node group a proxy joins by default."""

from __future__ import annotations

from typing import Literal

ProxyKind = Literal["envoy", "haproxy"]
"""A kind of proxy: Envoy (fed over xDS) or HAProxy (fed rendered configuration)."""

PROXY_KINDS: tuple[ProxyKind, ...] = ("envoy", "haproxy")

ADMIN_METADATA = "controlplane.admin"
"""The Envoy node metadata key announcing its admin interface (`ip:port`, set by
`envoy-bootstrap`): where the control plane reads the node's `/config_dump` to verify what it
runs (`controlplane status --verify`)."""

DEFAULT_GROUP = "default"
"""The node group of a config that declares none (it holds every listener), and of a proxy
that names no group."""
