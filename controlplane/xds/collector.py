"""Python's cyclic garbage collector kept out of the push path.

A server holding a large config and many streams holds millions of objects that live as
long as the config does (the model, its compiled snapshot, each stream's state). The
collector, set off by the allocations a push makes, walked all of them again in a full
collection every other change (150-190 ms of CPU at 1,000 streams, `bench/xds_fanout.py`),
and looked at the young objects every 700 allocations (30-40 ms a change). So once a
snapshot is in place what exists is frozen (`gc.freeze`): moved where collections no longer
look, until reference counting frees it as usual; and the young generation is collected
every `YOUNG` allocations, by when most of a push's objects are gone already. A change then
costs 3-6 ms of collection.

What freezing costs: garbage in reference cycles frozen with the rest is not collected while
frozen. So when the frozen objects have grown to twice as many as after the last full
collection, they are unfrozen and collected once, then frozen again; leaked cycles are thus
bounded by the live objects. Counting the frozen objects walks them all (30 ms at 600,000 on
a loaded machine), so it is done on the first freeze and every `CHECK_EVERY`th: a revision
sets a snapshot per node group, and a config of 50 groups spent 1.4 s counting.
"""

from __future__ import annotations

import gc
import threading

YOUNG = 20_000
"""Allocations between two collections of the youngest generation (Python's default: 700)."""

CHECK_EVERY = 64
"""Freezes between two counts of the frozen objects."""

_lock = threading.Lock()
_after_full = 0
"""How many objects were frozen after the last full collection."""
_freezes = 0


def freeze_long_lived() -> None:
    """Call once a snapshot is in place: what exists now is taken as long-lived."""
    global _after_full, _freezes
    with _lock:
        young, *older = gc.get_threshold()
        if 0 < young < YOUNG:
            gc.set_threshold(YOUNG, *older)
        gc.freeze()
        _freezes += 1
        if (_freezes - 1) % CHECK_EVERY:
            return
        if gc.get_freeze_count() > 2 * max(_after_full, 100_000):
            gc.unfreeze()
            gc.collect()
            gc.freeze()
            _after_full = gc.get_freeze_count()
