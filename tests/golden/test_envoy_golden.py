"""The Envoy resources of each golden input, as `controlplane render envoy` prints them."""

from __future__ import annotations

from pathlib import Path

import pytest

from controlplane.envoy import translate
from controlplane.model import load_file, target_issues

from .conftest import GOLDEN_DIR, check_golden, golden_inputs


def envoy_outputs(source: Path) -> dict[Path, str]:
    """Golden file → expected text: `envoy/<feature>.json` for a config without node groups,
    `envoy/<feature>.<group>.json` for each group otherwise; for a config Envoy cannot
    express, `envoy/<feature>.refused`, one issue a line. Certificate files the inputs name
    are read into the resources as inline PEM, as `controlplane render envoy` does.
    """
    config = load_file(source)
    issues = target_issues(config, "envoy")
    if issues:
        return {GOLDEN_DIR / "envoy" / f"{source.stem}.refused": "".join(f"{i}\n" for i in issues)}
    outputs = {}
    for group in config.group_names():
        suffix = "" if not config.node_groups else f".{group}"
        text = translate(config, group).to_json()
        outputs[GOLDEN_DIR / "envoy" / f"{source.stem}{suffix}.json"] = text
    return outputs


@pytest.mark.parametrize("source", golden_inputs(), ids=lambda p: p.stem)
def test_envoy_golden(source: Path, update_golden: bool) -> None:
    for path, text in envoy_outputs(source).items():
        check_golden(path, text, update_golden)


def test_every_envoy_golden_has_an_input() -> None:
    expected = {path for source in golden_inputs() for path in envoy_outputs(source)}
    assert {p for p in (GOLDEN_DIR / "envoy").iterdir() if p.is_file()} <= expected
