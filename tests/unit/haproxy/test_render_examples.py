"""Every example and golden input renders to a configuration `haproxy -c` accepts."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from controlplane.haproxy.render import render
from controlplane.model import load_file, target_issues

ROOT = Path(__file__).resolve().parents[3]
INPUTS = [
    path
    for path in sorted((ROOT / "examples").glob("*.yaml"))
    + sorted((ROOT / "tests/golden").glob("*.yaml"))
    if not target_issues(load_file(path), "haproxy")  # the rest are refused for haproxy, by design
]


@pytest.mark.haproxy
@pytest.mark.parametrize("source", INPUTS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_haproxy_accepts_the_rendered_config(source: Path, tmp_path: Path) -> None:
    config = load_file(source)
    for group in config.group_names():
        bundle = render(config, group)
        directory = tmp_path / group
        directory.mkdir()
        (directory / "haproxy.cfg").write_text(bundle.cfg)
        for name, text in {**bundle.maps, **bundle.files}.items():
            (directory / name).write_text(text)
        check = subprocess.run(
            ["haproxy", "-c", "-f", "haproxy.cfg"], cwd=directory, capture_output=True, text=True
        )
        assert check.returncode == 0, check.stdout + check.stderr
