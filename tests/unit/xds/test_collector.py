"""Garbage collection out of the push path: once a snapshot is in place, what exists is
frozen out of the collector's sight, and cycles frozen with it are still collected in time."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from controlplane.xds import collector
from controlplane.xds.cache import SnapshotCache
from tests.harness.xds_resources import http_snapshot

BACKENDS = {"a": 8001}


@pytest.fixture(autouse=True)
def collector_restored() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)
    collector._after_full = 0


class Cycle:
    def __init__(self) -> None:
        self.me = self


def test_a_new_snapshot_freezes_what_exists_and_collects_the_young_less_often() -> None:
    gc.unfreeze()
    cache = SnapshotCache()
    kept = [Cycle() for _ in range(100)]
    cache.set_snapshot("default", http_snapshot(9000, BACKENDS, [("/", "a")]))
    assert gc.get_freeze_count() >= len(kept)
    assert gc.get_threshold()[0] == collector.YOUNG
    frozen = gc.get_freeze_count()
    cache.set_snapshot("default", http_snapshot(9000, BACKENDS, [("/", "a")]))  # the same version
    assert gc.get_freeze_count() <= frozen


def test_cycles_frozen_as_garbage_are_collected_once_the_frozen_objects_doubled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(collector, "CHECK_EVERY", 1)
    collector.freeze_long_lived()
    garbage = Cycle()
    gone = weakref.ref(garbage)
    collector.freeze_long_lived()
    del garbage
    gc.collect()
    assert gone() is not None  # frozen: out of the collector's sight
    grown = [[] for _ in range(2 * gc.get_freeze_count())]
    collector.freeze_long_lived()
    assert gone() is None
    assert gc.get_freeze_count() >= len(grown)
