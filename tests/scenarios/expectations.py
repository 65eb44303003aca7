"""Comparing what a client observed with what a step expects; every mismatch in words."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Mapping

from tests.harness.clients import Headers

from .format import BodyContains, Condition, Expect, HeaderExpectation
from .sending import Observation

Lookup = Callable[[str], str | None]


def mismatches(expect: Expect, observations: list[Observation]) -> list[str]:
    """How the observations differ from the expectation; empty when they agree.

    Per-request differences are grouped: "3 of 20 requests: expected ..., saw ...". With
    `admitted`, the per-request fields are about the requests a backend answered, `refused`
    about the others.
    """
    total = len(observations)
    found: list[str] = []
    admitted = observations
    if expect.admitted is not None:
        admitted = [o for o in observations if o.backend is not None]
        refused = [o for o in observations if o.backend is None]
        if not expect.admitted.holds(len(admitted)):
            statuses = dict(sorted(Counter(o.status for o in observations).items(), key=str))
            found.append(
                f"expected {expect.admitted} of {total} requests admitted (answered by a "
                f"backend), saw {len(admitted)} (statuses: {statuses})"
            )
        if expect.refused is not None:
            found += _per_request(expect.refused, refused, total, "refused")
    found += _per_request(expect, admitted, total, "admitted" if expect.admitted else "")
    if expect.error is None:
        found += list(_aggregate_mismatches(expect, admitted))
    return found


def _per_request(
    expect: Expect, observations: list[Observation], total: int, which: str
) -> list[str]:
    """Per-request mismatches, grouped; `which` names the requests (`admitted`, `refused`)."""
    per_request: Counter[str] = Counter()
    for observation in observations:
        per_request.update(set(_request_mismatches(expect, observation)))
    label = f" ({which})" if which else ""
    return [f"{n} of {total} requests{label}: {text}" for text, n in per_request.most_common()]


def _request_mismatches(expect: Expect, seen: Observation) -> Iterator[str]:
    if expect.error is not None:
        if seen.error is None:
            yield f"expected an error containing {expect.error!r}, saw {seen.summary()}"
        elif expect.error not in seen.error:
            yield f"expected an error containing {expect.error!r}, saw {seen.error!r}"
        return
    if seen.error is not None:
        yield f"expected an answer, saw {seen.error}"
        return
    if expect.status is not None and seen.status != expect.status:
        yield f"expected status {expect.status}, saw {seen.summary()}{_body_hint(seen)}"
    if expect.backend is not None and seen.backend != expect.backend:
        yield f"expected backend {expect.backend!r}, saw {seen.summary()}{_body_hint(seen)}"
    if expect.backend_in is not None and seen.backend not in expect.backend_in:
        yield f"expected a backend in {expect.backend_in}, saw {seen.summary()}"
    if expect.upgraded is not None and seen.upgraded != expect.upgraded:
        yield f"expected upgraded {expect.upgraded}, saw {seen.summary()}"
    if expect.headers:
        yield from _headers_mismatches("response header", expect.headers, _response(seen.headers))
    if expect.upstream_headers or expect.upstream_path is not None:
        if seen.upstream is None:
            yield f"expected a backend's report of the request, saw {seen.summary()}"
        else:
            lookup = _upstream(seen.upstream.get("headers", {}))
            yield from _headers_mismatches("upstream header", expect.upstream_headers, lookup)
            path = seen.upstream.get("path")
            if expect.upstream_path is not None and path != expect.upstream_path:
                yield f"expected upstream path {expect.upstream_path!r}, saw {path!r}"
    if expect.body is not None:
        yield from _body_mismatches(expect.body, seen.body or "")
    if expect.certificate is not None:
        cert = seen.certificate
        names = {cert.common_name, *cert.dns_names} if cert else set()
        if expect.certificate not in names:
            shown = f"{cert.common_name!r} {list(cert.dns_names)}" if cert else "none"
            yield f"expected a certificate for {expect.certificate!r}, was shown {shown}"
    if expect.proxy_source is not None:
        source = seen.proxy_source
        wanted = expect.proxy_source
        got = source if ":" in wanted or source is None else source.rsplit(":", 1)[0]
        if got != wanted:
            yield f"expected the backend to read PROXY source {wanted!r}, it read {source!r}"


def _body_hint(seen: Observation) -> str:
    if seen.backend is None and seen.body:
        return f" (body {seen.body[:120]!r})"
    return ""


def _response(headers: Headers | None) -> Lookup:
    return lambda name: headers.get(name) if headers is not None else None


def _upstream(headers: Mapping[str, str]) -> Lookup:
    return lambda name: headers.get(name.lower())


def _headers_mismatches(
    what: str, expected: Mapping[str, HeaderExpectation], lookup: Lookup
) -> Iterator[str]:
    for name, wanted in expected.items():
        value = lookup(name)
        if wanted is None:
            if value is not None:
                yield f"expected {what} {name} absent, saw {value!r}"
        elif isinstance(wanted, str):
            if value is None or _list_items(value) != _list_items(wanted):
                yield f"expected {what} {name}: {wanted!r}, saw {value!r}"
        elif isinstance(wanted, Condition):
            if wanted.present is not None and (value is not None) != wanted.present:
                state = "present" if wanted.present else "absent"
                yield f"expected {what} {name} {state}, saw {value!r}"
            if wanted.contains is not None and (value is None or wanted.contains not in value):
                yield f"expected {what} {name} containing {wanted.contains!r}, saw {value!r}"


def _list_items(value: str) -> list[str]:
    """A header value as the HTTP list it is: whitespace around commas does not count."""
    return [item.strip() for item in value.split(",")]


def _body_mismatches(expected: str | BodyContains, body: str) -> Iterator[str]:
    if isinstance(expected, BodyContains):
        if expected.contains not in body:
            yield f"expected a body containing {expected.contains!r}, saw {body[:200]!r}"
    elif body != expected:
        yield f"expected body {expected!r}, saw {body[:200]!r}"


def _aggregate_mismatches(expect: Expect, observations: list[Observation]) -> Iterator[str]:
    if expect.upstream_connections is not None:
        peaks = [o.upstream.get("peak_connections", 0) for o in observations if o.upstream]
        peak = max(peaks, default=0)
        if not expect.upstream_connections.holds(peak):
            yield (
                f"expected the backends to have {expect.upstream_connections} connections open "
                f"at most at once, they report {peak}"
            )
    answered = Counter(o.backend for o in observations)
    if expect.sticky and len(answered) > 1:
        yield f"expected one backend for all requests (sticky), saw {dict(answered)}"
    if expect.backends_seen is not None:
        missing = [name for name in expect.backends_seen if answered[name] == 0]
        if missing:
            yield f"expected each of {expect.backends_seen} to answer, saw {dict(answered)}"
    if expect.shares is not None:
        total = len(observations)
        for name, share in expect.shares.items():
            seen = answered[name] / total
            if abs(seen - share) > expect.tolerance:
                yield (
                    f"expected backend {name!r} to answer {share:.3f} ± {expect.tolerance} "
                    f"of {total} requests, saw {seen:.3f} (all: {dict(answered)})"
                )
