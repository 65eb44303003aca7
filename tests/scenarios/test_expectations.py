"""Expectations compared with observations, without any proxy."""

from __future__ import annotations

from typing import Any

from tests.harness.clients import Headers

from .expectations import mismatches
from .format import Expect
from .sending import Observation


def answer(backend: str, status: int = 200, **fields: Any) -> Observation:
    return Observation(backend=backend, status=status, **fields)


def test_agreeing_observations_have_no_mismatch() -> None:
    seen = [answer("a", headers=Headers([("x-multi", "one"), ("X-Multi", "two")]))] * 3
    expect = Expect(backend="a", status=200, headers={"x-multi": "one,two", "x-gone": None})
    assert mismatches(expect, seen) == []


def test_per_request_mismatches_are_counted() -> None:
    found = mismatches(Expect(backend="a"), [answer("a"), answer("b"), answer("b")])
    assert found == ["2 of 3 requests: expected backend 'a', saw status 200, backend 'b'"]


def test_failed_requests_are_reported_unless_an_error_is_expected() -> None:
    failed = Observation(error="ConnectionResetError: reset")
    assert mismatches(Expect(), [failed]) == [
        "1 of 1 requests: expected an answer, saw ConnectionResetError: reset"
    ]
    assert mismatches(Expect(error="reset"), [failed]) == []
    assert mismatches(Expect(error="reset"), [answer("a")]) == [
        "1 of 1 requests: expected an error containing 'reset', saw status 200, backend 'a'"
    ]


def test_upstream_headers_and_path_come_from_the_backend_report() -> None:
    report = {"backend": "a", "path": "/v2/x", "headers": {"x-set": "proxy", "x-id": "7"}}
    expect = Expect.model_validate(
        {
            "upstream_path": "/v2/x",
            "upstream_headers": {"X-Set": "proxy", "x-id": {"present": True}, "x-no": None},
        }
    )
    assert mismatches(expect, [answer("a", upstream=report)]) == []
    assert mismatches(expect, [answer("a")]) == [
        "1 of 1 requests: expected a backend's report of the request, saw status 200, backend 'a'"
    ]


def test_shares_sticky_and_backends_seen_are_about_all_requests() -> None:
    seen = [answer("a")] * 88 + [answer("b")] * 12
    assert mismatches(Expect(shares={"a": 0.9, "b": 0.1}, tolerance=0.03), seen) == []
    assert (
        "expected backend 'b' to answer 0.100 ± 0.01"
        in mismatches(Expect(shares={"b": 0.1}, tolerance=0.01), seen)[0]
    )
    assert mismatches(Expect(sticky=True), seen)[0].startswith("expected one backend")
    assert mismatches(Expect(backends_seen=["a", "b"]), seen) == []
    assert mismatches(Expect(backends_seen=["c"]), seen)[0].startswith("expected each of")


def test_proxy_source_compares_the_ip_unless_a_port_is_given() -> None:
    seen = [answer("t", proxy_source="127.0.0.1:5000")]
    assert mismatches(Expect(proxy_source="127.0.0.1"), seen) == []
    assert mismatches(Expect(proxy_source="127.0.0.1:5000"), seen) == []
    assert mismatches(Expect(proxy_source="127.0.0.1:5001"), seen) != []
