"""HAProxy as a data plane: each group rendered into a bundle once per revision, served to the
group's agents through the feed, applied to the HAProxies this server manages itself; what
agents and managers report recorded in the ledger."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..feed.bundles import GroupBundles
from ..feed.wire import StatusReport
from ..haproxy.bundle import Bundle
from ..haproxy.render import THREADS, render
from ..model import Config, GroupFacts, ProxyKind, split_address
from ..proxies.haproxy.manager import HAProxyManager
from ..proxies.haproxy.outcomes import ApplyResult, HealthEvent
from ..proxies.haproxy.reload_plan import plan_change
from .ledger import Health, Ledger

log = logging.getLogger(__name__)


def relocate(config: Config, host: str) -> Config:
    """The config with every listener bound on `host` instead, ports unchanged: a second
    proxy of the same group on the same machine (the demo's HAProxy beside its Envoy)."""
    listeners = []
    for listener in config.listeners:
        _, port = split_address(listener.address)
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        listeners.append(listener.model_copy(update={"address": address}))
    return config.model_copy(update={"listeners": listeners})


@dataclass
class LocalHAProxy:
    """An HAProxy this server manages itself, running one group's configuration.

    `bind_host` relocates its listeners (see `relocate`); None keeps the config's addresses.
    """

    manager: HAProxyManager
    group: str
    bind_host: str | None = None

    @property
    def instance_id(self) -> str:
        return self.manager.instance_id


@dataclass(frozen=True)
class HAProxyBuild:
    """A group's bundle, and the bundles of its relocated local HAProxies (by instance id)."""

    bundle: Bundle
    placed: Mapping[str, Bundle] = field(default_factory=dict)

    @property
    def versions(self) -> Mapping[str, Mapping[str, str]]:
        bundles = [self.bundle, *self.placed.values()]
        return {bundle.version: {} for bundle in bundles}

    def for_instance(self, instance_id: str) -> Bundle:
        """What the HAProxy `instance_id` of the group runs."""
        return self.placed.get(instance_id, self.bundle)


class HAProxyPlane:
    """The HAProxies of every group: agents follow `feed`; `local` ones are applied here.

    Local applies run one at a time, each in a worker thread (a reload takes a while)."""

    kind: ProxyKind = "haproxy"

    def __init__(
        self,
        feed: GroupBundles | None = None,
        local: Sequence[LocalHAProxy] = (),
        threads: int = THREADS,
    ):
        self.feed = feed
        self.local = list(local)
        self.threads = threads
        self._applying = asyncio.Lock()

    def groups(self, config: Config) -> list[str]:
        """Every group when agents may follow any; else the groups of the local HAProxies."""
        if self.feed is not None:
            return config.group_names()
        local = {haproxy.group for haproxy in self.local}
        return [group for group in config.group_names() if group in local]

    def compile(self, config: Config, group: str, facts: GroupFacts = GroupFacts()) -> HAProxyBuild:
        placed = {
            local.instance_id: render(relocate(config, local.bind_host), group, facts, self.threads)
            for local in self.local
            if local.group == group and local.bind_host is not None
        }
        return HAProxyBuild(render(config, group, facts, self.threads), placed)

    def publish(
        self, revision: int, builds: Mapping[str, HAProxyBuild], keep: frozenset[str]
    ) -> None:
        if self.feed is not None:
            bundles = {group: build.bundle for group, build in builds.items()}
            self.feed.update(revision, bundles, keep)

    async def deliver(self, revision: int, builds: Mapping[str, HAProxyBuild]) -> None:
        for local in self.local:
            build = builds.get(local.group)
            if build is None:
                continue
            async with self._applying:
                result = await asyncio.to_thread(
                    local.manager.apply, build.for_instance(local.instance_id)
                )
            if not result.ok:
                log.warning(
                    "haproxy %s refused revision %d: %s", local.instance_id, revision, result.error
                )

    def explain(self, old: HAProxyBuild | None, new: HAProxyBuild | None) -> dict[str, Any]:
        """Whether the group's HAProxies start, reload, take it at runtime, or see no change."""
        if new is None:
            return {"action": "removed", "reason": "the group is no longer in the config"}
        if old is None:
            return {"action": "start", "reason": "new group"}
        if old.bundle.version == new.bundle.version:
            return {"action": "unchanged", "reason": "same configuration"}
        plan = plan_change(old.bundle, new.bundle)
        return {"action": "reload" if plan.reload else "runtime", "reason": plan.reason}


def manager_reports(
    ledger: Ledger, instance: str, group: str
) -> tuple[Callable[[ApplyResult], None], Callable[[HealthEvent], None]]:
    """The `on_apply` and `on_health` callbacks of a local HAProxy's manager, recording what it
    applied and what its supervisor saw in the ledger."""

    def applied(result: ApplyResult) -> None:
        detail = {"mode": result.mode, "reason": result.reason, "duration": result.duration}
        ledger.record_apply(
            instance, group, "haproxy", result.version, result.ok, result.error, detail
        )

    def observed(event: HealthEvent) -> None:
        health = Health(event.state, event.at, event.reason, event.error)
        ledger.record_health(instance, group, "haproxy", health, event.version)

    return applied, observed


class AgentLedger:
    """The feed's `AgentReports`, recorded in the ledger as agent-fed HAProxies."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def refusal(self, instance: str, group: str) -> str | None:
        known = self.ledger.get(instance)
        if known is None or (known.kind == "haproxy" and known.group == group and known.via_agent):
            return None
        return (
            f"instance id {instance!r} is another proxy's ({known.kind} of node group "
            f"{known.group!r})"
        )

    def polling(self, instance: str, group: str, running: str | None) -> None:
        self.ledger.poll_started(instance, group, running)

    def polled(self, instance: str) -> None:
        self.ledger.poll_ended(instance)

    def reported(self, group: str, report: StatusReport) -> None:
        if report.event != "apply":
            health = Health(report.event, report.at or time.time(), report.reason, report.error)
            self.ledger.record_health(
                report.instance_id, group, "haproxy", health, report.version, {"via": "agent"}
            )
            return
        self.ledger.record_apply(
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
