"""The corpus replayed through real Envoy and real HAProxy running `examples/firewall.yaml`
(address rules, the L7 rules, CRS at paranoia level 1 through one verdict service): both give
the same verdict on every request. The detection and false-positive rates are printed (and
measured per layer by bench/firewall.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.harness.backends import BackendFleet, BackendSpec
from tests.harness.ports import free_port
from tests.harness.targets_envoy import EnvoyTarget
from tests.harness.targets_haproxy import HAProxyTarget
from tests.harness.verdicts import VerdictService

from .corpus import Rates, corpus, example_config, verdict_of

REQUESTS = corpus()


def test_the_corpus_is_large_enough() -> None:
    benign = [r for r in REQUESTS if not r.attack]
    kinds = {r.kind.split("-")[0] for r in REQUESTS if r.attack}
    assert len(benign) >= 200
    assert {"sqli", "xss", "path", "scanner"} <= kinds


@pytest.fixture(scope="module")
def ports() -> Iterator[dict[str, int]]:
    with VerdictService(workers=2) as verdicts, BackendFleet() as fleet:
        app = fleet.start(BackendSpec(name="app")).address
        found = {}
        for target in (EnvoyTarget("sotw"), HAProxyTarget()):
            listen = {"shop": f"127.0.0.1:{free_port()}", "db": f"127.0.0.1:{free_port()}"}
            target.start()
            try:
                target.apply(example_config(listen, app, verdicts.address), "default")
            except BaseException:
                target.stop()
                raise
            found[target.name] = (target, int(listen["shop"].rsplit(":", 1)[1]))
        try:
            yield {name: port for name, (_, port) in found.items()}
        finally:
            for target, _ in found.values():
                target.stop()


@pytest.mark.envoy
@pytest.mark.haproxy
def test_both_proxies_give_the_same_verdict_on_every_request(ports: dict[str, int]) -> None:
    rates = {name: Rates() for name in ports}
    disagreements = []
    for request in REQUESTS:
        verdicts = {name: verdict_of(port, request) for name, port in ports.items()}
        for name, verdict in verdicts.items():
            rates[name].add(request, verdict)
        if len(set(verdicts.values())) > 1:
            disagreements.append(f"{request.id} ({request.kind} {request.path[:60]}): {verdicts}")
    for name, rate in rates.items():
        print(f"{name}: {rate}")
    assert not disagreements, "\n".join(disagreements)
