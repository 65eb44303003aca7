"""Fleet: each committed revision compiled by every plane for every group and handed to the xDS
cache, the agents' feed and the local HAProxies; bursts coalesced into one push of the newest;
never backwards.

The local HAProxy here is a stand-in manager that records what it is given (the real one is
exercised in tests/integration/test_serve_e2e.py).
"""

from __future__ import annotations

import asyncio
import threading
from typing import cast

import pytest

from controlplane.envoy import translate
from controlplane.feed.bundles import GroupBundles
from controlplane.fleet import (
    EnvoyPlane,
    Fleet,
    HAProxyPlane,
    Ledger,
    LedgerStatus,
    LocalHAProxy,
    RevisionIndex,
    manager_reports,
    relocate,
)
from controlplane.fleet.envoy_plane import snapshot_of
from controlplane.haproxy.bundle import Bundle
from controlplane.haproxy.render import render
from controlplane.model import Config, GroupFacts, parse_config
from controlplane.proxies.haproxy.manager import HAProxyManager
from controlplane.proxies.haproxy.outcomes import ApplyResult
from controlplane.xds.cache import Snapshot, SnapshotCache

from .configs import config

WINDOW = 0.05


class RecordingCache(SnapshotCache):
    """A snapshot cache that remembers every snapshot it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.given: list[tuple[str, str]] = []

    def set_snapshot(self, group: str, snapshot: Snapshot) -> None:
        self.given.append((group, snapshot.version))
        super().set_snapshot(group, snapshot)


class RecordingManager:
    """Stands in for an HAProxyManager: records the bundles applied; `gate`, when set, holds
    each apply until the test opens it."""

    instance_id = "recording"

    def __init__(self, gate: threading.Event | None = None, ledger: Ledger | None = None) -> None:
        self.applied: list[Bundle] = []
        self.gate = gate
        self.on_apply = manager_reports(ledger, self.instance_id, "default")[0] if ledger else None

    def apply(self, bundle: Bundle) -> ApplyResult:
        if self.gate is not None:
            assert self.gate.wait(10)
        self.applied.append(bundle)
        result = ApplyResult(bundle.version, True, "runtime", "recorded", 0.0)
        if self.on_apply is not None:
            self.on_apply(result)
        return result


def envoy_version(revision_config: Config, group: str = "default") -> str:
    return snapshot_of(translate(revision_config, group)).version


def revisions() -> dict[int, Config]:
    """Six revisions that each move `/api` of the single listener to another cluster."""
    return {n: config(api=(("api", "v2", "web")[n % 3],)) for n in range(1, 7)}


def make_fleet(manager: RecordingManager) -> tuple[Fleet, RecordingCache, RevisionIndex]:
    cache, index = RecordingCache(), RevisionIndex()
    local = LocalHAProxy(cast(HAProxyManager, manager), "default", "127.0.0.2")
    planes = [EnvoyPlane(cache), HAProxyPlane(local=[local])]
    fleet = Fleet(asyncio.get_running_loop(), planes, index, coalesce=WINDOW)
    return fleet, cache, index


def test_a_burst_of_publishes_is_pushed_once_as_the_newest() -> None:
    async def scenario() -> None:
        manager = RecordingManager()
        fleet, cache, index = make_fleet(manager)
        configs = revisions()

        for n in range(1, 6):
            fleet.publish(n, configs[n])
        await fleet.settled()

        assert cache.given == [("default", envoy_version(configs[5]))]
        assert [b.version for b in manager.applied] == [
            render(relocate(configs[5], "127.0.0.2"), "default").version
        ]
        assert fleet.published == 5
        assert index.groups(5) == {("envoy", "default"), ("haproxy", "default")}
        assert all(index.groups(n) == set() for n in range(1, 5))
        assert index.covering(1) == 5

    asyncio.run(scenario())


def test_writes_arriving_during_a_push_are_pushed_next_as_the_newest() -> None:
    async def scenario() -> None:
        gate = threading.Event()
        manager = RecordingManager(gate)
        fleet, cache, index = make_fleet(manager)
        configs = revisions()

        fleet.publish(1, configs[1])
        while index.covering(1) is None:  # revision 1 is being applied, held by the gate
            await asyncio.sleep(0.005)
        for n in (2, 3, 4):
            await asyncio.to_thread(fleet.publish, n, configs[n])  # from the API's threads
        gate.set()
        await fleet.settled()

        assert cache.given == [
            ("default", envoy_version(configs[1])),
            ("default", envoy_version(configs[4])),
        ]
        assert len(manager.applied) == 2
        assert fleet.published == 4
        assert [index.covering(n) for n in (1, 2, 3, 4)] == [1, 4, 4, 4]

    asyncio.run(scenario())


def test_the_fleet_never_goes_backwards() -> None:
    async def scenario() -> None:
        manager = RecordingManager()
        fleet, cache, index = make_fleet(manager)
        configs = revisions()
        fleet.publish(5, configs[5])
        await fleet.settled()

        fleet.publish(3, configs[3])  # a late publish of an older revision
        await fleet.settled()
        fleet.publish(5, configs[5])  # the same revision again
        await fleet.settled()
        fleet.publish(6, configs[6])
        fleet.publish(4, configs[4])  # older than the one pending: ignored
        await fleet.settled()

        assert cache.given == [
            ("default", envoy_version(configs[5])),
            ("default", envoy_version(configs[6])),
        ]
        assert len(manager.applied) == 2
        assert fleet.published == 6
        assert index.groups(3) == index.groups(4) == set()

    asyncio.run(scenario())


def test_each_group_gets_its_own_configuration_and_local_haproxies_only_theirs() -> None:
    async def scenario() -> None:
        cache, index = RecordingCache(), RevisionIndex()
        edge, absent = RecordingManager(), RecordingManager()
        local = [
            LocalHAProxy(cast(HAProxyManager, edge), "edge"),
            LocalHAProxy(cast(HAProxyManager, absent), "nowhere"),
        ]
        planes = [EnvoyPlane(cache), HAProxyPlane(local=local)]
        fleet = Fleet(asyncio.get_running_loop(), planes, index, coalesce=0)
        two_groups = config(api=("api", "v2"), groups={"edge": [0], "inner": [1]})

        fleet.publish(1, two_groups)
        await fleet.settled()

        assert sorted(cache.given) == [
            ("edge", envoy_version(two_groups, "edge")),
            ("inner", envoy_version(two_groups, "inner")),
        ]
        assert [b.version for b in edge.applied] == [render(two_groups, "edge").version]
        assert absent.applied == []
        assert index.groups(1) == {("envoy", "edge"), ("envoy", "inner"), ("haproxy", "edge")}

    asyncio.run(scenario())


def test_a_failed_push_does_not_stop_the_next_ones() -> None:
    class Failing(RecordingManager):
        def apply(self, bundle: Bundle) -> ApplyResult:
            if not self.applied:
                self.applied.append(bundle)
                raise OSError("disk full")
            return super().apply(bundle)

    async def scenario() -> None:
        manager = Failing()
        fleet, cache, _ = make_fleet(manager)
        configs = revisions()
        fleet.publish(1, configs[1])
        await fleet.settled()
        assert fleet.published is None

        fleet.publish(2, configs[2])
        await fleet.settled()

        assert fleet.published == 2 and len(manager.applied) == 2 and len(cache.given) == 2

    asyncio.run(scenario())


def test_a_revision_that_cannot_be_compiled_is_refused_by_the_proxies_concerned(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A compiler that raises (fault injected: validated configs compile) is a refusal of that
    revision, with the error, by the group's Envoys, its agents' HAProxies and the local
    HAProxy; the revisions after it go out as usual."""

    def broken(*args: object) -> None:
        raise RuntimeError("compiler bug")

    async def scenario() -> None:
        cache, index, ledger = RecordingCache(), RevisionIndex(), Ledger()
        manager, agents = RecordingManager(ledger=ledger), GroupBundles()
        local = LocalHAProxy(cast(HAProxyManager, manager), "default")
        planes = [EnvoyPlane(cache), HAProxyPlane(agents, [local])]
        fleet = Fleet(asyncio.get_running_loop(), planes, index, ledger, coalesce=0)
        configs = revisions()
        fleet.publish(1, configs[1])
        await fleet.settled()
        ledger.connect("envoy-1", "default", "envoy")
        ledger.poll_started("agent-1", "default", agents.current("default").bundle.version)

        with monkeypatch.context() as patched:
            patched.setattr("controlplane.fleet.envoy_plane.translate", broken)
            patched.setattr("controlplane.fleet.haproxy_plane.render", broken)
            fleet.publish(2, configs[2])
            await fleet.settled()

        refusals = {
            p.id: (p.revision, p.last_nack and (p.last_nack.revision, p.last_nack.error))
            for p in LedgerStatus(ledger, index).proxies()
        }
        assert refusals == {
            "envoy-1": (None, (2, "RuntimeError: compiler bug")),
            "agent-1": (1, (2, "RuntimeError: compiler bug")),
            "recording": (1, (2, "RuntimeError: compiler bug")),
        }
        assert fleet.published == 2 and len(manager.applied) == 1

        fleet.publish(3, configs[3])
        await fleet.settled()
        assert len(manager.applied) == 2

    asyncio.run(scenario())


