"""Listeners: where a proxy accepts connections and what it does with them."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, SerializationInfo, field_serializer

from .firewall import AddressRules, Crs, Firewall, effective_firewall
from .route import VirtualHost
from .tls import REDACT_KEYS, Pem, redacted
from .types import BindAddress, Model, Name, ServerName, model_check

Protocol = Literal["http", "https", "tcp", "tls"]
L7_PROTOCOLS: frozenset[str] = frozenset({"http", "https"})
DEFAULT_MAX_CONNECTIONS = 10_000
"""A listener's connection limit unless it sets its own."""


class Certificate(Model):
    """A certificate chain and its private key, both inline PEM text.

    The certificate is served to clients whose SNI matches one of `server_names`: an exact
    name beats a `*.suffix` wildcard, a longer wildcard beats a shorter one; the listener's
    first certificate is served when no name matches.

    Config files may name PEM files instead (read when the file is loaded). The REST API
    never shows a private key: reads show `redacted:sha256:<digest of the PEM>` in its place,
    and a write that sends that marker back keeps the key it stands for.
    """

    multiline_fields: ClassVar[frozenset[str]] = frozenset({"cert", "key"})

    server_names: list[ServerName] = Field(default_factory=list)
    cert: Pem = Field(description="The certificate chain, PEM.")
    key: Pem = Field(description="The private key, PEM.", repr=False)

    @field_serializer("key")
    def _key_as_shown(self, key: str, info: SerializationInfo) -> str:
        """The key, or its redaction marker when dumped with the REDACT_KEYS context."""
        return redacted(key) if info.context and info.context.get(REDACT_KEYS) else key


class SniRoute(Model):
    """An L4 route of a `tls` listener: connections whose SNI is one of `server_names` go to
    `cluster`, still encrypted (TLS passthrough)."""

    server_names: list[ServerName] = Field(min_length=1)
    cluster: Name


class Listener(Model):
    """An address a proxy listens on, and what it sees there.

    - `http`: plain HTTP; routes by host, path, method, headers, query and cookies.
    - `https`: as `http`, after terminating TLS with `certificates` (chosen by SNI).
    - `tcp`: L4; every connection goes to `default_cluster`; nothing of the payload is seen.
    - `tls`: L4 with TLS passthrough: the proxy reads only the SNI of the ClientHello and
      routes by `sni_routes`, else to `default_cluster`; the backend terminates TLS.

    `accept_proxy_protocol` makes the listener require a PROXY protocol (v1 or v2) header,
    taking the client address from it: the setting for an L7 tier behind an L4 tier.
    On L7 listeners `forwarded_for` appends the client address to X-Forwarded-For and
    `request_id` gives each request an `x-request-id` header when it has none; L4
    listeners see no headers and ignore `forwarded_for`.

    `addresses` refuses connections by client address (every protocol); `firewall` checks
    the requests of every route with L7 rules and CRS inspection (http and https; a route's
    own `firewall` replaces it). See `controlplane.model.firewall`.
    """

    name: Name
    address: BindAddress
    protocol: Protocol
    accept_proxy_protocol: bool = False
    certificates: list[Certificate] = Field(default_factory=list)
    virtual_hosts: list[VirtualHost] = Field(default_factory=list)
    sni_routes: list[SniRoute] = Field(default_factory=list)
    default_cluster: Name | None = None
    forwarded_for: bool = True
    request_id: bool = False
    max_connections: int = Field(
        DEFAULT_MAX_CONNECTIONS,
        ge=1,
        le=1_000_000,
        description="Client connections the listener holds at once at most; one more is closed "
        "as soon as it is accepted.",
    )
    addresses: AddressRules | None = Field(
        None, description="Which client addresses may connect (any protocol)."
    )
    firewall: Firewall | None = Field(
        None, description="L7 rules and CRS inspection for every route (http, https)."
    )

    @model_check
    def _fields_fit_protocol(self) -> Listener:
        l7 = self.protocol in L7_PROTOCOLS
        if l7 and not self.virtual_hosts:
            raise ValueError(f"a {self.protocol} listener needs virtual_hosts")
        if not l7 and self.virtual_hosts:
            raise ValueError(f"a {self.protocol} listener is L4 and cannot have virtual_hosts")
        if self.protocol == "https" and not self.certificates:
            raise ValueError("an https listener needs certificates")
        if self.protocol != "https" and self.certificates:
            raise ValueError(
                f"certificates are for https listeners; a {self.protocol} listener "
                "does not terminate TLS"
            )
        if self.protocol != "tls" and self.sni_routes:
            raise ValueError("sni_routes are for tls (passthrough) listeners")
        if l7 and self.default_cluster is not None:
            raise ValueError("default_cluster is for tcp and tls listeners; use a route")
        if self.protocol == "tcp" and self.default_cluster is None:
            raise ValueError("a tcp listener needs default_cluster")
        if self.protocol == "tls" and not self.sni_routes and self.default_cluster is None:
            raise ValueError("a tls listener needs sni_routes or default_cluster")
        if not l7 and self.request_id:
            raise ValueError("request_id is an HTTP feature; an L4 listener cannot see headers")
        if not l7 and self.firewall is not None:
            raise ValueError(
                "firewall is for http and https listeners; an L4 listener sees no requests "
                "(use addresses)"
            )
        self._one_verdict_service()
        return self

    def _one_verdict_service(self) -> None:
        firewalls = [self.firewall] + [
            route.firewall for vhost in self.virtual_hosts for route in vhost.routes
        ]
        connections = {fw.crs.connection for fw in firewalls if fw is not None and fw.crs}
        if len(connections) > 1:
            raise ValueError(
                "the crs of a listener and of its routes must share service, failure, timeout "
                "and max_body_bytes (one verdict service per listener)"
            )

    def route_firewalls(self) -> list[Firewall | None]:
        """The firewall that checks each route's requests (`effective_firewall`), in
        declaration order of virtual hosts and routes."""
        return [
            effective_firewall(self.firewall, route.firewall)
            for vhost in self.virtual_hosts
            for route in vhost.routes
        ]

    def verdict_service(self) -> Crs | None:
        """The crs whose service settings the listener's routes share, if a route has one."""
        return next((fw.crs for fw in self.route_firewalls() if fw and fw.crs), None)

    @property
    def scheme(self) -> str:
        """The URL scheme clients reach an L7 listener with: `https` or `http`."""
        return "https" if self.protocol == "https" else "http"

    @property
    def is_l7(self) -> bool:
        """Whether the listener parses HTTP."""
        return self.protocol in L7_PROTOCOLS
