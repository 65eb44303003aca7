"""Reports: what each replica says of the subjects it serves, under a lease, read the same by
every replica sharing the store (SQLite and PostgreSQL alike), and told to their listeners."""

from __future__ import annotations

import threading

from controlplane.store import Report, Store

from .conftest import WAIT, Backend


class Told:
    """Counts the calls of a reports listener, waited on without sleeping."""

    def __init__(self) -> None:
        self.calls = 0
        self._changed = threading.Condition()

    def __call__(self) -> None:
        with self._changed:
            self.calls += 1
            self._changed.notify_all()

    def wait_beyond(self, calls: int) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self.calls > calls, WAIT)


def by_subject(reports: list[Report]) -> dict[tuple[str, str], tuple[str, bool]]:
    return {(r.subject, r.replica): (r.body, r.live) for r in reports}


def test_a_store_starts_with_no_reports(store: Store) -> None:
    assert store.reports() == []


def test_reports_are_written_replaced_and_removed_per_replica(store: Store) -> None:
    store.report("a", 60, {"p1": "one", "p2": "two"})
    store.report("b", 60, {"p1": "b's one"})
    store.report("a", 60, {"p1": "one again", "p2": None})
    assert by_subject(store.reports()) == {
        ("p1", "a"): ("one again", True),
        ("p1", "b"): ("b's one", True),
    }


def test_every_replica_reads_the_same_reports(backend: Backend) -> None:
    first, second = backend.open(), backend.open()
    first.report("a", 60, {"p1": "x"})
    second.report("b", 60, {"p2": "y"})
    assert by_subject(first.reports()) == by_subject(second.reports())
    assert len(first.reports()) == 2


def test_reports_of_a_replica_whose_lease_ran_out_are_not_live(store: Store) -> None:
    store.report("gone", 0, {"p1": "x"})
    store.report("here", 60, {"p2": "y"})
    assert by_subject(store.reports()) == {
        ("p1", "gone"): ("x", False),
        ("p2", "here"): ("y", True),
    }
    store.report("gone", 60, {})  # a heartbeat renews the lease of what it reported
    assert by_subject(store.reports())[("p1", "gone")] == ("x", True)


def test_forgetting_replicas_long_gone_drops_their_reports(store: Store) -> None:
    store.report("gone", -100, {"p1": "x"})
    store.report("recent", -1, {"p2": "y"})
    assert store.forget_replicas(50) == ["gone"]
    assert by_subject(store.reports()) == {("p2", "recent"): ("y", False)}


def test_report_listeners_hear_writes_of_every_replica(backend: Backend) -> None:
    writer, reader = backend.open(), backend.open()
    told = Told()
    reader.subscribe_reports(told)
    heard_before = told.calls
    writer.report("a", 60, {"p1": "x"})
    if backend.name == "sqlite":  # one process: only writes through the same object are told
        reader.report("b", 60, {"p2": "y"})
    assert told.wait_beyond(heard_before)
    assert ("p1", "a") in by_subject(reader.reports())


def test_a_fresh_report_replaces_everything_the_replica_said_before(store: Store) -> None:
    store.report("a", 60, {"p1": "old", "p2": "old"})
    store.report("b", 60, {"p1": "b's"})
    store.report("a", 60, {"p3": "new"}, fresh=True)
    assert by_subject(store.reports()) == {
        ("p1", "b"): ("b's", True),
        ("p3", "a"): ("new", True),
    }