def test_relocate_moves_every_listener_to_the_host_and_keeps_ports() -> None:
    original = config(api=("api", "v2"))

    moved = relocate(original, "127.0.0.2")
    moved_v6 = relocate(original, "::1")

    assert [lst.address for lst in moved.listeners] == ["127.0.0.2:10000", "127.0.0.2:10001"]
    assert [lst.address for lst in moved_v6.listeners] == ["[::1]:10000", "[::1]:10001"]
    assert [lst.address for lst in original.listeners] == ["127.0.0.1:10000", "127.0.0.1:10001"]
    same = [lst.model_copy(update={"address": "x"}) for lst in moved.listeners]
    assert same == [lst.model_copy(update={"address": "x"}) for lst in original.listeners]
    assert moved.clusters == original.clusters
    assert "bind 127.0.0.2:10000" in render(moved, "default").cfg


def two_groups(shared: bool) -> Config:
    """Groups `a` and `b`, a listener each; `a`'s route has a limit its group shares."""
    limit = {"requests": 10, "per": "1s", "scope": "group" if shared else "proxy"}

    def listener(name: str, port: int, rate_limit: dict[str, object] | None) -> dict[str, object]:
        route: dict[str, object] = {"backends": [{"cluster": "api"}]}
        if rate_limit is not None:
            route["rate_limit"] = rate_limit
        return {
            "name": name,
            "address": f"127.0.0.1:{port}",
            "protocol": "http",
            "virtual_hosts": [{"name": "site", "domains": ["*"], "routes": [route]}],
        }

    return parse_config(
        {
            "listeners": [listener("a", 10001, limit), listener("b", 10002, limit)],
            "clusters": [{"name": "api", "endpoints": [{"address": "127.0.0.1:18081"}]}],
            "node_groups": [{"name": "a", "listeners": ["a"]}, {"name": "b", "listeners": ["b"]}],
        }
    )


