"""`controlplane haproxy-agent`: bad input is refused with exit 2 and one line per problem."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from controlplane.cli import app


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["--server", "ftp://h", "--group", "g"], "--server 'ftp://h'"),
        (["--server", "127.0.0.1:8080", "--group", "g"], "--server '127.0.0.1:8080'"),
        (["--server", "http://h", "--group", "a/b"], "--group 'a/b'"),
        (
            ["--server", "http://h", "--group", "g", "--haproxy-bin", "/nonexistent/haproxy"],
            "--haproxy-bin '/nonexistent/haproxy'",
        ),
    ],
)
def test_bad_input_exits_2_with_one_line(args: list[str], problem: str) -> None:
    result = CliRunner().invoke(app, ["haproxy-agent", *args], env={"CONTROLPLANE_TOKEN": "t0k"})
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(problem)
    assert "t0k" not in result.output


def test_a_ca_file_that_does_not_load_exits_2(tmp_path: Path) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_text("not a certificate\n")
    args = ["--server", "https://h", "--group", "g", "--haproxy-bin", "/usr/sbin/haproxy"]
    result = CliRunner().invoke(app, ["haproxy-agent", *args, "--ca", str(ca)])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"--ca {ca}: "), lines
