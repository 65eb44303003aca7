"""The HAProxy manager against a real HAProxy 2.6: reloads, runtime updates, rejected configs."""

import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from controlplane.haproxy.bundle import Bundle, Server
from controlplane.haproxy.render import render
from controlplane.haproxy.templating import MASK
from controlplane.model import parse_config, split_address
from controlplane.proxies.haproxy.manager import HAProxyManager
from controlplane.proxies.haproxy.outcomes import ApplyResult, HealthEvent
from tests.harness.backends import BackendFleet, BackendSpec
from tests.harness.clients import HttpSession, http
from tests.harness.ports import SharedPortListener, connect_times, free_port
from tests.harness.processes import wait_gone

pytestmark = pytest.mark.haproxy

LOOPBACK = "127.0.0.1"


def config(
    port: int,
    servers: Sequence[Server] = (),
    *,
    frontend_extra: str = "",
    backends_extra: str = "",
    balance: str = "roundrobin",
    masked: bool = False,
) -> str:
    """A hand-written HAProxy configuration that honours the manager's contract, with
    `servers` in backend `be` (`masked`: their addresses and weights masked)."""
    lines = "\n".join(
        f"    server {s.name} {MASK if masked else s.address} weight {MASK if masked else s.weight}"
        for s in servers
    )
    return f"""\
global
    default-path config

defaults
    mode http
    option idle-close-on-response
    timeout connect 2s
    timeout client 10s
    timeout server 10s

frontend fe
    bind {LOOPBACK}:{port}
{frontend_extra}    default_backend be

backend be
    balance {balance}
{lines}
{backends_extra}"""


def handmade(
    port: int,
    servers: Sequence[Server] = (),
    maps: Mapping[str, Sequence[tuple[str, str]]] | None = None,
    **options: Any,
) -> Bundle:
    """`config(...)` as a bundle with its runtime table and skeleton, as the renderer makes
    them: backend `be`'s servers may change at runtime."""
    return Bundle.of(
        config(port, servers, **options),
        maps,
        servers={"be": tuple(servers)},
        masked_cfg=config(port, servers, masked=True, **options),
    )


@dataclass
class Instance:
    """A running manager, the port its frontend listens on, and every result it reported."""

    manager: HAProxyManager
    port: int
    results: list[ApplyResult] = field(default_factory=list)

    def backends_seen(self, count: int, path: str = "/") -> Counter[str | None]:
        """Which backends answer `count` requests, each on a fresh connection."""
        return Counter(http(LOOPBACK, self.port, path).backend for _ in range(count))


@pytest.fixture
def fleet() -> Iterator[BackendFleet]:
    with BackendFleet() as backends:
        for name in ("a", "b", "c"):
            backends.start(BackendSpec(name))
        yield backends


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[Instance]:
    results: list[ApplyResult] = []
    manager = HAProxyManager(tmp_path / "hx", instance_id="test", on_apply=results.append)
    try:
        yield Instance(manager, free_port(), results)
    finally:
        manager.stop()


def servers(fleet: BackendFleet, *lines: tuple[str, str, int]) -> tuple[Server, ...]:
    """Servers named as given, at the fleet's backend, with the weight."""
    result = []
    for name, backend, weight in lines:
        parts = split_address(fleet[backend].address)
        result.append(Server(name, parts.host, parts.port, weight))
    return tuple(result)