def test_a_group_that_shares_a_limit_is_recompiled_alone_when_its_size_changes() -> None:
    async def scenario() -> None:
        ledger, cache, index = Ledger(), RecordingCache(), RevisionIndex()
        fleet = Fleet(asyncio.get_running_loop(), [EnvoyPlane(cache)], index, ledger, coalesce=0)
        head = two_groups(shared=True)
        fleet.publish(1, head)
        await fleet.settled()
        cache.given.clear()

        ledger.connect("a-1", "a")  # one proxy: the whole limit, as compiled already
        ledger.connect("b-1", "b")  # b reads no size
        await asyncio.sleep(0)  # the ledger's notice reaches the loop
        await fleet.settled()
        assert cache.given == []

        ledger.connect("a-2", "a")
        await asyncio.sleep(0)  # the ledger's notice reaches the loop
        await fleet.settled()
        halves = snapshot_of(translate(head, "a", GroupFacts(members=2))).version
        assert cache.given == [("a", halves)]
        assert index.versions(1, "envoy", "a") == {envoy_version(head, "a"), halves}

        ledger.disconnect("a-2")
        await asyncio.sleep(0)  # the ledger's notice reaches the loop
        await fleet.settled()
        assert cache.given == [("a", halves), ("a", envoy_version(head, "a"))]

    asyncio.run(scenario())


def test_limits_each_proxy_enforces_are_not_recompiled_on_membership() -> None:
    async def scenario() -> None:
        ledger, cache, index = Ledger(), RecordingCache(), RevisionIndex()
        fleet = Fleet(asyncio.get_running_loop(), [EnvoyPlane(cache)], index, ledger, coalesce=0)
        fleet.publish(1, two_groups(shared=False))
        await fleet.settled()
        for n in range(3):
            ledger.connect(f"a-{n}", "a")
        await asyncio.sleep(0)  # the ledger's notice reaches the loop
        await fleet.settled()
        assert len(cache.given) == 2  # the first push, one per group

    asyncio.run(scenario())
