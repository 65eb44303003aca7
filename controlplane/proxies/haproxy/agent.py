"""The HAProxy agent: keeps a HAProxy beside it on its node group's bundle from the control plane.

The agent long-polls `GET <server>/v1/haproxy/<group>/bundle` (see
`controlplane.feed.http`), saying which version it runs, applies each new bundle with a
`HAProxyManager` and reports the outcome (`POST .../status`: an ACK, or a NACK with HAProxy's
own message). The manager supervises HAProxy; what its supervisor sees (`down`, `restarted`,
`restart failed`) is reported the same way, at once, by a reporting thread that sends every
report in order.

- While the control plane is unreachable (or answers with an error) the agent retries with a
  bounded exponential backoff with jitter, and the running HAProxy keeps its configuration.
  Given several servers (the replicas of one control plane, `--server URL1,URL2`), a request
  that cannot reach one goes to the next at once; the replicas render the same bundle with
  the same content-hash version, so moving to another one changes nothing on HAProxy.
- A version HAProxy rejects is not applied again: the agent asks for a version different from
  it. A version that was valid but failed to start or reload is retried with a backoff.
- A report the server could not be told is sent again once it can (the newest 100 are kept).
- The bearer token is sent in the Authorization header only; it is never logged.

The agent owns its HAProxy: `run()` stops it when it returns.
"""

from __future__ import annotations

import logging
import random
import socket
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from ... import __version__
from ...client import tls_context
from ...haproxy.bundle import Bundle, BundleError
from .manager import HAProxyManager
from .outcomes import ApplyResult, HealthEvent

log = logging.getLogger(__name__)

API_PREFIX = "/v1"
REPORTS_KEPT = 100
"""How many reports wait for a server that cannot be reached; older ones are dropped."""


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


