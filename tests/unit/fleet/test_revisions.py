"""RevisionIndex: which content version each revision gave each (kind, group)."""

from __future__ import annotations

import pytest

from controlplane.fleet import RevisionIndex
from controlplane.fleet import revisions as revisions_module


def test_versions_read_back_per_revision_kind_and_group() -> None:
    index = RevisionIndex()
    index.record(1, "envoy", "edge", "e1", {"lds": "l1", "rds": "r1"})
    index.record(1, "haproxy", "edge", "h1")
    index.record(1, "haproxy", "edge", "h1-local")  # a relocated local HAProxy of the group

    assert index.groups(1) == {("envoy", "edge"), ("haproxy", "edge")}
    assert index.versions(1, "envoy", "edge") == {"e1"}
    assert index.versions(1, "haproxy", "edge") == {"h1", "h1-local"}
    assert index.versions(1, "envoy", "inner") == frozenset()
    assert index.versions(2, "envoy", "edge") == frozenset()
    [published] = index.revisions("envoy", "edge")
    assert published.parts == {"e1": {"lds": "l1", "rds": "r1"}}
    assert index.revisions("haproxy", "edge")[0].parts == {}


def test_a_revision_that_leaves_a_group_unchanged_gives_it_the_same_version() -> None:
    index = RevisionIndex()
    index.record(1, "envoy", "edge", "e1")
    index.record(1, "envoy", "inner", "i1")
    index.record(2, "envoy", "edge", "e1")  # revision 2 changed only the inner group
    index.record(2, "envoy", "inner", "i2")

    assert [p.revision for p in index.revisions("envoy", "edge")] == [2, 1]
    assert [p.versions for p in index.revisions("envoy", "edge")] == [{"e1"}, {"e1"}]
    assert [p.versions for p in index.revisions("envoy", "inner")] == [{"i2"}, {"i1"}]
    assert index.latest() == 2


def test_covering_counts_only_completely_recorded_revisions() -> None:
    index = RevisionIndex()
    assert index.covering(1) is None and index.latest() is None
    index.record(1, "envoy", "edge", "e1")
    assert index.covering(1) is None  # the HAProxies of revision 1 are not recorded yet
    index.complete(1)
    assert index.covering(1) == 1
    index.complete(7)  # never recorded: nothing to complete
    assert index.covering(2) is None
    # Revisions 2 to 4 were coalesced away: 5 was pushed in their place.
    index.record(5, "envoy", "edge", "e5")
    index.complete(5)
    assert [index.covering(n) for n in (1, 2, 4, 5, 6)] == [1, 5, 5, 5, None]


def test_only_the_recent_revisions_are_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(revisions_module, "KEPT", 3)
    index = RevisionIndex()
    for revision in range(1, 6):
        index.record(revision, "envoy", "edge", f"e{revision}")
        index.complete(revision)

    assert [p.revision for p in index.revisions("envoy", "edge")] == [5, 4, 3]
    assert index.groups(2) == set()
    assert index.covering(1) == 3
