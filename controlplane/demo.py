"""`make run`: the examples validated and a summary of the quickstart config."""

from __future__ import annotations

from pathlib import Path

from .model import load_file, ordered_routes

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def main() -> None:
    """Validate every example and describe the quickstart config."""
    for path in sorted(EXAMPLES.glob("*.yaml")):
        load_file(path)
        print(f"valid: {path.name}")
    config = load_file(EXAMPLES / "quickstart.yaml")
    for listener in config.listeners:
        print(f"\nlistener {listener.name} ({listener.protocol}) on {listener.address}")
        for vhost in listener.virtual_hosts:
            for route in ordered_routes(vhost.routes):
                backends = ", ".join(f"{b.cluster} ({b.weight})" for b in route.backends or ())
                print(f"  {route.match.path.model_dump(exclude_none=True)} -> {backends}")


if __name__ == "__main__":
    main()
