"""The HAProxy bundle of each golden input, as `controlplane render haproxy` writes it."""

from __future__ import annotations

from pathlib import Path

import pytest

from controlplane.haproxy.render import render
from controlplane.model import load_file, target_issues

from .conftest import GOLDEN_DIR, check_golden, golden_inputs

HAPROXY_DIR = GOLDEN_DIR / "haproxy"


def haproxy_outputs(source: Path) -> dict[Path, str]:
    """Golden file → expected text: `haproxy/<feature>[.<group>].cfg`, and each map or other
    file as `haproxy/<feature>[.<group>]/<name>`; for a config HAProxy cannot express,
    `haproxy/<feature>.refused`, one issue a line."""
    config = load_file(source)
    issues = target_issues(config, "haproxy")
    if issues:
        return {HAPROXY_DIR / f"{source.stem}.refused": "".join(f"{i}\n" for i in issues)}
    outputs = {}
    for group in config.group_names():
        stem = source.stem if not config.node_groups else f"{source.stem}.{group}"
        bundle = render(config, group)
        outputs[HAPROXY_DIR / f"{stem}.cfg"] = bundle.cfg
        for name, text in sorted({**bundle.maps, **bundle.files}.items()):
            outputs[HAPROXY_DIR / stem / name] = text
    return outputs


@pytest.mark.parametrize("source", golden_inputs(), ids=lambda p: p.stem)
def test_haproxy_golden(source: Path, update_golden: bool) -> None:
    for path, text in haproxy_outputs(source).items():
        check_golden(path, text, update_golden)


def test_every_haproxy_golden_has_an_input() -> None:
    expected = {path for source in golden_inputs() for path in haproxy_outputs(source)}
    assert {p for p in HAPROXY_DIR.rglob("*") if p.is_file()} <= expected
