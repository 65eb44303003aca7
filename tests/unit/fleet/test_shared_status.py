"""SharedStatus: the proxies of every replica sharing a store, answered alike by each.

Two replicas are two ledgers with their revision indexes, fed the way the xDS streams feed
them, sharing one store object (the PostgreSQL store, shared between processes, is tested
end to end in tests/integration/test_replicas.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from controlplane.fleet import LedgerStatus, RevisionIndex, SharedStatus
from controlplane.fleet.ledger import Ledger
from controlplane.fleet.records import ProxyRecord
from controlplane.store import SQLiteStore, Store

from .test_status import CDS, EDS, ENVOY, LDS, RDS, connect_envoy, envoy_takes, publish

WAIT = 10.0


@dataclass
class Replica:
    ledger: Ledger
    index: RevisionIndex
    local: LedgerStatus
    shared: SharedStatus

    def publish(self, revision: int, envoy: str) -> None:
        publish(self.index, revision, envoy)


Replicas = Callable[[str], Replica]
Run = Callable[[Callable[[Replicas], Awaitable[None]]], None]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    made = SQLiteStore(tmp_path / "store.db")
    yield made
    made.close()


@pytest.fixture
def run(store: Store) -> Run:
    """Run a scenario given a maker of replicas on `store`; they are stopped after it."""

    def running(scenario: Callable[[Replicas], Awaitable[None]]) -> None:
        async def main() -> None:
            started: list[Replica] = []

            def make(name: str) -> Replica:
                ledger, index = Ledger(), RevisionIndex()
                local = LedgerStatus(ledger, index, keep_changed=True)
                shared = SharedStatus(local, store, name, lease=3.0)
                started.append(Replica(ledger, index, local, shared))
                return started[-1]

            try:
                await scenario(make)
            finally:
                for replica in started:
                    await replica.shared.stop()
                    replica.local.close()

        asyncio.run(main())

    return running


async def until(what: str, check: Callable[[], bool]) -> None:
    """Until `check()` holds: the reports travel through the store on their own tasks."""
    deadline = asyncio.get_running_loop().time() + WAIT
    while not check():
        assert asyncio.get_running_loop().time() < deadline, f"never: {what}"
        await asyncio.sleep(0.01)


def only(status: SharedStatus) -> ProxyRecord:
    [record] = status.proxies()
    return record


def test_a_proxy_held_by_one_replica_is_seen_alike_by_every_replica(run: Run) -> None:
    async def scenario(replicas: Replicas) -> None:
        a, b = replicas("a"), replicas("b")
        for replica in (a, b):
            replica.publish(1, "v1")
            await replica.shared.start()
        connect_envoy(b.ledger)
        envoy_takes(b.ledger, "v1")
        await until("both replicas see the Envoy run 1", lambda: len(a.shared.proxies()) == 1)
        await until("b reads it too", lambda: b.shared.proxies() == a.shared.proxies())
        assert only(a.shared).id == ENVOY and only(a.shared).revision == 1
        assert only(a.shared).connected

    run(scenario)


def test_a_wait_on_one_replica_ends_when_the_other_replicas_proxy_runs_the_revision(
    run: Run,
) -> None:
    async def scenario(replicas: Replicas) -> None:
        a, b = replicas("a"), replicas("b")
        for replica in (a, b):
            replica.publish(1, "v1")
            await replica.shared.start()
        connect_envoy(b.ledger)
        envoy_takes(b.ledger, "v1")
        await until("a sees the Envoy", lambda: len(a.shared.proxies()) == 1)
        a.publish(2, "v2")
        waiting = asyncio.create_task(a.shared.wait(2, WAIT))
        await asyncio.sleep(0.05)
        assert not waiting.done()  # the Envoy on b still runs 1
        b.publish(2, "v2")
        envoy_takes(b.ledger, "v2")
        async with asyncio.timeout(WAIT):
            result = await waiting
        assert result.converged and [p.id for p in result.acked] == [ENVOY]

    run(scenario)


def test_a_wait_for_a_revision_not_published_here_yet_is_not_converged(run: Run) -> None:
    async def scenario(replicas: Replicas) -> None:
        a = replicas("a")
        await a.shared.start()
        result = await a.shared.wait(1, 0.05)
        assert not result.converged and result.proxies == []

    run(scenario)


def test_a_proxy_that_moved_reads_as_the_replica_holding_it_connected_says(run: Run) -> None:
    async def scenario(replicas: Replicas) -> None:
        a, b = replicas("a"), replicas("b")
        for replica in (a, b):
            replica.publish(1, "v1")
            replica.publish(2, "v2")
            await replica.shared.start()
        connect_envoy(a.ledger)
        envoy_takes(a.ledger, "v1")
        await until("b sees it on a", lambda: len(b.shared.proxies()) == 1)
        connect_envoy(b.ledger)  # it reconnected to b, and a has not seen its stream end yet
        envoy_takes(b.ledger, "v2")
        await until("b's report wins", lambda: only(a.shared).revision == 2)
        a.ledger.disconnect(ENVOY)  # a learns late that the stream it held ended
        await asyncio.sleep(0.1)
        for replica in (a, b):
            assert only(replica.shared).connected and only(replica.shared).revision == 2

    run(scenario)


def test_the_proxies_of_a_replica_whose_lease_ran_out_read_as_disconnected(
    run: Run, store: Store
) -> None:
    async def scenario(replicas: Replicas) -> None:
        a, b = replicas("a"), replicas("b")
        for replica in (a, b):
            replica.publish(1, "v1")
            await replica.shared.start()
        connect_envoy(b.ledger)
        envoy_takes(b.ledger, "v1")
        await until("a sees the Envoy connected", lambda: len(a.shared.proxies()) == 1)
        for task in b.shared._tasks:  # b dies: no heartbeat, nothing more reported
            task.cancel()
        await until("b's lease runs out", lambda: not only(a.shared).connected)
        assert only(a.shared).revision == 1
        assert (await a.shared.wait(1, 0.05)).proxies == []

    run(scenario)


def test_a_replica_that_stops_ends_its_lease_at_once(run: Run) -> None:
    async def scenario(replicas: Replicas) -> None:
        a, b = replicas("a"), replicas("b")
        for replica in (a, b):
            replica.publish(1, "v1")
            await replica.shared.start()
        connect_envoy(b.ledger)
        envoy_takes(b.ledger, "v1")
        await until("a sees the Envoy connected", lambda: len(a.shared.proxies()) == 1)
        await b.shared.stop()
        await until("the Envoy reads as disconnected", lambda: not only(a.shared).connected)

    run(scenario)


def test_a_proxy_the_ledger_forgot_is_no_longer_reported(run: Run) -> None:
    async def scenario(replicas: Replicas) -> None:
        a = replicas("a")
        a.publish(1, "v1")
        await a.shared.start()
        connect_envoy(a.ledger)
        envoy_takes(a.ledger, "v1")
        await until("it is reported", lambda: len(a.shared.proxies()) == 1)
        a.ledger.disconnect(ENVOY)
        assert a.ledger.forget(-1) == [ENVOY]
        await until("it is gone", lambda: a.shared.proxies() == [])

    run(scenario)


def test_a_refusal_on_one_replica_names_its_group_as_refusing_on_every_replica(
    run: Run,
) -> None:
    async def scenario(replicas: Replicas) -> None:
        a, b = replicas("a"), replicas("b")
        for replica in (a, b):
            replica.publish(1, "v1")
            publish(replica.index, 2, "v2", rds="rds-2")
            await replica.shared.start()
        connect_envoy(b.ledger)
        envoy_takes(b.ledger, "v1")
        assert a.shared.refusing("envoy") == {}
        envoy_takes(b.ledger, "v2", (CDS, EDS, LDS))
        b.ledger.sent(ENVOY, RDS, "v2/rds")
        b.ledger.nacked(ENVOY, RDS, "v2/rds", "regex too big")
        await until("a sees the refusal", lambda: bool(a.shared.refusing("envoy")))
        [(group, [record])] = a.shared.refusing("envoy").items()
        assert (group, record.id, record.revision) == ("edge", ENVOY, 1)
        assert record.refused(2)
        [(_, [local])] = b.local.refusing("envoy").items()
        assert (local.id, local.revision, local.last_nack) == (
            record.id,
            record.revision,
            record.last_nack,
        )
        assert a.shared.refusing("haproxy") == {}

    run(scenario)
