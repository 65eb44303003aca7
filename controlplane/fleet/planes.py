"""The seam between the fleet and each kind of proxy: a data plane compiles a node group's part
of a config, publishes what it compiled, and says what a change means for its proxies.

A compile is a pure function of the config, the group and `GroupFacts`: what the fleet knows
of the group beyond the config (how many proxies it has, for `scope: group` rate limits). The
fleet derives the facts from the ledger and compiles the group again when they change.

Adding a kind of proxy is adding a plane; the fleet (`controlplane.fleet.rollout`) loops over
its planes and never asks which kind one is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, TypeVar

from ..model import Config, GroupFacts, ProxyKind


class Build(Protocol):
    """What a plane made of one group for one revision."""

    @property
    def versions(self) -> Mapping[str, Mapping[str, str]]:
        """Each content version the group's proxies will run (one per placement: a relocated
        local HAProxy runs another text than the group's agents), with its parts when it has
        some (an Envoy snapshot: the version of each xDS type)."""
        ...


B = TypeVar("B", bound=Build)


class DataPlane(Protocol[B]):
    """One kind of proxy as the fleet drives it; `B` is what it compiles a group into."""

    kind: ProxyKind

    def groups(self, config: Config) -> list[str]:
        """The groups of `config` this plane has proxies for (to compile for each revision)."""
        ...

    def compile(self, config: Config, group: str, facts: GroupFacts = GroupFacts()) -> B:
        """The group's part of `config` for proxies `facts` describes, compiled: a pure
        function of its arguments; raises (ConfigError, or a compiler's own error) when it
        cannot be made."""
        ...

    def publish(self, revision: int, builds: Mapping[str, B], keep: frozenset[str]) -> None:
        """Make each group's build what its proxies fetch (returns at once). Groups in `keep`
        failed to compile and keep what they had; other groups without a build are gone."""
        ...

    async def deliver(self, revision: int, builds: Mapping[str, B]) -> None:
        """Take the builds to the proxies the control plane drives itself (e.g. local HAProxies);
        the others fetch what `publish` made available."""
        ...

    def explain(self, old: B | None, new: B | None) -> dict[str, Any]:
        """What going from `old` to `new` (None: the group is new, or gone) does to a proxy of
        the group, as JSON-able detail for a dry run."""
        ...


class PlaneExplainer:
    """A `DiffExplainer` (the API's dry runs): each plane's account of a change, per group."""

    def __init__(self, planes: Sequence[DataPlane[Any]]) -> None:
        self.planes = tuple(planes)

    def explain(self, old: Config | None, new: Config) -> dict[str, Any]:
        groups = sorted(set(new.group_names()) | set(old.group_names() if old else ()))
        detail: dict[str, Any] = {}
        for plane in self.planes:
            per_group = {
                group: plane.explain(_build(plane, old, group), _build(plane, new, group))
                for group in groups
            }
            detail[plane.kind] = {"groups": per_group}
        return detail


def _build(plane: DataPlane[B], config: Config | None, group: str) -> B | None:
    if config is None or group not in config.group_names():
        return None
    return plane.compile(config, group)
