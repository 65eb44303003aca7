"""Firewall costs on Envoy and HAProxy in one run: requests per second (keep-alive) and new
connections per second with no policy, with a 10,000-CIDR deny list, with the L7 rules of
`examples/firewall.yaml` (on the route, for a request that fires none of their triggers and
for one whose `%` sends it to the Lua; and on another route only: kept off this one's path),
and with CRS at paranoia level 1 (and the verdict service's CPU per request); then the
corpus's detection and false-positive rates per proxy, for the L7 rules alone, the CRS alone
and both. Beside each rate, the proxy's CPU time per request (user + system from /proc, all
its processes): on a shared machine a steadier measure of a policy's cost than req/s.

    .venv/bin/python bench/firewall.py [--seconds 3] [--rounds 3] [--workers 1]
        [--cases none,l7,...] [--no-corpus] [--upstream]

Needs wrk. Everything runs on 127.0.0.1: the proxy (Envoy --concurrency 1, HAProxy
nbthread 1) on CPU 0; wrk and the verdict service (`controlplane waf-serve`) on CPU 1. The
route answers itself (a direct response), so no backend is measured and every policy's cost
shows in full; with `--upstream` it forwards to a backend (an HAProxy that answers every request
itself, on CPU 1), as a load balancer does, and a policy's cost is a share of that. Every
request carries a browser's User-Agent (the L7 rules check it, as they would on real traffic).
Cases are played in interleaved rounds, each on a proxy started for it, and the median is
printed; the load average is printed before and after. `bench/instructions.py` counts the
same cases' instructions.
"""

from __future__ import annotations

import argparse
import copy
import ipaddress
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from controlplane.bench.answering import answering
from controlplane.bench.procfs import cpu_times
from controlplane.bench.procfs import processes_cpu_seconds as cpu_seconds
from controlplane.haproxy.bundle import Bundle
from controlplane.haproxy.render import render
from controlplane.model import Config, parse_config, parse_text
from controlplane.proxies.haproxy.manager import HAProxyManager
from controlplane.proxies.waf import VerdictServiceProcess
from tests.firewall.corpus import EXAMPLE, Rates, corpus, example_config, verdict_of
from tests.harness.backends import BackendFleet, BackendSpec
from tests.harness.ports import free_port
from tests.harness.targets_envoy import EnvoyTarget
from tests.harness.verdicts import VerdictService

LOOPBACK = "127.0.0.1"
HOST = "shop.example.com"
PATH = "/api/v1/products?page=2&sort=price&category=shoes"
ENCODED_PATH = "/api/v1/products?q=red%20shoes&page=2"
"""A request the L7 rules' triggers send to the Lua: its query holds a `%` (`url_decode`)."""
USER_AGENT = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36"
)
CASES = ("none", "addresses", "l7", "l7-encoded", "l7-other-route", "crs")


def deny_list(count: int) -> list[str]:
    """`count` distinct ranges of 10.0.0.0/8 and 2001:db8::/32 (none covers loopback)."""
    rng = random.Random(7)
    found: set[str] = set()
    while len(found) < count:
        if rng.random() < 0.8:
            length = rng.choice([16, 20, 24, 28, 32])
            address: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.IPv4Address(
                0x0A000000 + rng.getrandbits(24)
            )
        else:
            length = rng.choice([48, 56, 64])
            address = ipaddress.IPv6Address((0x20010DB8 << 96) + rng.getrandbits(96))
        found.add(str(ipaddress.ip_network(f"{address}/{length}", strict=False)))
    return sorted(found)


def l7_rules() -> dict[str, Any]:
    """The example's listener firewall without its crs."""
    data = parse_text(EXAMPLE.read_text(), str(EXAMPLE))
    firewall = copy.deepcopy(data["listeners"][0]["firewall"])
    firewall.pop("crs")
    return dict(firewall)


def config(case: str, port: int, verdicts: str, upstream: str | None = None) -> Config:
    """The bench's config for `case`, its route answering itself or, with `upstream`,
    forwarding to a backend there."""
    answer: dict[str, Any] = (
        {"backends": [{"cluster": "app"}]}
        if upstream is not None
        else {"direct_response": {"status": 200, "body": "ok"}}
    )
    routes: list[dict[str, Any]] = [{"match": {"path": {"prefix": "/api"}}, **answer}]
    listener: dict[str, Any] = {
        "name": "shop",
        "address": f"{LOOPBACK}:{port}",
        "protocol": "http",
        "forwarded_for": False,
        "virtual_hosts": [{"name": "shop", "domains": ["*"], "routes": routes}],
    }
    if case == "addresses":
        listener["addresses"] = {"deny": deny_list(10_000)}
    elif case in ("l7", "l7-encoded"):
        listener["firewall"] = l7_rules()
    elif case == "l7-other-route":
        routes.append({"match": {"path": {"prefix": "/admin"}}, **answer, "firewall": l7_rules()})
    elif case == "crs":
        # a saturated service queues requests: the timeout must not turn them into 403s
        listener["firewall"] = {"crs": {"paranoia_level": 1, "service": verdicts, "timeout": "10s"}}
    clusters = [{"name": "app", "endpoints": [{"address": upstream}]}] if upstream else []
    return parse_config({"listeners": [listener], "clusters": clusters})


