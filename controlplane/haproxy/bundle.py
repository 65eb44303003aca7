"""The contract between the HAProxy renderer and the HAProxy manager."""

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType


def bundle_version(cfg: str, maps: Mapping[str, str]) -> str:
    """Content hash of a configuration and its map files; equal content gives an equal version."""
    digest = hashlib.sha256()
    for name, text in [("haproxy.cfg", cfg), *sorted(maps.items())]:
        for part in (name, text):
            data = part.encode()
            digest.update(len(data).to_bytes(8, "big"))
            digest.update(data)
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class Bundle:
    """What one HAProxy instance runs: its configuration text and the map files it reads.

    `cfg` is the text of `haproxy.cfg`. It names map files by bare relative file names, which
    resolve next to the configuration file (the renderer emits `default-path config` in
    `global`). It must not declare what the manager owns (see `controlplane.haproxy.manager`):
    `stats socket`, `master-worker`, `mworker-max-reloads`, `hard-stop-after`, `daemon`; and
    every `defaults` section must carry `option idle-close-on-response`.

    `maps` maps a file name (no directory part) to its content, one `key value` entry a line.
    `version` is `bundle_version(cfg, maps)`; build bundles with `Bundle.of` to get it right.
    """

    cfg: str
    maps: Mapping[str, str]
    version: str

    @classmethod
    def of(cls, cfg: str, maps: Mapping[str, str] | None = None) -> "Bundle":
        """A bundle whose version is the content hash of `cfg` and `maps`."""
        frozen = MappingProxyType(dict(maps or {}))
        return cls(cfg=cfg, maps=frozen, version=bundle_version(cfg, frozen))
