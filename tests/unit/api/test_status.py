"""/v1/status, /v1/status/wait over the in-memory StatusSource, and /metrics."""

from __future__ import annotations

import asyncio
import threading
import time

from controlplane.api import InMemoryStatus

from .conftest import LOCAL, TestClient


def test_status_lists_every_proxy_with_its_revision_and_last_nack(
    client: TestClient, status: InMemoryStatus
) -> None:
    status.connect("envoy-1", "envoy", "default")
    status.connect("haproxy-1", "haproxy", "default")
    status.ack("envoy-1", 1)
    status.nack("haproxy-1", 1, "backend web has no server")
    reply = client.get("/v1/status")
    assert reply.status_code == 200 and reply.headers["etag"] == '"1"'
    body = reply.json()
    assert body["revision"] == 1
    by_id = {p["id"]: p for p in body["proxies"]}
    assert by_id["envoy-1"]["revision"] == 1 and by_id["envoy-1"]["current"] is True
    assert by_id["envoy-1"]["last_ack_at"] is not None
    assert by_id["haproxy-1"]["revision"] is None and by_id["haproxy-1"]["current"] is False
    assert by_id["haproxy-1"]["last_nack"]["error"] == "backend web has no server"
    assert by_id["haproxy-1"]["kind"] == "haproxy" and by_id["haproxy-1"]["connected"] is True


def test_wait_returns_at_once_when_every_connected_proxy_runs_the_revision(
    client: TestClient, status: InMemoryStatus
) -> None:
    status.connect("e1", "envoy", "default")
    status.connect("h1", "haproxy", "default")
    status.connect("gone", "envoy", "default")
    status.ack("e1", 1)
    status.ack("h1", 2)  # newer counts
    status.disconnect("gone")
    body = client.get("/v1/status/wait", params={"revision": 1, "timeout": 5}).json()
    assert body["converged"] is True
    assert (body["acked"], body["total"]) == (2, 2)
    assert body["waited_seconds"] < 1


def test_wait_returns_when_the_last_proxy_acks(client: TestClient, status: InMemoryStatus) -> None:
    status.connect("e1", "envoy", "default")

    def ack_once_waited_on() -> None:
        deadline = time.monotonic() + 10
        while not status.waiting() and time.monotonic() < deadline:
            time.sleep(0.001)
        status.ack("e1", 1)

    thread = threading.Thread(target=ack_once_waited_on)
    thread.start()
    try:
        body = client.get("/v1/status/wait", params={"timeout": 10}).json()
    finally:
        thread.join()
    assert body["converged"] is True and body["acked"] == 1


def test_wait_stops_early_on_a_nack_and_says_why(
    client: TestClient, status: InMemoryStatus
) -> None:
    status.connect("e1", "envoy", "edge")
    status.connect("h1", "haproxy", "edge")
    status.ack("e1", 1)
    status.nack("h1", 1, "bad config")
    body = client.get("/v1/status/wait", params={"revision": 1, "timeout": 30}).json()
    assert body["converged"] is False and body["waited_seconds"] < 5
    assert body["refused"] == [
        {
            "id": "h1",
            "kind": "haproxy",
            "group": "edge",
            "revision": None,
            "state": "refused",
            "error": "bad config",
            "refused_revision": 1,
        }
    ]


def test_wait_times_out_naming_who_is_pending(client: TestClient, status: InMemoryStatus) -> None:
    status.connect("e1", "envoy", "default")
    body = client.get("/v1/status/wait", params={"timeout": 0.05}).json()
    assert body["converged"] is False
    assert [p["id"] for p in body["pending"]] == ["e1"]


def test_wait_for_a_future_revision_is_404(client: TestClient) -> None:
    assert client.get("/v1/status/wait", params={"revision": 2}).status_code == 404
    assert client.get("/v1/status/wait", params={"timeout": 301}).status_code == 422


def test_in_memory_wait_across_threads() -> None:
    status = InMemoryStatus()
    status.connect("e1", "envoy", "default")

    async def scenario() -> bool:
        waiting = asyncio.create_task(status.wait(3, 10))
        await asyncio.sleep(0)
        await asyncio.to_thread(status.ack, "e1", 2)
        assert not waiting.done() or not waiting.result().converged
        await asyncio.to_thread(status.ack, "e1", 3)
        result = await waiting
        return result.converged

    assert asyncio.run(scenario()) is True


def test_metrics_count_requests_by_route_and_status(client: TestClient) -> None:
    client.get("/v1/clusters/api")
    client.get("/v1/clusters/nope")
    text = client.get("/metrics").text
    assert (
        'controlplane_api_requests_total{method="GET",route="/v1/clusters/{cluster}",'
        'status="200"} 1.0' in text
    )
    assert 'route="/v1/clusters/{cluster}",status="404"} 1.0' in text
    assert "# TYPE controlplane_api_request_seconds histogram" in text
    assert (
        'controlplane_api_request_seconds_bucket{le="+Inf",method="GET",'
        'route="/v1/clusters/{cluster}"} 2.0' in text
    )


def test_metrics_are_valid_prometheus_text(client: TestClient) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    client.get("/v1/clusters/api")
    response = client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    names = {family.name for family in text_string_to_metric_families(response.text)}
    assert {"controlplane_api_requests", "controlplane_api_request_seconds"} <= names


def test_metrics_include_other_sources(seeded: object) -> None:
    from prometheus_client import Counter

    from controlplane.api import create_app

    pushes = Counter("controlplane_xds_pushes", "Pushes.", ("group",), registry=None)
    pushes.labels("edge").inc(3)
    app = create_app(seeded, insecure_local=True, metrics_sources=[pushes])
    with TestClient(app, base_url=LOCAL) as local:
        assert 'controlplane_xds_pushes_total{group="edge"} 3.0' in local.get("/metrics").text