@contextmanager
def upstream() -> Iterator[str]:
    """The address of a backend answering every request itself on CPU 1, until the block
    ends."""
    port = free_port()
    with answering(LOOPBACK, port):
        yield f"{LOOPBACK}:{port}"


def one_thread(bundle: Bundle) -> Bundle:
    cfg = bundle.cfg.replace("global\n", "global\n    nbthread 1\n", 1)
    return Bundle.of(cfg, bundle.map_entries, bundle.files, bundle.servers)


def wrk(port: int, seconds: int, close: bool, path: str = PATH) -> tuple[float, int]:
    """Requests per second and the number of requests, each on a new connection with
    `close`."""
    command = ["taskset", "-c", "1", "wrk", "-t1", "-c50", f"-d{seconds}s", "-H", f"Host: {HOST}"]
    command += ["-H", f"User-Agent: {USER_AGENT}"]
    if close:
        command += ["-H", "Connection: close"]
    out = subprocess.run(
        [*command, f"http://{LOOPBACK}:{port}{path}"], capture_output=True, text=True, check=True
    ).stdout
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non_2xx:
        raise RuntimeError(f"wrk saw {non_2xx.group(1)} error answers:\n{out}")
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    assert rate and total, out
    return float(rate.group(1)), int(total.group(1))


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(child) for child in text.split()]


def with_children(pid: int | None) -> list[int]:
    """`pid` and its children (HAProxy's master and its workers)."""
    return [pid, *_children(pid)] if pid is not None else []


class Proxy:
    """One proxy under test: `apply` a config, `name`, `pids` (its processes now)."""

    def __init__(
        self,
        name: str,
        apply: Callable[[Config], None],
        stop: Callable[[], None],
        pids: Callable[[], list[int]],
    ):
        self.name, self.apply, self.stop, self.pids = name, apply, stop, pids


def envoy() -> Proxy:
    target = EnvoyTarget("sotw", concurrency=1)
    target.start()

    def pids() -> list[int]:
        process = target.envoy.process if target.envoy is not None else None
        return with_children(process.pid if process is not None else None)

    return Proxy("envoy", lambda c: target.apply(c, "default"), target.stop, pids)


def haproxy(workdir: Path) -> Proxy:
    manager = HAProxyManager(workdir)
    started = False

    def apply(config: Config) -> None:
        nonlocal started
        bundle = one_thread(render(config, "default"))
        if not started:
            manager.start(bundle)
            started = True
        else:
            result = manager.apply(bundle)
            assert result.ok, result.error

    return Proxy("haproxy", apply, manager.stop, lambda: with_children(manager.master_pid))


