"""Processes the tests kill: when they are gone."""

from pathlib import Path

from tests.harness.envoy import wait_for


def wait_gone(pid: int, timeout: float = 15.0) -> None:
    """Until the process is gone (or a zombie): its sockets are closed then."""

    def gone() -> bool:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return True
        return state in ("Z", "X")

    wait_for(f"process {pid} to exit", gone, timeout)
