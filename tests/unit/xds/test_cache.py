"""Snapshots, content-hash versions, selections and their shared encodings."""

from __future__ import annotations

import asyncio
import threading

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.service.discovery.v3 import discovery_pb2

from controlplane.xds import types
from controlplane.xds.cache import DeltaBody, Snapshot, SnapshotCache
from tests.harness.xds_resources import eds_cluster, http_snapshot, load_assignment

BACKENDS = {"a": 8001, "b": 8002, "c": 8003}


def snap(routes: list[tuple[str, str]] | None = None, **kw: object) -> Snapshot:
    return http_snapshot(9000, BACKENDS, routes or [("/", "a")], **kw)  # type: ignore[arg-type]


def test_same_content_gives_same_versions() -> None:
    one, two = snap(), snap()
    assert one.version == two.version
    for t in types.PUSH_ORDER:
        assert one.type_version(t) == two.type_version(t)
        assert one.entries(t).keys() == two.entries(t).keys()
        for name in one.entries(t):
            assert one.resource_version(t, name) == two.resource_version(t, name)


def test_a_snapshot_rebuilt_from_its_payloads_has_its_versions_and_messages() -> None:
    one = snap(version="v1")
    two = Snapshot.from_payloads(one.payloads(), one.version)
    assert two.version == "v1"
    for t in types.PUSH_ORDER:
        assert two.type_version(t) == one.type_version(t)
        assert dict(two[t]) == dict(one[t])
        assert two.select(t, None).sotw_body() == one.select(t, None).sotw_body()
    assert Snapshot.from_payloads(one.payloads()).version == snap().version


def test_a_change_moves_only_what_changed() -> None:
    one = snap([("/", "a")])
    two = snap([("/", "b")])
    assert one.type_version(types.ROUTE) != two.type_version(types.ROUTE)
    for t in (types.CLUSTER, types.ENDPOINT, types.LISTENER):
        assert one.type_version(t) == two.type_version(t)
    assert one.version != two.version


def test_type_version_ignores_insertion_order() -> None:
    clusters = [eds_cluster(n) for n in "abc"]
    forward = Snapshot({types.CLUSTER: clusters})
    backward = Snapshot({types.CLUSTER: list(reversed(clusters))})
    assert forward.type_version(types.CLUSTER) == backward.type_version(types.CLUSTER)


def test_explicit_label_and_mapping_view() -> None:
    s = Snapshot({types.CLUSTER: {"a": eds_cluster("a")}}, version="rev-7")
    assert s.version == "rev-7"
    assert list(s) == [types.CLUSTER]
    assert s[types.CLUSTER]["a"].name == "a"
    with pytest.raises(TypeError):
        s[types.CLUSTER]["b"] = eds_cluster("b")  # type: ignore[index]


def test_resources_filed_under_the_wrong_type_are_refused() -> None:
    with pytest.raises(ValueError, match="filed under"):
        Snapshot({types.ROUTE: [eds_cluster("a")]})


def test_sotw_response_is_a_valid_discovery_response() -> None:
    s = snap()
    selection = s.select(types.CLUSTER, None)
    resp = discovery_pb2.DiscoveryResponse.FromString(selection.sotw_response("n-1"))
    assert resp.version_info == s.type_version(types.CLUSTER)
    assert resp.type_url == types.CLUSTER and resp.nonce == "n-1"
    names = []
    for packed in resp.resources:
        c = cluster_pb2.Cluster()
        assert packed.Unpack(c)
        names.append(c.name)
        assert c == s[types.CLUSTER][c.name]
    assert names == ["a", "b", "c"]


def test_named_selection_and_memo_shared_through_interning() -> None:
    cache = SnapshotCache()
    s = snap()
    first = s.select(types.ENDPOINT, cache.intern(frozenset({"a", "zzz"})))
    again = s.select(types.ENDPOINT, cache.intern(frozenset({"zzz", "a"})))
    assert first is again
    assert list(first.entries) == ["a"]
    assert first.sotw_body() is again.sotw_body()


def test_keeping_holds_back_what_disappeared() -> None:
    old = snap().select(types.CLUSTER, None)
    new = snap(clusters=["b", "c"]).select(types.CLUSTER, None)
    kept = new.keeping(old, None)
    assert list(kept.entries) == ["a", "b", "c"]
    assert kept.version == old.version
    assert new.keeping(old, None) is kept
    assert new.keeping(new, None) is new
    assert list(new.keeping(old, frozenset({"b"})).entries) == ["b", "c"]


def test_delta_body_carries_only_changes_and_removals() -> None:
    old = snap().select(types.ENDPOINT, None)
    changed = Snapshot.from_messages(
        [
            load_assignment("b", [("127.0.0.1", 9999)]),
            load_assignment("c", [("127.0.0.1", BACKENDS["c"])]),
        ]
    ).select(types.ENDPOINT, None)
    body = changed.delta_from(old)
    assert body.changed == ["b"] and body.removed == ["a"]
    assert changed.delta_from(old) is body
    resp = discovery_pb2.DeltaDiscoveryResponse.FromString(
        body.response(types.ENDPOINT, changed.version, "n-2")
    )
    assert [r.name for r in resp.resources] == ["b"]
    assert resp.resources[0].version == changed.entries["b"].version
    assert list(resp.removed_resources) == ["a"]
    assert resp.system_version_info == changed.version and resp.nonce == "n-2"
    assert DeltaBody.between(changed.versions(), changed, None).empty


def test_watchers_hear_changes_but_not_repeats() -> None:
    cache = SnapshotCache()
    heard: list[str] = []
    cancel = cache.watch("g", lambda: heard.append("x"))
    cache.set_snapshot("g", snap())
    cache.set_snapshot("g", snap())  # same content, same version: nobody is woken
    cache.set_snapshot("g", snap([("/", "b")]))
    cancel()
    cache.set_snapshot("g", snap([("/", "c")]))
    assert heard == ["x", "x"]
    assert cache.groups() == ["g"]


def test_followers_hear_every_change_of_what_a_group_serves() -> None:
    cache = SnapshotCache()
    heard: list[str] = []
    cache.follow(heard.append)
    cache.set_snapshot("g", snap())
    cache.set_snapshot("g", snap())  # the same version: nothing to follow
    cache.hold_back("g", snap([("/", "b")]))
    cache.hold_back("g", None)
    cache.hold_back("g", None)  # nothing was held
    cache.set_snapshot("h", snap())
    cache.clear("g")
    assert heard == ["g", "g", "g", "h", "g"]


def test_wait_for_change_wakes_on_a_set_from_another_thread() -> None:
    cache = SnapshotCache()
    first = snap()
    cache.set_snapshot("g", first)

    async def scenario() -> str:
        waiting = asyncio.create_task(cache.wait_for_change("g", first.version))
        await asyncio.sleep(0)
        setter = threading.Thread(target=cache.set_snapshot, args=("g", snap([("/", "b")])))
        setter.start()
        async with asyncio.timeout(5):
            got = await waiting
        setter.join()
        return got.version

    assert asyncio.run(scenario()) == snap([("/", "b")]).version
