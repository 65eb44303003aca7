"""CRS verdicts on the real engine (ModSecurity v3, Debian's OWASP CRS): what a policy text
may say, and verdicts at its paranoia level, threshold and exclusions."""

from __future__ import annotations

import pytest

from controlplane.firewall.policy import crs_policy_text
from controlplane.firewall.verdicts import CrsPolicy, HttpRequest, Inspector, PolicyError, Verdict
from controlplane.model import Firewall

HEADERS = (("host", "shop.example.com"), ("user-agent", "Mozilla/5.0"), ("accept", "*/*"))


@pytest.fixture(scope="module")
def inspector() -> Inspector:
    return Inspector()


def get(uri: str, headers: tuple[tuple[str, str], ...] = HEADERS) -> HttpRequest:
    return HttpRequest("GET", uri, "1.1", headers)


def test_the_compilers_policy_text_is_what_the_service_reads() -> None:
    firewall = Firewall.model_validate(
        {"mode": "detect", "crs": {"paranoia_level": 3, "exclusions": [942190, 920350]}}
    )
    text = crs_policy_text(firewall)
    assert text == "m=d;pl=3;t=5;x=920350,942190"
    assert CrsPolicy.parse(text) == CrsPolicy(False, 3, 5, (920350, 942190))


@pytest.mark.parametrize(
    "text", ["", "m=b", "m=x;pl=1;t=5", "m=b;pl=5;t=5", "m=b;pl=1;t=5;x=0", "m=b;pl=1;t=5;y=1"]
)
def test_other_policy_texts_are_refused(text: str) -> None:
    with pytest.raises(PolicyError):
        CrsPolicy.parse(text)


def test_sql_injection_is_blocked_and_named(inspector: Inspector) -> None:
    verdict = inspector.inspect(get("/items?id=1'%20OR%20'1'='1"), CrsPolicy(True, 1, 5))
    assert verdict.block and 942100 in verdict.rules


def test_benign_requests_pass(inspector: Inspector) -> None:
    verdict = inspector.inspect(get("/items?id=1&sort=name"), CrsPolicy(True, 1, 5))
    assert not verdict.block and verdict.rules == ()


def test_prose_with_union_and_select_passes_at_paranoia_level_1_and_is_refused_from_2(
    inspector: Inspector,
) -> None:
    uri = "/search?q=I+love+union+and+selecting+shoes"
    assert inspector.inspect(get(uri), CrsPolicy(True, 1, 5)) == Verdict(False, ())
    assert inspector.inspect(get(uri), CrsPolicy(True, 2, 5)).rules == (942190,)


def test_an_exclusion_switches_a_rule_off(inspector: Inspector) -> None:
    uri = "/search?q=I+love+union+and+selecting+shoes"
    assert inspector.inspect(get(uri), CrsPolicy(True, 2, 5, (942190,))).rules == ()


def test_the_threshold_decides_the_block(inspector: Inspector) -> None:
    uri = "/search?q=I+love+union+and+selecting+shoes"
    assert inspector.inspect(get(uri), CrsPolicy(True, 2, 5)).block
    assert not inspector.inspect(get(uri), CrsPolicy(True, 2, 1000)).block


def test_a_json_body_is_inspected(inspector: Inspector) -> None:
    request = HttpRequest(
        "POST",
        "/api/orders",
        "1.1",
        (*HEADERS, ("content-type", "application/json"), ("content-length", "44")),
        b'{"item": "1 union select password from users"}',
    )
    assert inspector.inspect(request, CrsPolicy(True, 1, 5)).block
