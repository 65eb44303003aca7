"""The HAProxy agent: keeps a HAProxy beside it on its node group's bundle from the control plane.

The agent long-polls `GET <server>/v1/haproxy/<group>/bundle` (see
`controlplane.haproxy.agent_api`), applies each new bundle with a `HAProxyManager` and reports
the outcome (`POST .../status`: an ACK, or a NACK with HAProxy's own message).

- While the control plane is unreachable (or answers with an error) the agent retries with a
  bounded exponential backoff with jitter, and the running HAProxy keeps its configuration.
- A version HAProxy rejects is not applied again: the agent asks for a version different from
  it. A version that was valid but failed to start or reload is retried with a backoff.
- An outcome the server could not be told is reported again once it can.
- The bearer token is sent in the Authorization header only; it is never logged.

The agent owns its HAProxy: `run()` stops it when it returns.
"""

from __future__ import annotations

import logging
import random
import socket
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from .. import __version__
from ..client import tls_context
from .bundle import Bundle
from .manager import ApplyMode, ApplyResult, HAProxyManager

log = logging.getLogger(__name__)

API_PREFIX = "/v1"


class ServerProblem(Exception):
    """The control plane could not be reached or did not answer as expected; `status` is the
    HTTP status it answered with, if it answered."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Fetched:
    """A bundle as the server sent it, with the revision that produced it."""

    revision: int
    bundle: Bundle


def check_server_url(url: str) -> str:
    """`url` without a trailing slash, or ValueError saying what is wrong with it."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise ValueError(f"--server {url!r}: {exc}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError(f"--server {url!r}: expected http://HOST[:PORT] or https://HOST[:PORT]")
    if parsed.query or parsed.fragment:
        raise ValueError(f"--server {url!r}: no query or fragment expected")
    return url.rstrip("/")


class Backoff:
    """Delays that double from `initial` up to `maximum`, each drawn from [delay/2, delay]."""

    def __init__(
        self,
        initial: float = 0.2,
        maximum: float = 10.0,
        rng: random.Random | None = None,
    ) -> None:
        self.initial = initial
        self.maximum = maximum
        self.attempts = 0
        self._rng = rng or random.Random()

    def next(self) -> float:
        """The delay before the next attempt."""
        ceiling = min(self.maximum, self.initial * 2.0 ** min(self.attempts, 32))
        self.attempts += 1
        return ceiling * (0.5 + 0.5 * self._rng.random())

    def reset(self) -> None:
        """The last attempt succeeded: start again from `initial`."""
        self.attempts = 0


