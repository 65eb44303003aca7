"""What a change means for each proxy kind: the xDS resources it changes per group, and
whether each group's HAProxies take it at runtime or need a reload."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..envoy import translate
from ..haproxy.render import render
from ..model import Config, Target
from ..proxies.haproxy.reload_plan import plan_change


class ProxyDiffExplainer:
    """A `DiffExplainer` that compiles both configs for every group and compares."""

    def __init__(self, targets: Sequence[Target] = ("envoy", "haproxy")) -> None:
        self.targets = tuple(targets)

    def explain(self, old: Config | None, new: Config) -> dict[str, Any]:
        groups = sorted(set(new.group_names()) | set(old.group_names() if old else ()))
        detail: dict[str, Any] = {}
        if "envoy" in self.targets:
            detail["envoy"] = {"groups": {g: _envoy_changes(old, new, g) for g in groups}}
        if "haproxy" in self.targets:
            detail["haproxy"] = {"groups": {g: _haproxy_change(old, new, g) for g in groups}}
        return detail


def _resources(config: Config | None, group: str) -> dict[str, dict[str, bytes]]:
    if config is None or group not in config.group_names():
        return {}
    return translate(config, group).serialized()


def _envoy_changes(old: Config | None, new: Config, group: str) -> dict[str, dict[str, list[str]]]:
    before, after = _resources(old, group), _resources(new, group)
    changes: dict[str, dict[str, list[str]]] = {}
    for type_url in sorted(set(before) | set(after)):
        was, now = before.get(type_url, {}), after.get(type_url, {})
        kinds = {
            "added": sorted(set(now) - set(was)),
            "changed": sorted(n for n in set(now) & set(was) if now[n] != was[n]),
            "removed": sorted(set(was) - set(now)),
        }
        kinds = {kind: names for kind, names in kinds.items() if names}
        if kinds:
            changes[type_url.rsplit(".", 1)[-1]] = kinds
    return changes


def _haproxy_change(old: Config | None, new: Config, group: str) -> dict[str, str]:
    if group not in new.group_names():
        return {"action": "removed", "reason": "the group is no longer in the config"}
    bundle = render(new, group)
    if old is None or group not in old.group_names():
        return {"action": "start", "reason": "new group"}
    previous = render(old, group)
    if previous.version == bundle.version:
        return {"action": "unchanged", "reason": "same configuration"}
    plan = plan_change(previous, bundle)
    return {"action": "reload" if plan.reload else "runtime", "reason": plan.reason}
