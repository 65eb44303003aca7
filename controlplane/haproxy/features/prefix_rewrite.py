"""Prefix rewrite of forwarding routes (`prefix_rewrite`): the matched path prefix is replaced,
the query kept. A map keyed by route id gives `length|mode|text`: cut `length` characters and
put `text` before the rest (mode `k`), or keep the rest as an absolute path (mode `s`, for a
rewrite to `/`); one `set-path` rule per distinct (length, mode).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ..scopes import ListenerScope
from .base import Feature


@dataclass(frozen=True, order=True)
class Cut:
    """Rewrites that cut `length` characters, in mode `k` (keep a new prefix) or `s`."""

    length: int
    mode: Literal["k", "s"]


@dataclass
class Rewrites:
    """The rewrite map and the cuts its entries ask for."""

    map: str
    cuts: list[Cut] = field(default_factory=list)


class PrefixRewrite(Feature):
    name = "prefix_rewrite"

    def request(self, scope: ListenerScope) -> Rewrites | None:
        cuts: set[Cut] = set()
        for entry in scope.forwarding:
            rewrite = entry.route.prefix_rewrite
            if rewrite is None:
                continue
            prefix = entry.route.match.path.normalized_prefix or "/"
            target = rewrite.rstrip("/") or "/"
            cut: Cut
            if prefix == "/":
                if target == "/":
                    continue
                cut, text = Cut(1, "k"), target + "/"
            elif target == "/":
                cut, text = Cut(len(prefix), "s"), ""
            else:
                cut, text = Cut(len(prefix), "k"), target
            scope.maps.add("rewrite", entry.id, f"{cut.length}|{cut.mode}|{text}")
            cuts.add(cut)
        if not cuts:
            return None
        return Rewrites(scope.maps.name("rewrite"), sorted(cuts))
