"""The REST API from the command line: `controlplane apply` and `controlplane status`.

Uses only the standard library's HTTP client, so the commands need nothing beyond the
package's own dependencies.
"""

from __future__ import annotations

import json
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .model import Config

Echo = Callable[[str], None]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2


@dataclass
class Reply:
    """An HTTP answer: status, headers, body parsed as JSON (None when it is not JSON)."""

    status: int
    headers: dict[str, str]
    data: Any
    text: str = ""

    @property
    def revision(self) -> int | None:
        tag = self.headers.get("etag", "").removeprefix("W/").strip('"')
        return int(tag) if tag.isdigit() else None

    @property
    def error(self) -> str:
        if isinstance(self.data, dict) and "error" in self.data:
            return str(self.data["error"])
        return self.text.strip() or f"HTTP {self.status}"

    @property
    def issues(self) -> list[dict[str, Any]]:
        found = self.data.get("issues") if isinstance(self.data, dict) else None
        return found if isinstance(found, list) else []


class ServerUnreachable(Exception):
    """No answer from the server."""


def tls_context(ca: str | None) -> ssl.SSLContext:
    """What verifies an https server: the certificates of CA file `ca`, else the system's
    trusted CAs. OSError or ssl.SSLError when `ca` does not load."""
    return ssl.create_default_context(cafile=ca)


@dataclass
class ApiClient:
    """Requests to a control-plane API at `server` (e.g. https://cp.internal:8443); an https
    server's certificate is verified against CA file `ca` (default: the system's CAs)."""

    server: str
    token: str | None = None
    timeout: float = 30.0
    extra_headers: dict[str, str] = field(default_factory=dict)
    ca: str | None = None

    def __post_init__(self) -> None:
        self._tls = tls_context(self.ca)

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> Reply:
        """Send a request (a body is sent as JSON) and return the reply, whatever its status."""
        all_headers = {"Accept": "application/json", **self.extra_headers, **(headers or {})}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            all_headers["Content-Type"] = "application/json"
        if self.token:
            all_headers["Authorization"] = f"Bearer {self.token}"
        url = self.server.rstrip("/") + path
        req = urllib.request.Request(url, data=data, headers=all_headers, method=method)
        try:
            with urllib.request.urlopen(
                req, timeout=timeout or self.timeout, context=self._tls
            ) as response:
                return _reply(response.status, dict(response.headers), response.read())
        except urllib.error.HTTPError as exc:
            return _reply(exc.code, dict(exc.headers), exc.read())
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ServerUnreachable(f"{self.server}: {reason}") from None


def _reply(status: int, headers: dict[str, str], raw: bytes) -> Reply:
    text = raw.decode("utf-8", "replace")
    try:
        data = json.loads(text) if text else None
    except json.JSONDecodeError:
        data = None
    return Reply(status, {k.lower(): v for k, v in headers.items()}, data, text)


def issue_lines(reply: Reply, source: str) -> list[str]:
    """One line per issue of a refused request (the error itself when it lists none)."""
    lines = []
    for issue in reply.issues:
        proxy = f" [{issue['proxy']}]" if issue.get("proxy") else ""
        lines.append(f"{source}: {issue.get('path', '')}: {issue.get('message', '')}{proxy}")
    return lines or [f"{source}: {reply.error}"]


def change_lines(changes: list[dict[str, Any]]) -> list[str]:
    """A dry run's model-level changes, one per line: `+ route web/site/api`."""
    mark = {"added": "+", "removed": "-", "changed": "~"}
    return [f"  {mark.get(c['change'], '?')} {c['kind']} {c['name']}" for c in changes]


def proxy_lines(proxies: dict[str, Any]) -> list[str]:
    """A dry run's per-proxy detail: the xDS resources each Envoy group receives anew, and
    whether each HAProxy group takes the change at runtime or reloads."""
    lines = []
    for group, changes in sorted(proxies.get("envoy", {}).get("groups", {}).items()):
        for kind, by_change in sorted(changes.items()):
            for change, names in sorted(by_change.items()):
                lines.append(f"  envoy   {group}: {kind} {change}: {', '.join(names)}")
    for group, plan in sorted(proxies.get("haproxy", {}).get("groups", {}).items()):
        if plan.get("action") != "unchanged":
            lines.append(f"  haproxy {group}: {plan.get('action')} ({plan.get('reason')})")
    return lines


def apply(
    client: ApiClient,
    config: Config,
    source: str,
    echo: Echo,
    echo_err: Echo,
    wait_seconds: float = 30.0,
    message: str | None = None,
    allow_empty_groups: bool = False,
) -> int:
    """Show what `config` changes, make it the head (If-Match the head read first), then wait
    for the fleet. Returns the exit code: 0 applied and acked by all, 1 NACKed, not acked in
    time or refused by the server, 2 invalid (or emptying a node group with connected proxies,
    unless `allow_empty_groups`)."""
    body = config.model_dump(mode="json")
    query = "?allow_empty_groups=true" if allow_empty_groups else ""
    current = client.request("GET", "/v1/config")
    if current.status != 200:
        echo_err(f"{client.server}: {current.error}")
        return EXIT_FAILED
    dry = client.request("POST", f"/v1/config:validate{query}", body)
    if dry.status == 422:
        for line in issue_lines(dry, source):
            echo_err(line)
        return EXIT_BAD_INPUT
    if dry.status != 200:
        echo_err(f"{client.server}: {dry.error}")
        return EXIT_FAILED
    changes = dry.data.get("changes", [])
    if changes:
        echo(f"changes against revision {dry.data.get('revision')}:")
        for line in change_lines(changes) + proxy_lines(dry.data.get("proxies", {})):
            echo(line)
    else:
        echo(f"no changes against revision {dry.data.get('revision')}")
    headers = {"If-Match": f'"{current.revision or 0}"'}
    if message:
        headers["X-Change-Message"] = message
    put = client.request("PUT", f"/v1/config{query}", body, headers=headers)
    if put.status == 422:
        for line in issue_lines(put, source):
            echo_err(line)
        return EXIT_BAD_INPUT
    if put.status in (409, 412):
        echo_err(f"{client.server}: {put.error} (someone else changed the config; apply again)")
        return EXIT_FAILED
    if put.status != 200:
        echo_err(f"{client.server}: {put.error}")
        return EXIT_FAILED
    revision = int(put.data["revision"])
    echo(f"revision {revision}" + ("" if put.data.get("changed") else " (unchanged)"))
    return wait(client, revision, echo, echo_err, wait_seconds)