def throughput(
    args: argparse.Namespace, verdicts: VerdictServiceProcess, target: str | None
) -> None:
    """Each case's rates and the proxy's CPU per request, the route answering itself or
    forwarding to `target`."""
    service_pids = _children(verdicts.pid) if verdicts.pid else []
    for pid in service_pids:
        os.sched_setaffinity(pid, {1})
    starts: dict[str, Callable[[], Proxy]] = {
        "envoy": envoy,
        "haproxy": lambda: haproxy(Path(tempfile.mkdtemp(prefix="fwbench-"))),
    }
    figures: dict[tuple[str, str, bool], list[float]] = {}
    proxy_cpu: dict[tuple[str, str], list[float]] = {}
    kernel: dict[tuple[str, str], list[float]] = {}
    crs_cpu: dict[str, list[float]] = {name: [] for name in starts}
    for _ in range(args.rounds):
        for name, start in starts.items():
            for case in args.cases:
                # a fresh proxy for each case: none runs on what an earlier one left behind
                # (draining listeners, Lua states)
                proxy = start()
                try:
                    port = free_port()
                    proxy.apply(config(case, port, verdicts.address, target))
                    # the Lua's cost per request is the point: no storm of new connections
                    for close in (False,) if case == "l7-encoded" else (False, True):
                        pids = proxy.pids()
                        before = cpu_seconds(service_pids)
                        user_before, system_before = cpu_times(pids)
                        path = ENCODED_PATH if case == "l7-encoded" else PATH
                        rate, count = wrk(port, args.seconds, close, path)
                        used = cpu_seconds(service_pids) - before
                        user_after, system_after = cpu_times(pids)
                        user, system = user_after - user_before, system_after - system_before
                        per_request = 1e6 * (user + system) / max(count, 1)
                        figures.setdefault((name, case, close), []).append(rate)
                        how = "new connections" if close else "keep-alive"
                        print(
                            f"  {name} {case} {how}: {rate:.0f}/s, "
                            f"{per_request:.1f} us CPU/request",
                            file=sys.stderr,
                        )
                        if not close:
                            proxy_cpu.setdefault((name, case), []).append(per_request)
                            kernel.setdefault((name, case), []).append(
                                system / max(user + system, 1e-9)
                            )
                        if case == "crs" and not close:
                            crs_cpu[name].append(1000 * used / max(count, 1))
                finally:
                    proxy.stop()
    answered = f"forwarded to an upstream at {target}" if target else "answered by the route"
    print(
        f"## req/s (wrk -t1 -c50 -d{args.seconds}s, keep-alive) and new connections/s "
        f"(Connection: close), median of {args.rounds} interleaved rounds; requests {answered}"
    )
    print(
        f"{'proxy':<8} {'case':<16} {'req/s':>8} {'vs none':>8} {'conn/s':>8} {'vs none':>8} "
        f"{'us CPU/req':>10} {'least':>6} {'kernel':>6} {'rate it allows':>14}"
    )
    for name in starts:
        base = {close: statistics.median(figures[(name, "none", close)]) for close in (False, True)}
        base_cpu = statistics.median(proxy_cpu[(name, "none")])
        for case in args.cases:
            kept = statistics.median(figures[(name, case, False)])
            new = statistics.median(figures.get((name, case, True), [float("nan")]))
            cpu = statistics.median(proxy_cpu[(name, case)])
            least = min(proxy_cpu[(name, case)])
            in_kernel = statistics.median(kernel[(name, case)])
            print(
                f"{name:<8} {case:<16} {kept:>8.0f} {kept / base[False] - 1:>+8.1%} "
                f"{new:>8.0f} {new / base[True] - 1:>+8.1%} {cpu:>10.1f} {least:>6.1f} "
                f"{in_kernel:>6.0%} {base_cpu / cpu - 1:>+14.1%}"
            )
    print(
        "(least: the round with the least CPU per request, the one others' work disturbed "
        "least; kernel: the share of that CPU spent in the kernel, which bench/instructions.py "
        "does not count; rate it allows: the keep-alive rate one saturated core would reach "
        "with the case's CPU per request, against none's)"
    )
    if "crs" not in args.cases:
        return
    print()
    print(f"## verdict service ({args.workers} worker(s), CPU 1): CPU per CRS request")
    for name in starts:
        ms = statistics.median(crs_cpu[name])
        per_core = 1000 / ms if ms else 0.0
        print(f"{name:<8} {ms:.3f} ms CPU per request -> {per_core:.0f} req/s per core")


def detection(verdicts: VerdictServiceProcess) -> None:
    requests = corpus()
    print()
    print(
        f"## corpus: {sum(r.attack for r in requests)} attacks, "
        f"{sum(not r.attack for r in requests)} benign requests"
    )
    with BackendFleet() as fleet:
        app = fleet.start(BackendSpec(name="app")).address
        workdir = Path(tempfile.mkdtemp(prefix="fwcorpus-"))
        proxies = [envoy(), haproxy(workdir)]
        try:
            for layers, crs, rules in (
                ("L7 rules", False, True),
                ("CRS PL1", True, False),
                ("both", True, True),
            ):
                for proxy in proxies:
                    listen = {
                        "shop": f"{LOOPBACK}:{free_port()}",
                        "db": f"{LOOPBACK}:{free_port()}",
                    }
                    proxy.apply(example_config(listen, app, verdicts.address, crs, rules))
                    port = int(listen["shop"].rsplit(":", 1)[1])
                    rates = Rates()
                    for request in requests:
                        rates.add(request, verdict_of(port, request))
                    print(f"{proxy.name:<8} {layers:<9} {rates}")
        finally:
            for proxy in proxies:
                proxy.stop()


def parsed_with_cases(
    parser: argparse.ArgumentParser, cases: tuple[str, ...]
) -> argparse.Namespace:
    """The command line, with `--cases`: some of `cases`, `none` (the baseline) among them."""
    parser.add_argument(
        "--cases",
        type=lambda text: tuple(text.split(",")),
        default=cases,
        help=f"comma-separated, among {','.join(cases)} (none is the baseline: keep it)",
    )
    args = parser.parse_args()
    unknown = set(args.cases) - set(cases)
    if unknown or "none" not in args.cases:
        parser.error(f"--cases: unknown {sorted(unknown)}" if unknown else "--cases needs none")
    return args


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--no-corpus", action="store_true", help="skip the detection rates")
    parser.add_argument(
        "--upstream", action="store_true", help="forward to a backend, not a direct response"
    )
    args = parsed_with_cases(parser, CASES)
    os.sched_setaffinity(0, {0})
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    began = time.monotonic()
    forwarding = upstream() if args.upstream else nullcontext(None)
    with VerdictService(workers=args.workers) as verdicts, forwarding as target:
        throughput(args, verdicts, target)
        if not args.no_corpus:
            detection(verdicts)
    print(
        f"\nload average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}, "
        f"{time.monotonic() - began:.0f} s"
    )


if __name__ == "__main__":
    main()
