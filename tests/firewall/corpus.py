"""The firewall corpus (`corpus/*.jsonl`): attack and benign requests, and replaying them through
a proxy that runs `examples/firewall.yaml` to read each verdict.

Each line is one request: `id`, `class` (`sqli-query`, `xss-json`, `scanner`, `browser-page`,
`api-json-post`, ...), `method`, `path` (as sent), `headers`, optionally `body`. Attacks are in
`attacks.jsonl`, benign requests from browser and API traffic in `benign.jsonl`.
"""

from __future__ import annotations

import copy
import http.client
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from controlplane.model import Config, parse_config, parse_text
from controlplane.model.firewall import BLOCKED_BODY
from tests.harness.clients import HttpSession

CORPUS = Path(__file__).parent / "corpus"
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "firewall.yaml"
HOST = "shop.example.com"
Verdict = Literal["blocked", "passed", "refused"]


@dataclass(frozen=True)
class CorpusRequest:
    id: str
    kind: str
    attack: bool
    method: str
    path: str
    headers: dict[str, str]
    body: bytes | None


def corpus() -> list[CorpusRequest]:
    """Every request of the corpus, attacks first."""
    found = []
    for name, attack in (("attacks.jsonl", True), ("benign.jsonl", False)):
        for line in (CORPUS / name).read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            body = row.get("body")
            found.append(
                CorpusRequest(
                    row["id"],
                    row["class"],
                    attack,
                    row["method"],
                    row["path"],
                    row["headers"],
                    body.encode() if body is not None else None,
                )
            )
    return found


def _crs_blocks(data: Any) -> Iterator[dict[str, Any]]:
    if isinstance(data, dict):
        for key, value in data.items():
            if key == "crs" and isinstance(value, dict):
                yield value
            else:
                yield from _crs_blocks(value)
    elif isinstance(data, list):
        for item in data:
            yield from _crs_blocks(item)


def example_config(
    listen: Mapping[str, str], app: str, verdicts: str, crs: bool = True, rules: bool = True
) -> Config:
    """`examples/firewall.yaml` with its listeners at `listen` (by name), its app cluster at
    `app` and its crs at the verdict service `verdicts`; without `crs` or `rules`, the
    firewall keeps only the other layer."""
    data = copy.deepcopy(parse_text(EXAMPLE.read_text(), str(EXAMPLE)))
    for listener in data["listeners"]:
        listener["address"] = listen[listener["name"]]
    for cluster in data["clusters"]:
        if cluster["name"] == "app":
            cluster["endpoints"] = [{"address": app}]
    for block in _crs_blocks(data):
        block["service"] = verdicts
    for listener in data["listeners"]:
        firewalls = [listener.get("firewall")] + [
            route.get("firewall")
            for vh in listener.get("virtual_hosts", [])
            for route in vh["routes"]
        ]
        for firewall in firewalls:
            if not firewall or firewall.get("enabled") is False:
                continue
            if not crs:
                firewall.pop("crs", None)
            if not rules:
                for field in list(firewall):
                    if field not in ("crs", "mode", "enabled"):
                        firewall.pop(field)
    return parse_config(data)


def verdict_of(port: int, request: CorpusRequest) -> Verdict:
    """What a proxy on `port` did with `request`: blocked by the firewall (403 and its body),
    passed to the backend (any other answer), or refused without an answer."""
    with HttpSession("127.0.0.1", port, host_header=HOST, timeout=10) as session:
        try:
            response = session.request(request.path, request.method, request.headers, request.body)
        except (OSError, http.client.HTTPException):
            return "refused"
    if response.status == 403 and response.text == BLOCKED_BODY:
        return "blocked"
    return "passed"


@dataclass
class Rates:
    """Detection and false-positive rates of one proxy over the corpus."""

    attacks: int = 0
    detected: int = 0
    benign: int = 0
    false_positives: int = 0

    def add(self, request: CorpusRequest, verdict: Verdict) -> None:
        if request.attack:
            self.attacks += 1
            self.detected += verdict != "passed"
        else:
            self.benign += 1
            self.false_positives += verdict != "passed"

    def __str__(self) -> str:
        return (
            f"detected {self.detected}/{self.attacks} attacks "
            f"({100 * self.detected / max(self.attacks, 1):.1f}%), "
            f"false positives {self.false_positives}/{self.benign} "
            f"({100 * self.false_positives / max(self.benign, 1):.1f}%)"
        )
