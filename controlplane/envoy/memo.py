"""What the compiler made of a model part, kept while the part lives.

A model object is immutable, and a change keeps the parts it leaves as they were: the new
config holds the very objects of the one before it (`model.parts`). So what the compiler made
of a part, from the part and a key naming everything else it read, is what it would make
again; remembering it by the part's identity turns a compile after a small change into the
translation of what changed. The key is the caller's promise: it must name every input besides
the part itself.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

P = TypeVar("P")
T = TypeVar("T")

KEYS_PER_PART = 4
"""The results kept per part: one per key (a part compiled for several groups or with other
facts has several); the oldest goes first."""


class PartMemo(Generic[P, T]):
    """Results by part identity and key, each dropped with its part.

    Results are shared between the compiles that read them: treat them as read-only.
    """

    def __init__(self) -> None:
        self._entries: dict[int, tuple[weakref.ref[P], dict[Hashable, T]]] = {}
        # reentrant: a collection inside the lock may drop a part, whose callback takes it
        self._lock = threading.RLock()

    def get(self, part: P, key: Hashable, make: Callable[[P], T]) -> T:
        """The result for (`part`, `key`): remembered, or `make(part)` remembered (made
        outside the lock: two threads may make the same result once each)."""
        with self._lock:
            entry = self._entries.get(id(part))
            if entry is None or entry[0]() is not part:
                entry = (weakref.ref(part, self._forget(id(part))), {})
                self._entries[id(part)] = entry
            results = entry[1]
            if key in results:
                return results[key]
        result = make(part)
        with self._lock:
            if len(results) >= KEYS_PER_PART:
                results.pop(next(iter(results)), None)
            results[key] = result
        return result

    def __len__(self) -> int:
        return len(self._entries)

    def _forget(self, ident: int) -> Callable[[weakref.ref[P]], None]:
        entries, lock = self._entries, self._lock

        def forget(ref: weakref.ref[P]) -> None:
            with lock:
                entry = entries.get(ident)
                if entry is not None and entry[0] is ref:
                    del entries[ident]

        return forget
