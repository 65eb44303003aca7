"""Requests whose HTTP/1.x framing the two proxies' parsers could read differently, sent byte
for byte to a real Envoy and a real HAProxy running the same config: each gets the same status
from both, with and without the firewall's `protocol` checks. (Raw requests: no client library
sends them. Not scenarios: `explain` takes a missing Host as any host.)"""

from __future__ import annotations

import http.client
import socket
from collections.abc import Iterator

import pytest

from controlplane.model import Config, parse_config
from tests.harness.backends import BackendFleet, BackendSpec
from tests.harness.ports import free_port
from tests.harness.target import Target
from tests.harness.targets_envoy import EnvoyTarget
from tests.harness.targets_haproxy import HAProxyTarget

pytestmark = [pytest.mark.envoy, pytest.mark.haproxy]
HOST = "Host: shop.example.com\r\n"
CLOSE = "Connection: close\r\n"
CASES = {
    # name: (request, status without the firewall, status with `protocol: true`)
    "well formed": (f"GET /ok HTTP/1.1\r\n{HOST}{CLOSE}\r\n", 200, 200),
    "HTTP/1.0 with Host": (f"GET /ok HTTP/1.0\r\n{HOST}\r\n", 200, 200),
    "no Host": (f"GET /ok HTTP/1.1\r\n{CLOSE}\r\n", 400, 400),
    "HTTP/1.0 without Host": ("GET /ok HTTP/1.0\r\n\r\n", 400, 400),
    "an empty Host": (f"GET /ok HTTP/1.1\r\nHost:\r\n{CLOSE}\r\n", 200, 403),
    "an invalid percent-escape": (f"GET /a%zz HTTP/1.1\r\n{HOST}{CLOSE}\r\n", 200, 403),
    "different Content-Length values": (
        f"POST /ok HTTP/1.1\r\n{HOST}Content-Length: 5\r\nContent-Length: 6\r\n{CLOSE}\r\nhello!",
        400,
        400,
    ),
    "several Host headers": (
        f"GET /ok HTTP/1.1\r\n{HOST}Host: evil.test\r\n{CLOSE}\r\n",
        400,
        400,
    ),
    "a Host holding a comma": (
        f"GET /ok HTTP/1.1\r\nHost: shop.example.com,evil.test\r\n{CLOSE}\r\n",
        400,
        400,
    ),
    "Content-Length beside chunked": (
        f"POST /ok HTTP/1.1\r\n{HOST}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n{CLOSE}"
        "\r\n5\r\nhello\r\n0\r\n\r\n",
        200,
        200,
    ),
}


def _config(plain: int, checked: int, app: str) -> Config:
    def listener(name: str, port: int, firewall: dict[str, object] | None) -> dict[str, object]:
        found: dict[str, object] = {
            "name": name,
            "address": f"127.0.0.1:{port}",
            "protocol": "http",
            "virtual_hosts": [
                {"name": "all", "domains": ["*"], "routes": [{"backends": [{"cluster": "app"}]}]}
            ],
        }
        if firewall is not None:
            found["firewall"] = firewall
        return found

    return parse_config(
        {
            "listeners": [
                listener("plain", plain, None),
                listener("checked", checked, {"protocol": True}),
            ],
            "clusters": [{"name": "app", "endpoints": [{"address": app}]}],
        }
    )


@pytest.fixture(scope="module")
def ports() -> Iterator[dict[str, tuple[int, int]]]:
    """Per proxy, the ports of its listener without and with the protocol checks."""
    with BackendFleet() as fleet:
        app = fleet.start(BackendSpec(name="app")).address
        started: list[Target] = []
        found = {}
        try:
            for target in (EnvoyTarget("sotw"), HAProxyTarget()):
                target.start()
                started.append(target)
                plain, checked = free_port(), free_port()
                target.apply(_config(plain, checked, app), "default")
                found[target.name] = (plain, checked)
            yield found
        finally:
            for target in started:
                target.stop()


def _status(port: int, request: str) -> int | str:
    """The status a proxy answers `request` with on a new connection, or how it refused."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(request.encode())
            response = http.client.HTTPResponse(sock)
            response.begin()
            return response.status
    except (OSError, http.client.HTTPException) as exc:
        return type(exc).__name__


@pytest.mark.parametrize("case", CASES)
def test_both_proxies_answer_a_request_of_doubtful_framing_alike(
    ports: dict[str, tuple[int, int]], case: str
) -> None:
    request, plain, checked = CASES[case]
    seen = {
        name: (_status(plain_port, request), _status(checked_port, request))
        for name, (plain_port, checked_port) in ports.items()
    }
    print(f"{case}: {seen}")
    assert set(seen.values()) == {(plain, checked)}, seen