def test_hitless_reloads_under_load(fleet: BackendFleet, instance: Instance) -> None:
    """20 reloads while clients send requests on new and on keep-alive connections: none fails."""
    backend_lines = servers(fleet, ("s1", "a", 1), ("s2", "b", 1))

    def revision(number: int) -> Bundle:
        rule = f"    http-response set-header x-config-revision {number}\n"
        return handmade(instance.port, backend_lines, frontend_extra=rule)

    assert instance.manager.start(revision(0)).ok
    stop = threading.Event()
    counts: Counter[str] = Counter()
    failures: list[str] = []
    lock = threading.Lock()

    def record(kind: str, outcome: str | None) -> None:
        with lock:
            counts[kind] += 1
            if outcome is not None:
                failures.append(f"{kind}: {outcome}")

    def new_connections() -> None:
        while not stop.is_set():
            try:
                response = http(LOOPBACK, instance.port)
                ok = response.status == 200 and response.backend in ("a", "b")
                record("new", None if ok else f"status {response.status}")
            except Exception as exc:
                record("new", repr(exc))

    def keep_alive() -> None:
        session = HttpSession(LOOPBACK, instance.port)
        try:
            while not stop.is_set():
                try:
                    response = session.request("/")
                    ok = response.status == 200 and response.backend in ("a", "b")
                    record("keep-alive", None if ok else f"status {response.status}")
                except Exception as exc:
                    record("keep-alive", repr(exc))
            with lock:
                counts["keep-alive connections"] += session.connections_opened
        finally:
            session.close()

    clients = [threading.Thread(target=f) for f in (new_connections, new_connections)]
    clients += [threading.Thread(target=keep_alive) for _ in range(2)]
    for client in clients:
        client.start()
    try:
        reloads_before = instance.manager.reload_count()
        for number in range(1, 21):
            result = instance.manager.apply(revision(number))
            assert (result.ok, result.mode) == (True, "reload"), result
            assert http(LOOPBACK, instance.port).headers["x-config-revision"] == str(number)
    finally:
        stop.set()
        for client in clients:
            client.join(10)
    assert instance.manager.reload_count() == reloads_before + 20
    durations = [r.duration for r in instance.results if r.mode == "reload"]
    print(
        f"\nhitless reloads: 20 reloads, requests {dict(counts)}, failures {len(failures)}, "
        f"reload apply median {sorted(durations)[len(durations) // 2] * 1000:.0f} ms"
    )
    assert failures == []
    assert counts["new"] > 0 and counts["keep-alive"] > 0


def test_weight_changes_go_through_runtime_and_address_changes_reload(
    fleet: BackendFleet, instance: Instance
) -> None:
    manager = instance.manager
    first = handmade(instance.port, servers(fleet, ("s1", "a", 1), ("s2", "b", 1)))
    assert manager.start(first).mode == "start"
    assert set(instance.backends_seen(10)) == {"a", "b"}
    reloads = manager.reload_count()

    drained = handmade(instance.port, servers(fleet, ("s1", "a", 1), ("s2", "b", 0)))
    result = manager.apply(drained)
    assert (result.ok, result.mode) == (True, "runtime"), result
    assert "be/s2 weight 0" in result.reason
    assert instance.backends_seen(10) == Counter({"a": 10})
    assert manager.reload_count() == reloads

    moved = handmade(instance.port, servers(fleet, ("s1", "c", 1), ("s2", "b", 0)))
    result = manager.apply(moved)
    assert (result.ok, result.mode) == (True, "reload"), result
    assert "previous workers gone" in result.reason
    assert instance.backends_seen(10) == Counter({"c": 10})
    state = {s.server: s for s in manager.runtime.show_servers_state("be")}
    assert (state["s1"].address, state["s1"].port) == (LOOPBACK, fleet["c"].port)

    assert manager.apply(moved).mode == "unchanged"
    assert manager.reload_count() == reloads + 1
    assert (manager.workdir / "haproxy.cfg").read_text() == moved.cfg
    assert [r.mode for r in instance.results] == ["start", "runtime", "reload", "unchanged"]


