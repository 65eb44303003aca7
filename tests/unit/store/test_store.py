"""What every store promises (SQLite and PostgreSQL alike): revisions, conflicts,
durability, atomicity, notifications."""

from __future__ import annotations

import threading

import pytest

from controlplane.store import Conflict, RevisionNotFound, Store, content_hash

from .conftest import Backend, config_with


def test_an_empty_store_has_no_head(store: Store) -> None:
    assert store.head() is None
    assert store.list() == []
    with pytest.raises(RevisionNotFound):
        store.get(1)


def test_commits_number_revisions_from_one_and_keep_history(store: Store) -> None:
    first = store.commit(config_with("a"), None, "alice", "first")
    second = store.commit(config_with("a", "b"), 1, "bob", "second")
    assert (first.number, second.number) == (1, 2)
    assert store.head() == second
    assert store.get(1).config == config_with("a")
    assert store.get(1).author == "alice" and store.get(1).message == "first"
    assert [m.number for m in store.list()] == [2, 1]
    assert [m.number for m in store.list(limit=1)] == [2]
    assert [m.number for m in store.list(before=2)] == [1]
    assert second.content_hash == content_hash(config_with("a", "b"))
    assert store.list()[0] == second.meta


def test_out_of_range_numbers_are_not_found(store: Store) -> None:
    store.commit(config_with("a"), None, "alice")
    for number in (0, -1, 2, 2**63, 2**80):
        with pytest.raises(RevisionNotFound):
            store.get(number)
    assert [m.number for m in store.list(before=2**80, limit=2**80)] == [1]


def test_a_commit_against_a_stale_head_conflicts_and_writes_nothing(store: Store) -> None:
    store.commit(config_with("a"), None, "alice")
    with pytest.raises(Conflict) as caught:
        store.commit(config_with("b"), None, "bob")
    assert (caught.value.expected, caught.value.head) == (None, 1)
    with pytest.raises(Conflict):
        store.commit(config_with("b"), 5, "bob")
    assert store.head().number == 1  # type: ignore[union-attr]
    assert store.head().config == config_with("a")  # type: ignore[union-attr]


def test_revisions_survive_reopening(backend: Backend) -> None:
    first = backend.open()
    first.commit(config_with("a"), None, "alice", "one")
    made = first.commit(config_with("a", "b"), 1, "alice", "two")
    first.close()
    again = backend.open()
    head = again.head()
    assert head is not None and head.number == 2
    assert head.config == config_with("a", "b")
    assert head.created_at == made.created_at and head.created_at.utcoffset() is not None
    assert again.get(1).message == "one"
    assert again.commit(config_with("c"), 2, "bob").number == 3


def test_a_commit_failing_inside_the_transaction_leaves_the_head_unchanged(
    backend: Backend, store: Store
) -> None:
    store.commit(config_with("a"), None, "alice")
    backend.refuse_commits_by("mallory")  # a real failure after the row is inserted
    with pytest.raises(backend.failure):
        store.commit(config_with("b"), 1, "mallory")
    head = store.head()
    assert head is not None and head.number == 1 and head.config == config_with("a")
    assert [m.number for m in store.list()] == [1]
    assert store.commit(config_with("c"), 1, "bob").number == 2


def test_listeners_hear_each_new_head_after_it_is_readable(store: Store) -> None:
    heard: list[tuple[int, str]] = []
    unsubscribe = store.subscribe(lambda n: heard.append((n, store.get(n).author)))
    store.commit(config_with("a"), None, "alice")
    store.commit(config_with("b"), 1, "bob")
    unsubscribe()
    store.commit(config_with("c"), 2, "carol")
    assert heard == [(1, "alice"), (2, "bob")]


def test_a_failing_listener_does_not_fail_the_commit(store: Store) -> None:
    def broken(number: int) -> None:
        raise RuntimeError("listener bug")

    heard: list[int] = []
    store.subscribe(broken)
    store.subscribe(heard.append)
    assert store.commit(config_with("a"), None, "alice").number == 1
    assert heard == [1]


def test_concurrent_commits_against_one_head_let_exactly_one_win(store: Store) -> None:
    store.commit(config_with("a"), None, "alice")
    results: list[str] = []
    barrier = threading.Barrier(8)

    def attempt(i: int) -> None:
        barrier.wait()
        try:
            store.commit(config_with(f"c{i}"), 1, f"writer{i}")
            results.append("won")
        except Conflict:
            results.append("conflict")

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["conflict"] * 7 + ["won"]
    assert store.head().number == 2  # type: ignore[union-attr]


def test_a_second_store_on_the_same_database_sees_new_revisions(
    backend: Backend, store: Store
) -> None:
    other = backend.open()
    store.commit(config_with("a"), None, "alice")
    assert other.head() is not None and other.head().number == 1  # type: ignore[union-attr]
    other.commit(config_with("b"), 1, "bob")
    assert store.head().config == config_with("b")  # type: ignore[union-attr]
    with pytest.raises(Conflict) as caught:
        store.commit(config_with("c"), 1, "carol")
    assert caught.value.head == 2
