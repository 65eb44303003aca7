"""The feature hook: what a route- or listener-level policy adds to the HAProxy configuration.

A feature is a `Feature` subclass in a module of its own, registered in `FEATURES`
(`controlplane.haproxy.features`). For each phase it takes part in, it overrides the method of
that name, which returns the values its template reads (or None: nothing to add here), and
ships the template `templates/features/<name>/<phase>.j2`, which reads them as `data`:

- `global_section` (once per bundle): lines of the `global` section (`lua-load` of a Lua
  source the feature adds to the bundle's files).
- `frontend` (every listener): declarations at the head of the frontend, after `bind`:
  a stick table, `maxconn`, `tcp-request connection` rules.
- `request` (HTTP listeners): `http-request` rules once the route is decided (`txn.route`
  holds its id; a request without a route has had its 404) and before the backend is chosen;
  features run in `FEATURES` order, so one refusing a request comes before those changing it.
- `response` (HTTP listeners): response rules (`http-response`, `http-after-response`,
  which also sees HAProxy's own answers).
- `sections` (every listener): sections of its own after the backends, such as a backend
  holding only a stick table (HAProxy keeps one table per section).
- `backend` (every backend of every cluster): lines of the backend, before its servers.

Per-route values go in map files keyed by route id (`scope.maps.add(purpose, route_id,
value)` returns the map's file name), so rules stay one per listener however many routes use
the policy. Files a feature needs (pattern files for `-f`, Lua sources, SPOE configurations)
go in the bundle with `scope.files.add(stem, suffix, content)`, which returns a name carrying
the content's hash. Values reach the text only through the templates, which quote them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from ..scopes import BackendScope, GlobalScope, ListenerScope

Phase = Literal["global_section", "frontend", "request", "response", "sections", "backend"]
PHASES: tuple[Phase, ...] = (
    "global_section",
    "frontend",
    "request",
    "response",
    "sections",
    "backend",
)


@dataclass(frozen=True)
class Part:
    """What one feature adds at one phase: a template and the values it reads as `data`."""

    template: str
    data: object


class Feature:
    """A policy of the HAProxy compiler; every phase adds nothing unless overridden."""

    name: ClassVar[str]
    """The feature's templates are `templates/features/<name>/<phase>.j2`."""

    def global_section(self, scope: GlobalScope) -> object | None:
        return None

    def frontend(self, scope: ListenerScope) -> object | None:
        return None

    def request(self, scope: ListenerScope) -> object | None:
        return None

    def response(self, scope: ListenerScope) -> object | None:
        return None

    def sections(self, scope: ListenerScope) -> object | None:
        return None

    def backend(self, scope: BackendScope) -> object | None:
        return None


def parts(
    features: tuple[Feature, ...],
    phase: Phase,
    scope: GlobalScope | ListenerScope | BackendScope,
) -> list[Part]:
    """What `features` add at `phase` for `scope`, in their order."""
    found = []
    for feature in features:
        method = getattr(feature, phase)
        data = method(scope)
        if data is not None:
            found.append(Part(f"features/{feature.name}/{phase}.j2", data))
    return found