def test_a_moved_endpoint_takes_no_request_after_the_change_under_keep_alive_load(
    fleet: BackendFleet, instance: Instance
) -> None:
    """20 keep-alive clients send steadily while the only endpoint of a rendered cluster moves
    from backend a to b (`http-reuse always`, whose idle connections HAProxy 2.6 would keep
    using at the old address after `set server addr`): once the apply returns, every request
    reaches b, and no request fails at any time."""

    def bundle(backend: str) -> Bundle:
        route = {"name": "default", "backends": [{"cluster": "web"}]}
        vhost = {"name": "site", "domains": ["*"], "routes": [route]}
        listener = {"name": "web", "address": f"{LOOPBACK}:{instance.port}", "protocol": "http"}
        cluster = {"name": "web", "endpoints": [{"address": fleet[backend].address}]}
        model = {"listeners": [{**listener, "virtual_hosts": [vhost]}], "clusters": [cluster]}
        return render(parse_config(model), "default")

    before, after = bundle("a"), bundle("b")
    assert instance.manager.start(before).ok
    stop = threading.Event()
    seen: list[tuple[float, str]] = []
    lock = threading.Lock()

    def client() -> None:
        session = HttpSession(LOOPBACK, instance.port)
        try:
            while not stop.is_set():
                try:
                    response = session.request("/")
                    outcome = str(response.backend) if response.status == 200 else "failed"
                except Exception as exc:
                    outcome = f"failed: {exc!r}"
                with lock:
                    seen.append((time.monotonic(), outcome))
                stop.wait(0.01)
        finally:
            session.close()

    clients = [threading.Thread(target=client) for _ in range(20)]
    for thread in clients:
        thread.start()
    try:
        while sum(1 for _, backend in seen if backend == "a") < 200:
            stop.wait(0.05)
        result = instance.manager.apply(after)
        applied = time.monotonic()
        while sum(1 for at, _ in seen if at > applied) < 1000:
            stop.wait(0.05)
    finally:
        stop.set()
        for thread in clients:
            thread.join(10)
    assert result.ok, result
    before_change = Counter(b for at, b in seen if at <= applied)
    after_change = Counter(b for at, b in seen if at > applied)
    print(f"\naddress change under load: {result.reason}; before {dict(before_change)}, ", end="")
    print(f"after {dict(after_change)}, apply {result.duration * 1000:.0f} ms")
    assert [b for b in before_change if b not in ("a", "b")] == []
    assert set(after_change) == {"b"}
    assert result.mode == "reload"


def test_runtime_refusal_falls_back_to_reload(fleet: BackendFleet, instance: Instance) -> None:
    """A static balancing algorithm refuses weight changes at runtime; the manager reloads."""
    manager = instance.manager
    first = servers(fleet, ("s1", "a", 1), ("s2", "b", 1))
    assert manager.start(handmade(instance.port, first, balance="static-rr")).ok
    reloads = manager.reload_count()
    heavier = servers(fleet, ("s1", "a", 1), ("s2", "b", 3))
    result = manager.apply(handmade(instance.port, heavier, balance="static-rr"))
    assert (result.ok, result.mode) == (True, "reload"), result
    assert "static LB algorithm" in result.reason
    assert manager.reload_count() == reloads + 1
    state = {s.server: s for s in manager.runtime.show_servers_state("be")}
    assert state["s2"].weight == 3


def test_map_content_change_goes_through_runtime(fleet: BackendFleet, instance: Instance) -> None:
    routing = "    use_backend %[path,map_beg(paths.map,be)]\n"
    extra = f"backend be_b\n    server b1 {fleet['b'].address} weight 1\n"
    cfg = config(
        instance.port,
        servers(fleet, ("s1", "a", 1)),
        frontend_extra=routing,
        backends_extra=extra,
    )
    manager = instance.manager
    assert manager.start(Bundle.of(cfg, {"paths.map": [("/b", "be_b")]})).ok
    assert instance.backends_seen(3, "/x/1") == Counter({"a": 3})
    assert instance.backends_seen(3, "/b/1") == Counter({"b": 3})
    reloads = manager.reload_count()

    updated = Bundle.of(cfg, {"paths.map": [("/b", "be_b"), ("/x", "be_b")]})
    result = manager.apply(updated)
    assert (result.ok, result.mode) == (True, "runtime"), result
    assert "paths.map" in result.reason
    assert instance.backends_seen(3, "/x/1") == Counter({"b": 3})
    assert instance.backends_seen(3, "/y") == Counter({"a": 3})
    assert manager.reload_count() == reloads
    assert (manager.workdir / "paths.map").read_text() == updated.maps["paths.map"]

    # Large maps go in several payloads, each within HAProxy's CLI buffer.
    many = [(f"/p{i}", "be_b") for i in range(5000)] + [("/x", "be")]
    result = manager.apply(Bundle.of(cfg, {"paths.map": many}))
    assert (result.ok, result.mode) == (True, "runtime"), result
    [loaded] = manager.runtime.show_maps()
    assert loaded.entries == 5001
    assert instance.backends_seen(2, "/p4999") == Counter({"b": 2})
    assert instance.backends_seen(2, "/x/1") == Counter({"a": 2})
    assert manager.reload_count() == reloads


