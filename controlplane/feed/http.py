"""The serving side of the HAProxy agent: where agents fetch their group's bundle and report.

Two endpoints, meant to be mounted under `/v1` by the API (which also applies auth):

- `GET /haproxy/{group}/bundle?known=V&wait=S`: the group's bundle as `Bundle.to_json` writes
  it, with the `revision` that gave it, and `ETag: "<version>"`, at once when its version
  differs from `known` (or `known` is absent), otherwise as soon as it changes within `wait`
  seconds (at most 60, default 0); `304 Not Modified` without a body when it did not.
  `If-None-Match` may stand in for `known`. 404 for a group that has no bundle.
  `instance=ID` (optional) says who polls, and `running=V` which version its HAProxy runs, so
  that a server that restarted lists the agent at once (both told to the `AgentReports`
  observer while the poll lasts).
- `POST /haproxy/{group}/status`: what applying a version did (`StatusReport`, told to the
  observer: an ACK or a NACK), or what the agent's supervisor saw of HAProxy
  (`event` `down`, `restarted` or `restart failed`); 204. 409 when the instance id is already
  another proxy's (an Envoy, a local HAProxy, an agent of another group).

The API admits only agents of `{group}` here (see `controlplane.api.deps.agent`); the bundle
holds the group's private keys, and nothing else of the config.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import Awaitable
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Path, Query, Request, Response

from .bundles import BundleSource, GroupBundle
from .reports import AgentReports
from .wire import StatusReport

__all__ = ["agent_router"]

MAX_WAIT = 60.0
"""The longest a bundle request may wait for a change, in seconds."""

_BODIES_CACHED = 32


GroupName = Annotated[str, Path(min_length=1, max_length=253, description="Node group.")]


def agent_router(source: BundleSource, reports: AgentReports) -> APIRouter:
    """The agent endpoints, serving `source`'s bundles and telling `reports` what agents say."""
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
        polling = instance if instance and reports.refusal(instance, group) is None else None
        if polling is not None:
            reports.polling(polling, group, running)
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
                reports.polled(polling)
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
        refusal = reports.refusal(report.instance_id, group)
        if refusal is not None:
            raise HTTPException(409, f"{refusal}; give this agent its own --instance-id")
        reports.reported(group, report)
        return Response(status_code=204)

    return router


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
