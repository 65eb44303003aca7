"""Full path rewrite of forwarding routes (`path_rewrite`): the path becomes the route's, the
query is kept (`set-path`), the new path coming from a map keyed by route id."""

from __future__ import annotations

from ..scopes import ListenerScope
from .base import Feature


class PathRewrite(Feature):
    name = "path_rewrite"

    def request(self, scope: ListenerScope) -> str | None:
        for entry in scope.forwarding:
            if entry.route.path_rewrite is not None:
                scope.maps.add("path-rewrite", entry.id, entry.route.path_rewrite)
        return scope.maps.name("path-rewrite") if "path-rewrite" in scope.maps else None