def test_rejected_config_leaves_the_old_one_running(
    fleet: BackendFleet, instance: Instance
) -> None:
    manager = instance.manager
    good = handmade(instance.port, servers(fleet, ("s1", "a", 1)))
    assert manager.start(good).ok
    reloads = manager.reload_count()

    broken = Bundle.of(good.cfg.replace("    balance roundrobin\n", "    balance nosuchalgo\n"))
    result = manager.apply(broken)
    assert (result.ok, result.mode) == (False, "rejected")
    bad_line = broken.cfg.split("\n").index("    balance nosuchalgo") + 1
    assert result.error is not None
    assert f"parsing [haproxy.cfg:{bad_line}] : balance only supports" in result.error
    assert instance.backends_seen(3) == Counter({"a": 3})
    assert manager.reload_count() == reloads
    assert (manager.workdir / "haproxy.cfg").read_text() == good.cfg
    assert not list(manager.workdir.glob(".stage-*"))
    assert manager.current == good

    owned = good.cfg.replace("global\n", "global\n    hard-stop-after 1s\n")
    result = manager.apply(Bundle.of(owned))
    assert result.mode == "rejected" and "hard-stop-after" in (result.error or "")


def test_stop_ends_every_process(fleet: BackendFleet, instance: Instance) -> None:
    manager = instance.manager
    assert manager.start(handmade(instance.port, servers(fleet, ("s1", "a", 1)))).ok
    procs = manager.processes()
    pids = [procs.master.pid, *(w.pid for w in procs.workers)]
    manager.stop()
    manager.stop()
    assert not manager.running
    deadline = time.monotonic() + 5
    while any(map(alive, pids)) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not any(map(alive, pids))


