"""The agents' side of the feed's HTTP exchange: what an agent reports after applying a bundle
(the bundle itself travels as `controlplane.haproxy.bundle.Bundle`'s JSON)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ..proxies.haproxy.outcomes import ApplyMode, HealthState


class StatusReport(BaseModel):
    """What an agent's HAProxy did with a version: `ok` true is an ACK, false a NACK.

    Mirrors `controlplane.proxies.haproxy.manager.ApplyResult`; `revision` is the revision the agent
    received with the bundle. Unknown fields are ignored (newer agents, older servers).
    With `event` other than "apply" it is what the agent's supervisor saw instead (see
    `controlplane.proxies.haproxy.manager.HealthEvent`), at `at` (the agent's clock).
    """

    model_config = ConfigDict(extra="ignore")

    instance_id: str = Field(min_length=1, max_length=512)
    version: str = Field(min_length=1, max_length=128)
    ok: bool
    mode: ApplyMode
    reason: str = Field(default="", max_length=10_000)
    error: str | None = Field(default=None, max_length=100_000)
    duration: float = Field(ge=0)
    revision: int | None = None
    event: Literal["apply"] | HealthState = "apply"
    at: float | None = None