def wait(client: ApiClient, revision: int, echo: Echo, echo_err: Echo, seconds: float) -> int:
    """Wait for every connected proxy to run `revision`, printing progress as it changes."""
    deadline = time.monotonic() + seconds
    shown: tuple[int, int] | None = None
    while True:
        left = max(0.0, deadline - time.monotonic())
        step = min(left, 2.0)
        reply = client.request(
            "GET",
            f"/v1/status/wait?revision={revision}&timeout={step:.3f}",
            timeout=step + 10.0,
        )
        if reply.status != 200:
            echo_err(f"{client.server}: {reply.error}")
            return EXIT_FAILED
        data = reply.data
        progress = (int(data["acked"]), int(data["total"]))
        if data["converged"]:
            echo(f"acked by {progress[0]}/{progress[1]}")
            return EXIT_OK
        if data["refused"]:
            echo_err(f"acked by {progress[0]}/{progress[1]}; refused (NACK) by:")
            for proxy in data["refused"]:
                echo_err(
                    f"  {proxy['kind']} {proxy['id']} ({proxy['group']}): {proxy.get('error', '')}"
                )
            return EXIT_FAILED
        if progress != shown:
            echo(f"waiting for revision {revision}: acked by {progress[0]}/{progress[1]}")
            shown = progress
        if time.monotonic() >= deadline:
            echo_err(
                f"not acked by all within {seconds:g}s ({progress[0]}/{progress[1]}); pending:"
            )
            for proxy in data["pending"]:
                echo_err(
                    f"  {proxy['kind']} {proxy['id']} ({proxy['group']}): runs {proxy['revision']}"
                )
            return EXIT_FAILED


def status_table(data: dict[str, Any], now: float | None = None) -> list[str]:
    """The fleet as aligned text columns, one proxy per line."""
    now = time.time() if now is None else now
    head = data.get("revision", 0)
    rows = [("ID", "KIND", "GROUP", "REVISION", "STATE", "LAST SEEN", "LAST NACK")]
    for p in data.get("proxies", []):
        nack = p.get("last_nack")
        rows.append(
            (
                str(p["id"]),
                str(p["kind"]),
                str(p["group"]),
                "-" if p.get("revision") is None else str(p["revision"]),
                _state(p, now),
                _ago(now - float(p["last_seen"])),
                f"r{nack['revision']}: {nack['error']}" if nack else "",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [f"head revision {head}; {len(rows) - 1} proxies"]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return lines


def _state(proxy: dict[str, Any], now: float) -> str:
    """disconnected, down (since when), restart failed (when it was last tried), current or
    behind (and when it was last restarted)."""
    health = proxy.get("health") or {}
    when = _ago(now - float(health["at"])) if health else ""
    if not proxy.get("connected"):
        return "disconnected"
    if health.get("state") == "down":
        return f"down since {when}"
    if health.get("state") == "restart failed":
        return f"restart failed {when}"
    state = "current" if proxy.get("current") else "behind"
    return f"{state}, restarted {when}" if health else state


def _ago(seconds: float) -> str:
    if seconds < 1:
        return "now"
    if seconds < 120:
        return f"{seconds:.0f}s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m ago"
    return datetime.fromtimestamp(time.time() - seconds, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def verification_lines(data: dict[str, Any]) -> list[str]:
    """A verification (`POST /v1/status:verify`) as lines: per proxy verified, drifted or not
    verified, then each difference."""
    lines = [f"verified against revision {data.get('revision')}:"]
    for check in data.get("proxies", []):
        who = f"  {check['kind']} {check['id']} ({check['group']})"
        if not check["verified"]:
            lines.append(f"{who}: not verified: {check['error']}")
        elif not check["differences"]:
            lines.append(f"{who}: runs what was intended")
        else:
            lines.append(f"{who}: DRIFT, {check['count']} differences")
            lines.extend(f"    {line}" for line in check["differences"])
    return lines


def status(client: ApiClient, echo: Echo, echo_err: Echo, verify: bool = False) -> int:
    """Print the fleet table (and, with `verify`, what each proxy actually runs against the
    head); the exit code is 1 when the server cannot be asked or a proxy drifted."""
    verification = None
    if verify:
        checked = client.request("POST", "/v1/status:verify")
        if checked.status != 200:
            echo_err(f"{client.server}: {checked.error}")
            return EXIT_FAILED
        verification = checked.data
    reply = client.request("GET", "/v1/status")
    if reply.status != 200:
        echo_err(f"{client.server}: {reply.error}")
        return EXIT_FAILED
    for line in status_table(reply.data):
        echo(line)
    if verification is None:
        return EXIT_OK
    for line in verification_lines(verification):
        echo(line)
    return EXIT_FAILED if verification.get("drifted") else EXIT_OK