def alive(pid: int) -> bool:
    """Whether a process exists and is not a zombie waiting to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def test_apply_restarts_haproxy_whose_master_died(fleet: BackendFleet, instance: Instance) -> None:
    """Workers left by a killed master are stopped and a new HAProxy starts on the bundle (an
    apply that comes before the supervisor noticed: it reports `down`, then `restarted`)."""
    events: list[HealthEvent] = []
    manager = instance.manager
    manager.supervise_every, manager.on_health = None, events.append
    bundle = handmade(instance.port, servers(fleet, ("s1", "a", 1)))
    assert manager.start(bundle).ok
    procs = manager.processes()
    os.kill(procs.master.pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while manager.running and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not manager.running

    result = manager.apply(bundle)
    assert (result.ok, result.mode) == (True, "start"), result
    assert not any(alive(w.pid) for w in procs.workers)
    assert instance.backends_seen(3) == Counter({"a": 3})
    assert [e.state for e in events] == ["down", "restarted"]


def test_a_new_manager_adopts_a_detached_haproxy_without_a_reload(
    fleet: BackendFleet, instance: Instance
) -> None:
    """The data plane outlives its manager: a detached HAProxy keeps serving, and the next
    manager of the workdir takes it over; the same bundle then changes nothing."""
    first = instance.manager
    bundle = handmade(instance.port, servers(fleet, ("s1", "a", 1), ("s2", "b", 0)))
    assert first.start(bundle).ok
    master = first.processes().master.pid
    first.detach()
    assert instance.backends_seen(3) == Counter({"a": 3})

    second = HAProxyManager(first.workdir, instance_id="test")
    try:
        assert second.adopt()
        assert second.processes().master.pid == master
        assert second.apply(bundle).mode == "unchanged"
        assert second.reload_count() == 0
        changed = handmade(instance.port, servers(fleet, ("s1", "a", 0), ("s2", "b", 1)))
        assert second.apply(changed).mode == "runtime"
        assert instance.backends_seen(3) == Counter({"b": 3})
    finally:
        second.stop()
    assert not alive(master)
    assert not HAProxyManager(first.workdir).adopt()


def wait_for_states(events: list[HealthEvent], states: list[str]) -> list[HealthEvent]:
    deadline = time.monotonic() + 15
    while [e.state for e in events] != states:
        assert time.monotonic() < deadline, f"expected {states}, reported {events}"
        time.sleep(0.01)
    return list(events)


@pytest.mark.parametrize("victim", ["worker", "master"])
def test_a_killed_haproxy_is_noticed_restarted_on_its_bundle_and_reported(
    fleet: BackendFleet, instance: Instance, victim: str
) -> None:
    """`kill -9` of the worker (HAProxy 2.6's master then exits too) or of the master: the
    supervisor reports `down`, starts HAProxy on the bundle it ran, and reports `restarted`."""
    events: list[HealthEvent] = []
    manager = instance.manager
    manager.on_health = events.append
    bundle = handmade(instance.port, servers(fleet, ("s1", "a", 1)))
    assert manager.start(bundle).ok
    before = manager.processes()
    pid = before.workers[0].pid if victim == "worker" else before.master.pid

    killed_at = time.time()
    os.kill(pid, signal.SIGKILL)
    down, restarted = wait_for_states(events, ["down", "restarted"])

    assert f"(pid {before.master.pid}) exited" in down.reason
    if victim == "worker":
        assert f"worker ({pid}) exited with code 137" in down.reason
    assert down.version == restarted.version == bundle.version
    assert manager.current == bundle and manager.down is None
    assert manager.processes().master.pid != before.master.pid
    assert instance.backends_seen(3) == Counter({"a": 3})
    assert [r.mode for r in instance.results] == ["start"]  # a restart is not an apply
    print(
        f"\nkill -9 of the {victim}: down reported after {down.at - killed_at:.3f}s, "
        f"restarted after {restarted.at - killed_at:.3f}s"
    )


def test_an_adopted_haproxy_whose_master_dies_is_restarted(
    fleet: BackendFleet, instance: Instance
) -> None:
    first = instance.manager
    bundle = handmade(instance.port, servers(fleet, ("s1", "a", 1)))
    assert first.start(bundle).ok
    first.detach()
    events: list[HealthEvent] = []
    second = HAProxyManager(first.workdir, instance_id="test", on_health=events.append)
    try:
        assert second.adopt()
        master = second.processes().master.pid
        os.kill(master, signal.SIGKILL)
        down, _ = wait_for_states(events, ["down", "restarted"])
        assert f"(pid {master}) exited" in down.reason
        assert instance.backends_seen(3) == Counter({"a": 3})
    finally:
        second.stop()


def test_a_restart_that_fails_is_reported_and_tried_again(
    fleet: BackendFleet, tmp_path: Path
) -> None:
    events: list[HealthEvent] = []
    port = free_port()
    manager = HAProxyManager(
        tmp_path / "hx", instance_id="test", on_health=events.append, supervise_every=None
    )
    try:
        bundle = handmade(port, servers(fleet, ("s1", "a", 1)))
        assert manager.start(bundle).ok
        processes = manager.processes()
        os.kill(processes.master.pid, signal.SIGKILL)
        for process in (processes.master, *processes.workers):
            wait_gone(process.pid)  # a worker closes the port soon after its master's death
        with SharedPortListener(LOOPBACK, port):  # someone took the port meanwhile
            manager.supervise()
        down, failed = events
        assert (down.state, failed.state) == ("down", "restart failed")
        assert failed.error is not None and "cannot bind socket" in failed.error, failed
        assert manager.down == failed and not manager.running

        deadline = time.monotonic() + 15
        while not manager.running:
            assert time.monotonic() < deadline, events
            manager.supervise()  # the next attempt waits a second
            time.sleep(0.05)
        assert [e.state for e in events] == ["down", "restart failed", "restarted"]
        assert http(LOOPBACK, port).backend == "a"
    finally:
        manager.stop()


def test_stop_and_detach_end_supervision(fleet: BackendFleet, instance: Instance) -> None:
    def supervisors() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name.startswith("haproxy-supervisor")]

    events: list[HealthEvent] = []
    before = supervisors()
    manager = instance.manager
    manager.on_health = events.append
    bundle = handmade(instance.port, servers(fleet, ("s1", "a", 1)))
    assert manager.start(bundle).ok
    assert len(supervisors()) == len(before) + 1
    manager.stop()
    manager.supervise()
    assert not manager.running and supervisors() == before

    assert manager.start(bundle).ok
    manager.detach()
    assert supervisors() == before
    adopting = HAProxyManager(manager.workdir, instance_id="test", on_health=events.append)
    assert adopting.adopt()
    adopting.stop()
    assert supervisors() == before and events == []


def test_output_that_is_not_utf8_is_a_rejection_with_the_message(instance: Instance) -> None:
    """HAProxy quotes the offending byte of a port in Arabic-Indic digits on its own: an
    invalid UTF-8 sequence. The manager reports it (with replacement characters)."""
    manager = instance.manager
    arabic_port = "\u0661\u0662\u0663"
    result = manager.apply(
        Bundle.of(
            config(instance.port).replace(
                f"{LOOPBACK}:{instance.port}", f"{LOOPBACK}:{arabic_port}"
            )
        )
    )
    assert (result.ok, result.mode) == (False, "rejected"), result
    assert result.error is not None
    assert f"invalid character '\ufffd' in port number '{arabic_port}'" in result.error
    assert not manager.running


def test_a_manager_that_fails_reports_the_failure(tmp_path: Path) -> None:
    results: list[ApplyResult] = []
    manager = HAProxyManager(
        tmp_path / "hx", haproxy_bin=str(tmp_path / "no-haproxy"), on_apply=results.append
    )
    result = manager.apply(handmade(free_port()))
    assert (result.ok, result.mode, result.reason) == (False, "start", "the manager failed")
    assert result.error is not None and result.error.startswith("FileNotFoundError: ")
    assert results == [result]


def test_a_port_another_process_holds_is_refused_not_shared(
    fleet: BackendFleet, instance: Instance
) -> None:
    """Even when the other socket allows SO_REUSEPORT, HAProxy does not bind beside it: the
    start (or the reload that adds the listener) fails, and every connection still reaches
    the other socket."""
    manager = instance.manager
    with SharedPortListener(LOOPBACK) as other:
        taken = handmade(other.port, servers(fleet, ("s1", "a", 1)))
        result = manager.apply(taken)
        assert (result.ok, result.mode) == (False, "start"), result
        assert result.error is not None and "cannot bind socket" in result.error, result

        good = handmade(instance.port, servers(fleet, ("s1", "a", 1)))
        assert manager.apply(good).ok
        second = f"frontend other\n    bind {LOOPBACK}:{other.port}\n    default_backend be\n"
        result = manager.apply(Bundle.of(good.cfg + second))
        assert (result.ok, result.mode) == (False, "reload"), result
        assert "cannot bind socket" in (result.error or ""), result

        assert connect_times(LOOPBACK, other.port, 50) == 50
        assert other.accepted() == 50
    assert instance.backends_seen(3) == Counter({"a": 3})
