"""Golden tests: `tests/golden/<feature>.yaml` compiles to the files under `envoy/` and
`haproxy/`; `pytest tests/golden --update-golden` rewrites them from the compilers."""

from __future__ import annotations

from pathlib import Path

import pytest

GOLDEN_DIR = Path(__file__).resolve().parent


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        default=False,
        help="Rewrite golden output files from the compilers instead of comparing.",
    )


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    """Whether this run rewrites golden files rather than checking them."""
    return bool(request.config.getoption("--update-golden", default=False))


def golden_inputs() -> list[Path]:
    """Every golden input, sorted by name."""
    return sorted(GOLDEN_DIR.glob("*.yaml"))


def check_golden(path: Path, actual: str, update: bool) -> None:
    """Compare `actual` with the golden file `path`, or write it there when updating."""
    if update:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual)
        return
    assert path.exists(), f"{path} is missing; run pytest tests/golden --update-golden"
    expected = path.read_text()
    assert actual == expected, (
        f"{path.name} differs from what the compiler produces now; review the change and "
        "run pytest tests/golden --update-golden"
    )
