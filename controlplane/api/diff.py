"""What a change does: model objects added, removed or changed, plus per-proxy detail from a
`DiffExplainer` (xDS resources, HAProxy runtime update or reload) where one is wired."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any, Literal, Protocol

from ..model import Config, route_ids

ChangeKind = Literal["added", "removed", "changed"]


@dataclass(frozen=True)
class ModelChange:
    """One object that a change adds, removes or changes.

    `name` is the object's address: `listener`, `listener/vhost`, `listener/vhost/route`
    (`@N` for an unnamed route at position N), `cluster`, `node group`.
    """

    kind: str
    name: str
    change: ChangeKind

    def as_json(self) -> dict[str, str]:
        return asdict(self)


class DiffExplainer(Protocol):
    """Says what a config change means for each proxy kind.

    Returns a JSON-able mapping keyed by proxy kind, e.g. `{"envoy": {"groups": {"edge":
    {"routes": ["web"]}}}, "haproxy": {"groups": {"edge": "runtime"}}}`; `{}` when it has
    nothing to add. `old` is None for the first revision. Must not change anything.
    """

    def explain(self, old: Config | None, new: Config) -> dict[str, Any]: ...


class ModelOnly:
    """The default explainer: model-level changes only, no per-proxy detail."""

    def explain(self, old: Config | None, new: Config) -> dict[str, Any]:
        return {}


def model_diff(old: Config | None, new: Config) -> list[ModelChange]:
    """Every object that differs between two configs, in declaration order."""
    before = dict(_objects(old)) if old else {}
    after = dict(_objects(new))
    changes = [
        ModelChange(kind, name, "added" if (kind, name) not in before else "changed")
        for (kind, name), value in after.items()
        if before.get((kind, name)) != value
    ]
    changes += [
        ModelChange(kind, name, "removed") for (kind, name) in before if (kind, name) not in after
    ]
    return changes


def _objects(config: Config) -> Iterator[tuple[tuple[str, str], Any]]:
    """((kind, address), comparable content); a parent's content leaves out its children but
    keeps their order, so reordering routes changes the virtual host."""
    for listener in config.listeners:
        yield (
            ("listener", listener.name),
            (
                listener.model_dump(exclude={"virtual_hosts"}),
                [v.name for v in listener.virtual_hosts],
            ),
        )
        for vhost in listener.virtual_hosts:
            vname = f"{listener.name}/{vhost.name}"
            keys = [rid.key for rid in route_ids(vhost)]
            yield ("virtual_host", vname), (vhost.model_dump(exclude={"routes"}), keys)
            for key, route in zip(keys, vhost.routes, strict=True):
                yield ("route", f"{vname}/{key}"), route.model_dump()
    for cluster in config.clusters:
        yield ("cluster", cluster.name), cluster.model_dump()
    for group in config.node_groups:
        yield ("node_group", group.name), group.model_dump()
