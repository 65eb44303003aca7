"""The scenario format: a config, the backends it needs, and requests with what a client sees.

A scenario never names a proxy: the same expectations hold on every target. Fields are
documented in tests/scenarios/README.md; this module is their single definition.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from controlplane.model import DEFAULT_GROUP
from controlplane.model.types import Duration

BackendKind = Literal["http1", "http2", "websocket", "tcp", "tls", "closed", "silent", "verdicts"]
"""Harness backends, plus three made by the runner: `closed` (a port held but not listening:
connections are refused), `silent` (accepts connections and never answers) and `verdicts`
(the product's CRS verdict service, `controlplane waf-serve`, for a crs `service`)."""

StepKind = Literal["http", "websocket", "grpc", "tcp", "tls"]
ProxyName = Literal["envoy", "haproxy"]
CertName = Literal["example.com", "api.example.com", "other.test"]


class Strict(BaseModel):
    """Unknown fields are errors; a scenario is read, never changed."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class BackendDecl(Strict):
    """A backend the scenario starts; it answers with its name."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    kind: BackendKind = "http1"
    status: int = Field(200, ge=100, le=599, description="The status an http1 backend answers.")
    proxy_protocol: bool = Field(False, description="Expect a PROXY header on each connection.")
    cert: CertName | None = Field(None, description="A tests/certs certificate (tls backends).")
    headers: dict[str, str] = Field(
        default_factory=dict, description="Extra response headers of an http1/websocket backend."
    )
    delay: Duration | None = Field(
        None, description="How long an http1 or http2 backend takes to answer."
    )

    @model_validator(mode="after")
    def _fits_kind(self) -> BackendDecl:
        if self.kind == "tls" and self.cert is None:
            raise ValueError("a tls backend needs cert")
        if self.proxy_protocol and self.kind not in ("http1", "websocket", "tcp"):
            raise ValueError("proxy_protocol is for http1, websocket and tcp backends")
        if self.cert is not None and self.kind != "tls":
            raise ValueError("cert is for tls backends")
        if self.headers and self.kind not in ("http1", "websocket"):
            raise ValueError("headers are for http1 and websocket backends")
        if self.delay is not None and self.kind not in ("http1", "http2"):
            raise ValueError("delay is for http1 and http2 backends")
        return self


class Condition(Strict):
    """A header condition other than an exact value: present or absent, or containing text."""

    present: bool | None = None
    contains: str | None = None

    @model_validator(mode="after")
    def _one(self) -> Condition:
        if (self.present is None) == (self.contains is None):
            raise ValueError("set exactly one of present, contains")
        return self


HeaderExpectation = Annotated[
    str | Condition | None,
    Field(description="The exact value (repeated headers joined by ', '), a condition, or null "),
]
"""null means the header is absent."""


class BodyContains(Strict):
    contains: str


class Range(Strict):
    """A count from `min` to `max`, both included."""

    min: int = Field(0, ge=0)
    max: int | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if self.max is not None and self.max < self.min:
            raise ValueError("max is less than min")
        return self

    def holds(self, value: int) -> bool:
        return self.min <= value and (self.max is None or value <= self.max)

    def __str__(self) -> str:
        return f"{self.min} to {self.max}" if self.max is not None else f"at least {self.min}"


class Expect(Strict):
    """What the client must observe, for every one of the step's `count` requests unless the
    field is about all of them together (`shares`, `sticky`, `backends_seen`, `admitted`,
    `upstream_connections`). With `admitted`, the per-request fields hold for the requests a
    backend answered and `refused` for the others."""

    backend: str | None = None
    backend_in: list[str] | None = Field(None, min_length=1)
    backends_seen: list[str] | None = Field(
        None, min_length=1, description="Each of these backends answered at least once."
    )
    status: int | None = Field(None, ge=100, le=599)
    headers: dict[str, HeaderExpectation] = Field(default_factory=dict)
    upstream_headers: dict[str, HeaderExpectation] = Field(default_factory=dict)
    upstream_path: str | None = None
    body: str | BodyContains | None = None
    shares: dict[str, float] | None = None
    tolerance: float = Field(0.05, gt=0, lt=1)
    sticky: bool = False
    upgraded: bool | None = Field(None, description="websocket steps: whether the upgrade won.")
    certificate: str | None = Field(
        None, description="A name the certificate the client was shown covers (CN or SAN)."
    )
    proxy_source: str | None = Field(
        None, description="What a PROXY-protocol backend read: 'ip' (any port) or 'ip:port'."
    )
    error: str | None = Field(
        None,
        description="The request fails at the client (no HTTP answer, gRPC status code, "
        "closed connection); the failure's text contains this.",
    )
    counts: dict[str, int] | None = Field(
        None, description="How many of the step's requests each backend answered, exactly."
    )
    received: dict[str, int] | None = Field(
        None,
        description="How many requests each backend received during the step, mirrored "
        "copies included (waited for a moment, since copies may arrive after the answer).",
    )
    admitted: Range | None = Field(
        None, description="How many of the step's requests (all clients) a backend answered."
    )
    refused: Expect | None = Field(
        None, description="With admitted: what each request no backend answered shows."
    )
    upstream_connections: Range | None = Field(
        None,
        description="The most connections the answering backends had open at once, as they "
        "report it.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> Expect:
        if self.backend is not None and self.backend_in is not None:
            raise ValueError("set at most one of backend, backend_in")
        if self.shares is not None:
            total = sum(self.shares.values())
            if total > 1.0 + 1e-9 or any(not 0 <= share <= 1 for share in self.shares.values()):
                raise ValueError(f"shares are fractions adding up to at most 1, not {total}")
        if self.error is not None:
            answered = (
                "backend",
                "backend_in",
                "backends_seen",
                "status",
                "shares",
                "body",
                "counts",
            )
            if any(getattr(self, f) for f in answered) or self.sticky:
                raise ValueError("error excludes expectations about an answer")
        if self.refused is not None:
            if self.admitted is None:
                raise ValueError("refused needs admitted")
            inner = ("admitted", "refused", "shares", "backends_seen", "upstream_connections")
            if any(getattr(self.refused, f) is not None for f in inner) or self.refused.sticky:
                raise ValueError("refused holds per-request expectations only")
        return self

    def named_backends(self) -> set[str]:
        """Every backend name the expectation mentions."""
        names = set(self.backend_in or ()) | set(self.backends_seen or ())
        names |= set(self.shares or ()) | set(self.counts or ()) | set(self.received or ())
        if self.backend is not None:
            names.add(self.backend)
        if self.refused is not None:
            names |= self.refused.named_backends()
        return names


class Step(Strict):
    """One or more identical requests sent to a listener, and what each must observe: `count`
    of them back to back, or `rate` per second for `for`, by each of `clients` clients."""

    listener: str
    kind: StepKind = "http"
    method: str = Field("GET", pattern=r"^[A-Z]+$")
    path: str = Field("/", pattern=r"^/\S*$")
    host: str | None = Field(None, description="Host header (http, websocket) or :authority.")
    headers: dict[str, str] = Field(default_factory=dict)
    sni: str | None = None
    body: str | None = Field(None, description="HTTP request body, or tcp/tls payload.")
    proxy_protocol: str | None = Field(
        None,
        pattern=r"^\d+\.\d+\.\d+\.\d+:\d+$",
        description="Send a PROXY v1 header claiming this client 'ip:port'.",
    )
    source: str | None = Field(
        None,
        pattern=r"^127\.\d+\.\d+\.\d+$",
        description="Connect from this loopback address (127.0.0.0/8).",
    )
    raw: str | None = Field(
        None,
        description="An HTTP/1.1 request sent byte for byte as written (http steps): what a "
        "client library would not send, such as no Host or a repeated Content-Length.",
    )
    count: int = Field(1, ge=1, le=5000)
    rate: float | None = Field(
        None, gt=0, le=1000, description="Requests per second each client sends, paced, with for."
    )
    for_: Duration | None = Field(
        None, alias="for", description="How long each client sends at `rate` (instead of count)."
    )
    clients: int = Field(
        1, ge=1, le=1000, description="Clients sending the step at once, each on its connection."
    )
    session: bool = Field(False, description="Keep cookies across the count, as a browser.")
    hold_open: bool = Field(
        False, description="tcp steps: keep every connection open until the step's last."
    )
    within: Duration | None = Field(
        None, description="Repeat the step until it passes, at most this long (convergence)."
    )
    expect: Expect = Field(default_factory=Expect)

    @model_validator(mode="after")
    def _fits_kind(self) -> Step:
        http_only = {
            "method": self.method != "GET",
            "headers": bool(self.headers),
            "session": self.session,
        }
        if self.kind in ("tcp", "tls", "grpc", "websocket"):
            extra = [name for name, used in http_only.items() if used]
            if extra:
                raise ValueError(f"{', '.join(extra)} not for {self.kind} steps")
        if self.raw is not None:
            written = {"method", "path", "host", "headers", "body", "session", "proxy_protocol"}
            extra = sorted(written & self.model_fields_set)
            if self.kind != "http" or extra:
                raise ValueError(f"raw is a whole http request; not with {', '.join(extra)}")
        if self.sni is not None and self.kind not in ("http", "tls"):
            raise ValueError("sni is for http (to https listeners) and tls steps")
        if self.proxy_protocol is not None and self.kind not in ("http", "tcp"):
            raise ValueError("proxy_protocol is for http and tcp steps")
        if self.expect.upgraded is not None and self.kind != "websocket":
            raise ValueError("expect.upgraded is for websocket steps")
        if self.expect.sticky and self.count < 2:
            raise ValueError("sticky needs count of at least 2")
        if self.expect.shares is not None and self.count < 100:
            raise ValueError("shares need count of at least 100")
        if self.hold_open and self.kind != "tcp":
            raise ValueError("hold_open is for tcp steps")
        if self.expect.counts is not None and sum(self.expect.counts.values()) > self.count:
            raise ValueError("counts add up to more than count")
        if (self.rate is None) != (self.for_ is None):
            raise ValueError("rate and for go together")
        if self.rate is not None and "count" in self.model_fields_set:
            raise ValueError("set count, or rate and for")
        if self.rate is not None and self.kind != "http":
            raise ValueError("rate and for are for http steps")
        if self.clients > 1 and self.kind not in ("http", "grpc"):
            raise ValueError("clients are for http and grpc steps")
        if self.within is not None and (self.rate is not None or self.clients > 1):
            raise ValueError("within repeats a step; a timed or concurrent step is played once")
        return self

    @property
    def requests_per_client(self) -> int:
        """How many requests each client sends: `count`, or `rate` x `for`."""
        if self.rate is not None and self.for_ is not None:
            return max(1, round(self.rate * self.for_ / 1000))
        return self.count


class RejectedBy(Strict):
    """The proxy that cannot express the config, and the issue it must be refused with."""

    target: ProxyName
    path: str = Field(description="The field, written as format_path writes it.")
    message_contains: str


class Upstream(Strict):
    """Where a case translated from another project's tests comes from: the repository and
    each file used, with the commit it was read at."""

    repo: str = Field(pattern=r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
    files: dict[str, str] = Field(min_length=1, description="path: 40-hex commit")

    @model_validator(mode="after")
    def _commits(self) -> Upstream:
        for path, commit in self.files.items():
            if len(commit) != 40 or not set(commit) <= set("0123456789abcdef"):
                raise ValueError(f"files.{path}: {commit!r} is not a 40-hex commit")
        return self


class Scenario(Strict):
    """A behaviour both proxies must show: the config, its backends, requests and answers;
    or, for a case translated from elsewhere (`upstream`), why the model cannot express it
    (`not_expressible`), with no config and no requests."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    description: str = Field(min_length=10)
    group: str = DEFAULT_GROUP
    backends: list[BackendDecl] = Field(default_factory=list)
    config: dict[str, Any] | None = None
    requests: list[Step] = Field(default_factory=list)
    rejected_by: RejectedBy | None = None
    upstream: Upstream | None = None
    not_expressible: str | None = Field(
        None, min_length=10, description="Why the model cannot express the upstream case."
    )

    @model_validator(mode="after")
    def _played_or_explained(self) -> Scenario:
        if self.not_expressible is not None:
            if self.config is not None or self.requests or self.backends:
                raise ValueError("a not_expressible case has no backends, config or requests")
            if self.upstream is None:
                raise ValueError("not_expressible is for cases translated from upstream")
        elif self.config is None or not self.requests:
            raise ValueError(
                "config and requests are required (or, for an upstream case the model cannot "
                "express, not_expressible: why)"
            )
        return self

    @property
    def playable(self) -> bool:
        """Whether the scenario has requests to play (it is not a not_expressible case)."""
        return self.not_expressible is None

    def backend(self, name: str) -> BackendDecl:
        """The backend declared as `name` (KeyError if none)."""
        for backend in self.backends:
            if backend.name == name:
                return backend
        raise KeyError(name)
