"""The contract between the HAProxy renderer and the HAProxy manager."""

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType


def bundle_version(
    cfg: str, maps: Mapping[str, str], files: Mapping[str, str] | None = None
) -> str:
    """Content hash of a configuration, its map files and other files; equal content gives an
    equal version."""
    digest = hashlib.sha256()
    extra = [(f"file:{name}", text) for name, text in sorted((files or {}).items())]
    for name, text in [("haproxy.cfg", cfg), *sorted(maps.items()), *extra]:
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
    `global`). It must not declare what the manager owns (see
    `controlplane.proxies.haproxy.manager`): `stats socket`, `master-worker`,
    `mworker-max-reloads`, `hard-stop-after`, `daemon`; and every `defaults` section must
    carry `option idle-close-on-response`.

    `maps` maps a file name (no directory part) to its content, one `key value` entry a line.
    `files` holds the other files the configuration names the same way (certificate PEM files
    and crt-lists of https listeners); they are written next to the configuration like maps,
    and their names change with their content, so a changed file always changes `cfg`.
    `version` is `bundle_version(cfg, maps, files)`; build bundles with `Bundle.of`.
    """

    cfg: str
    maps: Mapping[str, str]
    version: str
    files: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def of(
        cls,
        cfg: str,
        maps: Mapping[str, str] | None = None,
        files: Mapping[str, str] | None = None,
    ) -> "Bundle":
        """A bundle whose version is the content hash of `cfg`, `maps` and `files`."""
        frozen = MappingProxyType(dict(maps or {}))
        frozen_files = MappingProxyType(dict(files or {}))
        return cls(
            cfg=cfg,
            maps=frozen,
            version=bundle_version(cfg, frozen, frozen_files),
            files=frozen_files,
        )
