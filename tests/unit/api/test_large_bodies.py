"""Large request bodies: a size limit answered 413 before anything is parsed, and parsing
and validation away from the event loop, so the rest of the API keeps answering meanwhile."""

from __future__ import annotations

import socket
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from controlplane.api import InMemoryStatus, create_app
from controlplane.serve import ServeOptions, start_server
from controlplane.store import SQLiteStore
from tests.harness.loop_thread import LoopThread

from .conftest import ADMIN_TOKEN, TOKENS, TestClient, base_config, bearer, state
from .served import served

LIMIT = 1000


def padded_config(size: int) -> bytes:
    """A valid JSON config of `size` bytes (whitespace fills it up)."""
    text = httpx.Request("PUT", "/", json=base_config()).content
    return text + b" " * (size - len(text))


def test_a_body_over_the_limit_is_413_and_changes_nothing(seeded: SQLiteStore) -> None:
    app = create_app(seeded, tokens=TOKENS, max_body_bytes=LIMIT)
    before = state(seeded)
    with TestClient(app, headers=bearer(ADMIN_TOKEN)) as client:
        json_type = {"Content-Type": "application/json"}
        fits = client.put("/v1/config", content=padded_config(LIMIT), headers=json_type)
        assert fits.status_code == 200, fits.text

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it is read
            body = padded_config(3 * LIMIT)
            for i in range(0, len(body), 100):
                yield body[i : i + 100]

        for body in (lambda: padded_config(LIMIT + 1), chunks):
            for method, url in (
                ("PUT", "/v1/config"),
                ("POST", "/v1/config:validate"),
                ("POST", "/v1/clusters"),
                ("PATCH", "/v1/clusters/api"),
            ):
                reply = client.request(
                    method, url, content=body(), headers={"Content-Type": "application/json"}
                )
                assert reply.status_code == 413, (method, url, reply.text)
                message = f"the body is larger than {LIMIT} bytes"
                assert reply.json() == {
                    "error": message,
                    "issues": [{"path": "body", "message": message}],
                }
    assert state(seeded) == before


def raw_request(url: str, head: str) -> str:
    """Send only a request's head to a real server; what it answers, as text."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(head.encode())
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = conn.recv(65536)
            if not chunk:
                break
            answer += chunk
    return answer.decode()


def test_the_default_limit_is_16_mib_and_a_declared_length_is_refused_unread(
    seeded: SQLiteStore,
) -> None:
    app = create_app(seeded, tokens=TOKENS)
    with served(app) as url:
        for length in (16 * 1024 * 1024 + 1, 10**12):
            answer = raw_request(
                url,
                f"PUT /v1/config HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Authorization: Bearer {ADMIN_TOKEN}\r\nContent-Type: application/yaml\r\n"
                f"Content-Length: {length}\r\n\r\n",
            )
            assert answer.startswith("HTTP/1.1 413 "), answer
            assert "the body is larger than 16777216 bytes" in answer
    assert state(seeded) == (1, seeded.head().content_hash)  # type: ignore[union-attr]


def test_serve_takes_its_limit_from_the_options(tmp_path: Path) -> None:
    thread = LoopThread("serve")
    options = ServeOptions(
        db=tmp_path / "s.db",
        api="127.0.0.1:0",
        xds="127.0.0.1:0",
        insecure_local=True,
        max_body_bytes=LIMIT,
    )
    try:
        running = thread.run(start_server(options))
        try:
            answer = raw_request(
                running.api.url,
                "PUT /v1/config HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json"
                f"\r\nContent-Length: {LIMIT + 1}\r\n\r\n",
            )
            assert answer.startswith("HTTP/1.1 413 "), answer
        finally:
            thread.run(running.stop())
    finally:
        thread.close()


def big_yaml(clusters: int) -> bytes:
    """A valid config with one route and four endpoints per cluster, as block YAML."""
    routes = "".join(
        f"""          - name: r{i}
            match:
              path: {{prefix: /s{i}}}
            backends:
              - cluster: c{i}
"""
        for i in range(clusters)
    )
    endpoints = "".join(
        f"""  - name: c{i}
    endpoints:
"""
        + "".join(f"      - address: 127.0.0.{j + 1}:{10000 + i}\n" for j in range(4))
        for i in range(clusters)
    )
    return f"""listeners:
  - name: web
    address: 127.0.0.1:10000
    protocol: http
    virtual_hosts:
      - name: site
        domains: ["*"]
        routes:
{routes}clusters:
{endpoints}""".encode()


class StatusProbe:
    """Asks `GET /v1/status` back to back from a thread, noting when each was asked and
    answered."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.answers: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> StatusProbe:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(60)

    def _run(self) -> None:
        with httpx.Client(headers=bearer(ADMIN_TOKEN), timeout=120) as client:
            while not self._stop.is_set():
                asked = time.monotonic()
                client.get(f"{self.url}/v1/status").raise_for_status()
                self.answers.append((asked, time.monotonic()))
                time.sleep(0.005)

    def answered(self, count: int) -> None:
        """Return once `count` requests were answered."""
        deadline = time.monotonic() + 30
        while len(self.answers) < count and time.monotonic() < deadline:
            time.sleep(0.005)

    def between(self, start: float, end: float) -> list[float]:
        """The latencies of the requests asked after `start` and answered before `end`."""
        return [done - asked for asked, done in self.answers if asked >= start and done <= end]


def test_status_answers_while_a_multi_megabyte_body_is_parsed_and_validated(
    store: SQLiteStore, status: InMemoryStatus
) -> None:
    text = big_yaml(12_000)
    broken = text + b"clusters: [\n"  # valid YAML up to its last line
    app = create_app(store, status=status, tokens=TOKENS)
    with served(app) as url, httpx.Client(headers=bearer(ADMIN_TOKEN), timeout=300) as client:
        for what, method, path, body, expected in (
            ("a valid config", "PUT", "/v1/config", text, 200),
            ("YAML broken on its last line", "POST", "/v1/config:validate", broken, 422),
        ):
            sent_at = [0.0]  # when the last byte of the body went out

            def upload(body: bytes = body, sent_at: list[float] = sent_at) -> Iterator[bytes]:
                step = 1 << 20
                for i in range(0, len(body), step):
                    yield body[i : i + step]
                sent_at[0] = time.monotonic()

            with StatusProbe(url) as probe:
                probe.answered(5)
                began = time.monotonic()
                reply = client.request(
                    method,
                    f"{url}{path}",
                    content=upload(),
                    headers={"Content-Type": "application/yaml"},
                )
                answered = time.monotonic()
            assert reply.status_code == expected, reply.text[:300]
            assert sent_at[0] > 0
            during = probe.between(sent_at[0], answered)
            idle = [done - asked for asked, done in probe.answers if done < began]
            assert idle
            print(
                f"{method} {path} with {what} ({len(body) / 1e6:.1f} MB): {answered - began:.2f} s;"
                f" /v1/status answered {len(during)} times once the body was sent, median "
                f"{statistics.median(during) * 1000 if during else float('nan'):.1f} ms, max "
                f"{max(during, default=float('nan')) * 1000:.1f} ms"
                f" (before the write: median {statistics.median(idle) * 1000:.1f} ms)"
            )
            assert during, f"/v1/status did not answer while the server read {what}"
    assert store.head().number == 1  # type: ignore[union-attr]