class BundleClient:
    """The agent's side of the HTTP exchange with the control plane."""

    def __init__(
        self,
        server_url: str,
        group: str,
        instance_id: str,
        token: str | None = None,
        connect_timeout: float = 5.0,
        ca: str | None = None,
    ) -> None:
        """`ca` is the CA file an https server's certificate is verified against (default:
        the system's CAs)."""
        self.group = group
        self.instance_id = instance_id
        headers = {"User-Agent": f"controlplane-haproxy-agent/{__version__}"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._base = f"{check_server_url(server_url)}{API_PREFIX}/haproxy/{quote(group, safe='')}"
        self._connect_timeout = connect_timeout
        self._http = httpx.Client(
            headers=headers, timeout=self._timeout(10.0), verify=tls_context(ca)
        )

    def fetch(self, known: str | None, wait: float) -> Fetched | None:
        """The group's bundle when it differs from `known`; None when it is still `known` after
        `wait` seconds. ServerProblem when there is no usable answer."""
        params: dict[str, str] = {"instance": self.instance_id}
        if known is not None:
            params["known"] = known
            params["wait"] = f"{max(0.0, wait):.3f}"
        response = self._request("GET", "/bundle", params=params, timeout=self._timeout(wait))
        if response.status_code == 304:
            return None
        if response.status_code == 404:
            raise ServerProblem(f"the control plane has no bundle for group {self.group!r}", 404)
        self._expect(response, 200)
        try:
            data = response.json()
            bundle = Bundle.of(data["cfg"], data["maps"], data["files"])
            revision = int(data["revision"])
            claimed = data["version"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ServerProblem(f"malformed bundle answer: {exc!r}") from None
        if claimed != bundle.version:
            raise ServerProblem(
                f"bundle content does not match its version ({claimed} != {bundle.version})"
            )
        return Fetched(revision, bundle)

    def report(self, result: ApplyResult, revision: int | None) -> None:
        """Tell the control plane what applying a version did."""
        body: dict[str, Any] = {**asdict(result), "instance_id": self.instance_id}
        body["revision"] = revision
        response = self._request("POST", "/status", json=body, timeout=self._timeout(0.0))
        self._expect(response, 204)

    def close(self) -> None:
        self._http.close()

    def _timeout(self, wait: float) -> httpx.Timeout:
        return httpx.Timeout(10.0 + wait, connect=self._connect_timeout)

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._http.request(method, self._base + path, **kwargs)
        except httpx.HTTPError as exc:
            raise ServerProblem(f"{type(exc).__name__}: {exc}") from None

    @staticmethod
    def _expect(response: httpx.Response, status: int) -> None:
        if response.status_code != status:
            text = response.text[:300].strip()
            raise ServerProblem(
                f"{response.request.method} {response.request.url.path} answered "
                f"{response.status_code}: {text}",
                response.status_code,
            )


class HAProxyAgent:
    """Follows one node group's bundle from the control plane and keeps a local HAProxy on it.

    `ca` is the CA file that signed an https server's certificate (default: the system's CAs);
    `poll_wait` is how long each request waits for a change (also the longest `stop()` may take
    to be noticed while the server is quiet); `backoff_initial` and `backoff_max` bound the
    delays between attempts while the server is unreachable or a start or reload failed.
    """

    def __init__(
        self,
        server_url: str,
        group: str,
        workdir: str | Path,
        haproxy_bin: str = "haproxy",
        instance_id: str | None = None,
        token: str | None = None,
        *,
        ca: str | None = None,
        poll_wait: float = 30.0,
        backoff_initial: float = 0.2,
        backoff_max: float = 10.0,
    ) -> None:
        if not group:
            raise ValueError("the node group must not be empty")
        self.group = group
        workdir = Path(workdir).resolve()
        self.instance_id = instance_id or f"{socket.gethostname()}:{workdir}"
        self.manager = HAProxyManager(
            workdir, haproxy_bin=haproxy_bin, instance_id=self.instance_id, group=group
        )
        self.client = BundleClient(server_url, group, self.instance_id, token, ca=ca)
        self.poll_wait = min(poll_wait, 60.0)  # the server's limit
        self._backoff = Backoff(backoff_initial, backoff_max)
        self._retry_backoff = Backoff(max(backoff_initial, 1.0), max(backoff_max, 30.0))
        self._stop = threading.Event()
        self._attempted: str | None = None
        self._retry_at: float | None = None
        self._unreported: tuple[ApplyResult, int | None] | None = None
        self._failing_since: float | None = None

    def __repr__(self) -> str:
        return f"HAProxyAgent(group={self.group!r}, instance_id={self.instance_id!r})"

    @property
    def version(self) -> str | None:
        """The version HAProxy runs, None before the first successful apply."""
        current = self.manager.current
        return current.version if current is not None else None

    def run(self) -> None:
        """Follow the group until `stop()`; stops HAProxy on the way out."""
        log.info("agent %s following group %s", self.instance_id, self.group)
        if self.manager.adopt():
            log.info("agent %s adopted the running HAProxy", self.instance_id)
        try:
            while not self._stop.is_set():
                self._step()
        finally:
            self.client.close()
            self.manager.stop()
            log.info("agent %s stopped", self.instance_id)

    def stop(self) -> None:
        """Ask `run()` to return; it does after the request in flight (at most `poll_wait`)."""
        self._stop.set()

    # -- one round ----------------------------------------------------------------------------

    def _step(self) -> None:
        try:
            self._flush_report()
            fetched = self.client.fetch(self._known(), self._wait())
        except ServerProblem as exc:
            self._trouble(exc)
            return
        self._recovered()
        if fetched is None or self._stop.is_set():
            return
        self._apply(fetched)
        try:
            self._flush_report()
        except ServerProblem as exc:
            self._trouble(exc)

    def _known(self) -> str | None:
        """The version to wait past: the last one tried, unless a failed one is due a retry."""
        if self._retry_at is not None and time.monotonic() >= self._retry_at:
            return None
        return self._attempted

    def _wait(self) -> float:
        if self._retry_at is None:
            return self.poll_wait
        return min(self.poll_wait, max(0.0, self._retry_at - time.monotonic()))

    def _apply(self, fetched: Fetched) -> None:
        try:
            result = self.manager.apply(fetched.bundle)
        except Exception as exc:  # e.g. the haproxy binary vanished: report it, retry later
            log.exception("applying version %s failed", fetched.bundle.version)
            mode: ApplyMode = "reload" if self.manager.running else "start"
            error = f"{type(exc).__name__}: {exc}"
            result = ApplyResult(
                fetched.bundle.version, False, mode, "the manager failed", 0.0, error
            )
        self._attempted = result.version
        if result.ok:
            self._retry_at = None
            self._retry_backoff.reset()
            log.info(
                "applied version %s (revision %d): %s, %s in %.3fs",
                result.version,
                fetched.revision,
                result.mode,
                result.reason,
                result.duration,
            )
        elif result.mode == "rejected":
            self._retry_at = None
            log.warning(
                "version %s (revision %d) rejected, keeping the running configuration: %s",
                result.version,
                fetched.revision,
                result.error,
            )
        else:
            delay = self._retry_backoff.next()
            self._retry_at = time.monotonic() + delay
            log.error(
                "version %s (revision %d) failed (%s: %s); retrying in %.1fs",
                result.version,
                fetched.revision,
                result.mode,
                result.error,
                delay,
            )
        self._unreported = (result, fetched.revision)

    def _flush_report(self) -> None:
        if self._unreported is None:
            return
        result, revision = self._unreported
        try:
            self.client.report(result, revision)
        except ServerProblem as exc:
            if exc.status in (400, 422):  # the server refuses it; sending it again won't help
                log.error("status report refused: %s", exc)
                self._unreported = None
                return
            raise
        self._unreported = None

    def _trouble(self, problem: ServerProblem) -> None:
        delay = self._backoff.next()
        if self._failing_since is None:
            self._failing_since = time.monotonic()
            log.warning("control plane: %s; HAProxy keeps running as it is", problem)
        else:
            log.debug("control plane still failing: %s", problem)
        self._stop.wait(delay)

    def _recovered(self) -> None:
        if self._failing_since is not None:
            log.info(
                "control plane reachable again after %.1fs", time.monotonic() - self._failing_since
            )
            self._failing_since = None
        self._backoff.reset()