def check_server_urls(text: str) -> list[str]:
    """The comma-separated URLs of `text` (the replicas of one control plane), each checked
    as `check_server_url` does."""
    urls = [check_server_url(item.strip()) for item in text.split(",")]
    return list(dict.fromkeys(urls))


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
    """The agent's side of the HTTP exchange with the control plane: `server_url` names one
    server, or several separated by commas, tried in turn while one cannot be reached."""

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
        path = f"{API_PREFIX}/haproxy/{quote(group, safe='')}"
        self._bases = [url + path for url in check_server_urls(server_url)]
        self._current = 0
        self._connect_timeout = connect_timeout
        self._http = httpx.Client(
            headers=headers, timeout=self._timeout(10.0), verify=tls_context(ca)
        )

    def fetch(self, known: str | None, wait: float, running: str | None = None) -> Fetched | None:
        """The group's bundle when it differs from `known`; None when it is still `known` after
        `wait` seconds. `running` tells the server which version HAProxy runs. ServerProblem
        when there is no usable answer."""
        params: dict[str, str] = {"instance": self.instance_id}
        if running is not None:
            params["running"] = running
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
            bundle, about = Bundle.from_json(response.content, envelope=("revision",))
        except BundleError as exc:
            raise ServerProblem(f"malformed bundle answer: {exc}") from None
        return Fetched(about["revision"], bundle)

    def applied(self, result: ApplyResult, revision: int | None) -> dict[str, Any]:
        """The report of what applying a version did."""
        return {**asdict(result), "instance_id": self.instance_id, "revision": revision}

    def health(self, event: HealthEvent) -> dict[str, Any]:
        """The report of what the supervisor saw of HAProxy."""
        return {
            "instance_id": self.instance_id,
            "event": event.state,
            "at": event.at,
            "version": event.version,
            "ok": event.state == "restarted",
            "mode": "start",
            "reason": event.reason,
            "error": event.error,
            "duration": 0.0,
        }

    def report(self, body: dict[str, Any]) -> None:
        """Send a report (`applied` or `health`) to the control plane."""
        response = self._request("POST", "/status", json=body, timeout=self._timeout(0.0))
        self._expect(response, 204)

    def close(self) -> None:
        self._http.close()

    def _timeout(self, wait: float) -> httpx.Timeout:
        return httpx.Timeout(10.0 + wait, connect=self._connect_timeout)

    @property
    def server(self) -> str:
        """The base URL of the server requests go to now."""
        return self._bases[self._current]

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One request, to the current server, or to the next ones while it cannot be
        reached (the one that answers becomes the current server)."""
        problem: Exception | None = None
        for _ in self._bases:
            try:
                return self._http.request(method, self.server + path, **kwargs)
            except httpx.TransportError as exc:
                problem = exc
                if len(self._bases) > 1:
                    lost = self.server
                    self._current = (self._current + 1) % len(self._bases)
                    log.warning("%s: %s; trying %s", lost, type(exc).__name__, self.server)
            except httpx.HTTPError as exc:
                raise ServerProblem(f"{type(exc).__name__}: {exc}") from None
        raise ServerProblem(f"{type(problem).__name__}: {problem}") from None

    @staticmethod
    def _expect(response: httpx.Response, status: int) -> None:
        if response.status_code != status:
            text = response.text[:300].strip()
            raise ServerProblem(
                f"{response.request.method} {response.request.url.path} answered "
                f"{response.status_code}: {text}",
                response.status_code,
            )


class Reports:
    """The agent's reports on their way to the control plane: sent in order from a thread of
    their own (so a long poll never delays them), each again after a backoff while the server
    cannot be reached; one the server refuses (400, 422) is dropped."""

    def __init__(self, client: BundleClient, backoff: Backoff) -> None:
        self._client = client
        self._backoff = backoff
        self._waiting: deque[dict[str, Any]] = deque(maxlen=REPORTS_KEPT)
        self._changed = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._send_all, name="agent-reports", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def put(self, body: dict[str, Any]) -> None:
        with self._changed:
            self._waiting.append(body)
            self._changed.notify()

    def pending(self) -> int:
        """How many reports have not been delivered yet."""
        with self._changed:
            return len(self._waiting)

    def close(self) -> None:
        """Stop sending (what was not delivered is dropped) and close the client."""
        with self._changed:
            self._closed = True
            self._changed.notify()
        if self._thread.is_alive():
            self._thread.join()
        self._client.close()

    def _send_all(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._closed or bool(self._waiting))
                if self._closed:
                    return
                body = self._waiting[0]
            try:
                self._client.report(body)
            except ServerProblem as exc:
                if exc.status not in (400, 422):
                    with self._changed:
                        self._changed.wait_for(lambda: self._closed, self._backoff.next())
                    continue
                log.error("status report refused: %s", exc)  # sending it again won't help
            self._backoff.reset()
            with self._changed:
                if self._waiting and self._waiting[0] is body:
                    self._waiting.popleft()


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
        self.client = BundleClient(server_url, group, self.instance_id, token, ca=ca)
        self.reports = Reports(
            BundleClient(server_url, group, self.instance_id, token, ca=ca),
            Backoff(backoff_initial, backoff_max),
        )
        self.manager = HAProxyManager(
            workdir,
            haproxy_bin=haproxy_bin,
            instance_id=self.instance_id,
            group=group,
            on_health=lambda event: self.reports.put(self.client.health(event)),
        )
        self.poll_wait = min(poll_wait, 60.0)  # the server's limit
        self._backoff = Backoff(backoff_initial, backoff_max)
        self._retry_backoff = Backoff(max(backoff_initial, 1.0), max(backoff_max, 30.0))
        self._stop = threading.Event()
        self._attempted: str | None = None
        self._retry_at: float | None = None
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
        self.reports.start()
        if self.manager.adopt():
            log.info("agent %s adopted the running HAProxy", self.instance_id)
        try:
            while not self._stop.is_set():
                self._step()
        finally:
            self.manager.stop()
            self.reports.close()
            self.client.close()
            log.info("agent %s stopped", self.instance_id)

    def stop(self) -> None:
        """Ask `run()` to return; it does after the request in flight (at most `poll_wait`)."""
        self._stop.set()

    # -- one round ----------------------------------------------------------------------------

    def _step(self) -> None:
        try:
            fetched = self.client.fetch(self._known(), self._wait(), self.version)
        except ServerProblem as exc:
            self._trouble(exc)
            return
        self._recovered()
        if fetched is None or self._stop.is_set():
            return
        self._apply(fetched)

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
        result = self.manager.apply(fetched.bundle)
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
        self.reports.put(self.client.applied(result, fetched.revision))

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
