"""The main process of a lab HAProxy container: an idle HAProxy for an agent next door to feed.

An agent owns its HAProxy and the HAProxy runs wherever the agent started it, so an HAProxy
started by an agent container would die with it. Here the HAProxy container starts HAProxy itself,
through an `HAProxyManager` on the shared working directory, on a bundle that serves nothing,
and lets go of it (`detach`); the agent container (same working directory, same PID namespace)
adopts it and reloads it onto its group's bundle. Killing and restarting the agent container
then leaves HAProxy serving: the new agent adopts it again.

    python -m controlplane.lab.haproxy_host WORKDIR           # run HAProxy until it exits
    python -m controlplane.lab.haproxy_host WORKDIR --check   # exit 0 when its master answers

The process lives as long as HAProxy's master and exits with it; SIGTERM stops HAProxy.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
from pathlib import Path

from ..haproxy.bundle import Bundle
from ..proxies.haproxy.manager import HAProxyManager
from ..proxies.haproxy.runtime import CommandError

IDLE_CONFIG = """\
# Idle: no listener until the agent reloads this HAProxy onto its group's bundle.
defaults
    mode tcp
    option idle-close-on-response
    timeout connect 5s
    timeout client 1m
    timeout server 1m
"""


def serve(workdir: Path, haproxy_bin: str = "haproxy") -> int:
    """Start HAProxy idle from `workdir`, wait for its master to exit, return its exit code."""
    manager = HAProxyManager(workdir, haproxy_bin=haproxy_bin, instance_id="lab-haproxy-host")
    result = manager.start(Bundle.of(IDLE_CONFIG, {}))
    if not result.ok:
        print(f"haproxy did not start: {result.error}", file=sys.stderr)
        return 1
    pid = manager.processes().master.pid
    manager.detach()

    def stop(signum: int, frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"haproxy master {pid} idle in {workdir}, waiting for an agent", flush=True)
    while True:
        try:
            _, status = os.waitpid(pid, 0)
        except InterruptedError:
            continue
        except ChildProcessError:
            return 0
        return os.waitstatus_to_exitcode(status)


def check(workdir: Path) -> int:
    """0 when the HAProxy of `workdir` answers on its master socket, else 1."""
    try:
        HAProxyManager(workdir).processes()
    except (OSError, CommandError, ValueError):
        return 1
    return 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--check", action="store_true", help="only check that HAProxy answers")
    parser.add_argument("--haproxy-bin", default="haproxy")
    args = parser.parse_args(argv)
    if args.check:
        raise SystemExit(check(args.workdir))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    raise SystemExit(serve(args.workdir, args.haproxy_bin))


if __name__ == "__main__":
    main()
