"""The serving side of the HAProxy agent: where agents fetch their group's bundle and report.

Two endpoints, meant to be mounted under `/v1` by the API (which also applies auth):

- `GET /haproxy/{group}/bundle?known=V&wait=S`: the group's bundle as `Bundle.to_json` writes
  it, with the `revision` that gave it, and `ETag: "<version>"`, at once when its version
  differs from `known` (or `known` is absent), otherwise as soon as it changes within `wait`
  seconds (at most 60, default 0); `304 Not Modified` without a body when it did not.
  `If-None-Match` may stand in for `known`. 404 for a group that has no bundle.
  `instance=ID` (optional) marks the agent as seen in the ledger while it polls, and
  `running=V` says which version its HAProxy runs, so that a server that restarted lists the
  agent at once.
- `POST /haproxy/{group}/status`: what applying a version did (`StatusReport`), recorded in the
  ledger as an ACK or a NACK of kind "haproxy", or what the agent's supervisor saw of HAProxy
  (`event` `down`, `restarted` or `restart failed`); 204. 409 when the instance id is already
  another proxy's in the ledger (an Envoy, a local HAProxy, an agent of another group).

The API admits only agents of `{group}` here (see `controlplane.api.deps.agent`); the bundle
holds the group's private keys, and nothing else of the config.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import Awaitable
from typing import Annotated, Literal

from fastapi import APIRouter, Header, HTTPException, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from ..fleet.ledger import Health, Ledger
from .bundles import BundleSource, GroupBundle, RenderedBundles

__all__ = ["BundleSource", "GroupBundle", "RenderedBundles", "StatusReport", "agent_router"]

MAX_WAIT = 60.0
"""The longest a bundle request may wait for a change, in seconds."""

_BODIES_CACHED = 32


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
    mode: Literal["start", "runtime", "reload", "unchanged", "rejected"]
    reason: str = Field(default="", max_length=10_000)
    error: str | None = Field(default=None, max_length=100_000)
    duration: float = Field(ge=0)
    revision: int | None = None
    event: Literal["apply", "down", "restarted", "restart failed"] = "apply"
    at: float | None = None


GroupName = Annotated[str, Path(min_length=1, max_length=253, description="Node group.")]


def agent_router(source: BundleSource, ledger: Ledger) -> APIRouter:
    """The agent endpoints, serving `source`'s bundles and recording reports in `ledger`."""
    router = APIRouter(tags=["haproxy-agent"])
    bodies: OrderedDict[tuple[str, int, str], bytes] = OrderedDict()

    def body_of(group: str, entry: GroupBundle) -> bytes:
        key = (group, entry.revision, entry.bundle.version)
        cached = bodies.get(key)
        if cached is None:
            cached = entry.bundle.to_json(revision=entry.revision).encode()
            bodies[key] = cached
            while len(bodies) > _BODIES_CACHED:
                bodies.popitem(last=False)
        return cached

    @router.get(
        "/haproxy/{group}/bundle",
        summary="The group's HAProxy bundle (long-poll)",
        responses={
            200: {"description": "The bundle (`Bundle.to_json`) and its revision."},
            304: {"description": "Still `known` after `wait` seconds."},
            404: {"description": "No bundle for this group."},
        },
    )
    async def get_bundle(
        request: Request,
        group: GroupName,
        known: Annotated[
            str | None, Query(max_length=128, description="The version the agent has.")
        ] = None,
        wait: Annotated[
            float, Query(ge=0, le=MAX_WAIT, description="Seconds to wait for a change.")
        ] = 0.0,
        instance: Annotated[
            str | None, Query(max_length=512, description="The polling agent's instance id.")
        ] = None,
        running: Annotated[
            str | None, Query(max_length=128, description="The version its HAProxy runs.")
        ] = None,
        if_none_match: Annotated[str | None, Header()] = None,
    ) -> Response:
        if known is None and if_none_match is not None:
            known = if_none_match.strip().removeprefix("W/").strip('"') or None
        polling = instance if instance and _may_poll(ledger, instance, group) else None
        if polling is not None:
            ledger.poll_started(polling, group, running)
        try:
            if known is not None and wait > 0:
                gone, entry = await _unless_disconnected(
                    request, source.wait_change(group, known, wait)
                )
                if gone:
                    return Response(status_code=304)  # nobody is listening any more
            else:
                entry = source.current(group)
        finally:
            if polling is not None:
                ledger.poll_ended(polling)
        if entry is None:
            raise HTTPException(404, f"no HAProxy bundle for node group {group!r}")
        etag = f'"{entry.bundle.version}"'
        if entry.bundle.version == known:
            return Response(status_code=304, headers={"ETag": etag})
        return Response(
            body_of(group, entry), media_type="application/json", headers={"ETag": etag}
        )

    @router.post(
        "/haproxy/{group}/status",
        status_code=204,
        summary="Report what applying a version did (ACK or NACK)",
    )
    def post_status(group: GroupName, report: StatusReport) -> Response:
        known = ledger.get(report.instance_id)
        if known is not None and not _is_agent(ledger, report.instance_id, group):
            raise HTTPException(
                409,
                f"instance id {report.instance_id!r} is another proxy's ({known.kind} of node "
                f"group {known.group!r}); give this agent its own --instance-id",
            )
        if report.event != "apply":
            health = Health(report.event, report.at or time.time(), report.reason, report.error)
            ledger.record_health(
                report.instance_id, group, "haproxy", health, report.version, {"via": "agent"}
            )
            return Response(status_code=204)
        ledger.record_apply(
            report.instance_id,
            group,
            "haproxy",
            report.version,
            report.ok,
            report.error,
            {
                "mode": report.mode,
                "reason": report.reason,
                "duration": report.duration,
                "revision": report.revision,
                "via": "agent",
            },
        )
        return Response(status_code=204)

    return router


def _may_poll(ledger: Ledger, instance: str, group: str) -> bool:
    """Whether a poll may speak for `instance`: one the ledger does not know (a server that
    restarted lists it at once), or an agent's HAProxy of this group; never another proxy."""
    return ledger.get(instance) is None or _is_agent(ledger, instance, group)


def _is_agent(ledger: Ledger, instance: str, group: str) -> bool:
    """Whether the ledger knows `instance` as an agent's HAProxy of `group`."""
    known = ledger.get(instance)
    return (
        known is not None
        and known.kind == "haproxy"
        and known.group == group
        and known.detail.get("via") == "agent"
    )


async def _unless_disconnected(
    request: Request, waiting: Awaitable[GroupBundle | None]
) -> tuple[bool, GroupBundle | None]:
    """(False, what `waiting` gives), or (True, None) as soon as the client goes away: the long
    poll of an agent that stopped should not hold its place until the wait ends."""

    async def disconnected() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    answer = asyncio.ensure_future(waiting)
    watcher = asyncio.ensure_future(disconnected())
    try:
        await asyncio.wait({answer, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (answer, watcher):
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
    if answer.done() and not answer.cancelled():
        return False, answer.result()
    return True, None
