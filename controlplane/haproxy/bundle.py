"""The bundle: what one HAProxy instance runs, as the renderer built it.

A bundle is the configuration text (`cfg`), the map files as entries, the other files it names
(certificates, crt-lists), and what the renderer knows of the text's structure: the *runtime
table* (every backend's servers with the values the runtime API can change) and the *skeleton*
(a content hash of `cfg` with those values masked). Two bundles with the same skeleton, the
same files and the same map file names differ only in what a running HAProxy can take without a
reload: server addresses and weights in the table, and map contents.

Every Bundle is well-formed, however it was made: plain file names, map entries that read back
as written, a runtime table of plain names, IP literals or host names, ports and weights the
runtime API takes (names and addresses go into runtime API commands). `version` is the content
hash of everything in it. `to_json` and `from_json` are its one wire format (the agents' feed,
the manager's adoption state); `from_json` also checks that the version is the content's.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from .render_text import map_entry

MapEntries = tuple[tuple[str, str], ...]
"""A map file's (key, value) entries, in file order."""

FILE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*", re.ASCII)
"""A file name a bundle may use: no directory part, not hidden."""

CONFIG_FILE = "haproxy.cfg"
_BACKEND_NAME = re.compile(r"[A-Za-z0-9._:-]+", re.ASCII)
_SERVER_NAME = re.compile(r"[A-Za-z0-9._-]+", re.ASCII)
_HOST_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?", re.ASCII)
_DIGEST = re.compile(r"[0-9a-f]{16}", re.ASCII)
MAX_WEIGHT = 256
"""The largest weight HAProxy takes (`set server ... weight` takes 0 to 256)."""


class BundleError(ValueError):
    """A bundle that is not well-formed, or JSON that is not a bundle."""


def digest(parts: Iterable[str]) -> str:
    """Content hash of a sequence of texts (each length-prefixed, so boundaries count)."""
    hasher = hashlib.sha256()
    for part in parts:
        data = part.encode()
        hasher.update(len(data).to_bytes(8, "big"))
        hasher.update(data)
    return hasher.hexdigest()[:16]


@dataclass(frozen=True)
class Server:
    """One server line of a backend, as the runtime API sees it: `host` is an IP address
    (IPv6 without brackets, compressed) or a host name HAProxy resolves."""

    name: str
    host: str
    port: int
    weight: int

    @property
    def address(self) -> str:
        """`10.0.0.1:80`, `[::1]:80` or `api:80`, as a server line writes it."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def has_ip(self) -> bool:
        """Whether `host` is an IP address (the runtime API sets no host names)."""
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            return False
        return True


ServerTable = Mapping[str, tuple[Server, ...]]
"""The runtime table: backend name → its servers, in configuration order."""


@dataclass(frozen=True)
class Bundle:
    """One HAProxy's configuration, map files, other files, runtime table and skeleton.

    `cfg` is the text of `haproxy.cfg`. It names map files and other files by bare file names,
    which resolve next to it (the renderer emits `default-path config` in `global`). It must
    not declare what the manager owns (see `controlplane.proxies.haproxy.manager`).

    `map_entries` maps a map file name to its entries; `maps` is their text, one `key value`
    line each. `files` holds the other files' contents (certificate PEM files and crt-lists,
    whose names change with their content, so a changed file always changes `cfg`).
    `servers` is the runtime table and `skeleton` the content hash of `cfg` with the table's
    values masked; a bundle made from text alone (`Bundle.of` without `masked_cfg`) has the
    hash of `cfg` itself, so that any change of its text needs a reload.
    """

    cfg: str
    map_entries: Mapping[str, MapEntries]
    files: Mapping[str, str]
    servers: ServerTable
    skeleton: str
    maps: Mapping[str, str] = field(init=False, repr=False, compare=False)
    version: str = field(init=False, compare=False)

    def __post_init__(self) -> None:
        entries = MappingProxyType({n: tuple(map(tuple, e)) for n, e in self.map_entries.items()})
        object.__setattr__(self, "map_entries", entries)
        object.__setattr__(self, "files", MappingProxyType(dict(self.files)))
        table = MappingProxyType({b: tuple(s) for b, s in self.servers.items()})
        object.__setattr__(self, "servers", table)
        _check_names(self.map_entries, self.files)
        _check_table(self.servers)
        if not _DIGEST.fullmatch(self.skeleton):
            raise BundleError(f"skeleton {self.skeleton!r} is not a content hash")
        object.__setattr__(self, "maps", MappingProxyType(_map_texts(self.map_entries)))
        object.__setattr__(self, "version", self._content_hash())

    @classmethod
    def of(
        cls,
        cfg: str,
        maps: Mapping[str, Sequence[tuple[str, str]]] | None = None,
        files: Mapping[str, str] | None = None,
        servers: ServerTable | None = None,
        masked_cfg: str | None = None,
    ) -> Bundle:
        """A bundle of `cfg`, whose skeleton is the hash of `masked_cfg`: `cfg` with every
        value of `servers` masked (by default `cfg` itself: every change of the text reloads)."""
        return cls(
            cfg=cfg,
            map_entries={name: tuple(entries) for name, entries in (maps or {}).items()},
            files=files or {},
            servers=servers or {},
            skeleton=digest([masked_cfg if masked_cfg is not None else cfg]),
        )

    def _content_hash(self) -> str:
        parts = ["cfg", self.cfg, "skeleton", self.skeleton]
        for name, text in sorted(self.maps.items()):
            parts += ["map", name, text]
        for name, text in sorted(self.files.items()):
            parts += ["file", name, text]
        for backend, servers in sorted(self.servers.items()):
            parts += ["backend", backend]
            for s in servers:
                parts += [s.name, s.host, str(s.port), str(s.weight)]
        return digest(parts)

    # -- the wire format -----------------------------------------------------------------------

    def to_json(self, **envelope: int) -> str:
        """The bundle as one JSON object: `version`, `skeleton`, `cfg`, `maps` (name → list of
        [key, value]), `files` (name → text), `servers` (backend → list of {name, host, port,
        weight}); `envelope` adds integer fields about it (the feed's `revision`, the
        manager's `pid`)."""
        data: dict[str, Any] = {
            "version": self.version,
            "skeleton": self.skeleton,
            "cfg": self.cfg,
            "maps": {
                name: [list(e) for e in entries] for name, entries in self.map_entries.items()
            },
            "files": dict(self.files),
            "servers": {
                backend: [
                    {"name": s.name, "host": s.host, "port": s.port, "weight": s.weight}
                    for s in servers
                ]
                for backend, servers in self.servers.items()
            },
        }
        clash = set(envelope) & set(data)
        if clash:
            raise ValueError(f"envelope fields {sorted(clash)} are bundle fields")
        return json.dumps({**data, **envelope}, separators=(",", ":"))

    @classmethod
    def from_json(
        cls, text: str | bytes, envelope: Collection[str] = ()
    ) -> tuple[Bundle, dict[str, int]]:
        """The bundle `to_json` wrote, and the `envelope` fields named (integers, required).

        BundleError when it is not one: not JSON, fields missing, unknown or of the wrong type,
        a bundle that is not well-formed, or a version that is not its content's hash."""
        try:
            data = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise BundleError(f"not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise BundleError("a bundle is a JSON object")
        known = {"version", "skeleton", "cfg", "maps", "files", "servers"}
        missing = sorted((known | set(envelope)) - set(data))
        unknown = sorted(set(data) - known - set(envelope))
        if missing or unknown:
            raise BundleError(f"fields missing {missing}, unknown {unknown}")
        extra = {}
        for name in envelope:
            value = data[name]
            if not isinstance(value, int) or isinstance(value, bool):
                raise BundleError(f"{name} must be an integer, not {value!r}")
            extra[name] = value
        bundle = cls(
            cfg=_text(data["cfg"], "cfg"),
            map_entries={
                name: tuple(_entry(e, name) for e in _list(entries, f"maps[{name!r}]"))
                for name, entries in _object(data["maps"], "maps").items()
            },
            files={
                name: _text(content, f"files[{name!r}]")
                for name, content in _object(data["files"], "files").items()
            },
            servers={
                backend: tuple(_server(s, backend) for s in _list(servers, f"servers[{backend!r}]"))
                for backend, servers in _object(data["servers"], "servers").items()
            },
            skeleton=_text(data["skeleton"], "skeleton"),
        )
        if data["version"] != bundle.version:
            raise BundleError(
                f"bundle content does not match its version ({data['version']!r} != "
                f"{bundle.version})"
            )
        return bundle, extra


def _map_texts(map_entries: Mapping[str, MapEntries]) -> dict[str, str]:
    texts = {}
    for name, entries in map_entries.items():
        try:
            texts[name] = "".join(f"{map_entry(key, value)}\n" for key, value in entries)
        except (ValueError, TypeError) as exc:
            raise BundleError(f"map {name}: {exc}") from None
    return texts


def _check_names(maps: Mapping[str, object], files: Mapping[str, object]) -> None:
    for name in [*maps, *files]:
        if not isinstance(name, str) or not FILE_NAME.fullmatch(name) or name == CONFIG_FILE:
            raise BundleError(f"file name {name!r} must be a plain file name, not {CONFIG_FILE}")
    both = sorted(set(maps) & set(files))
    if both:
        raise BundleError(f"{both} named both as map files and as other files")


def _check_table(table: ServerTable) -> None:
    for backend, servers in table.items():
        if not isinstance(backend, str) or not _BACKEND_NAME.fullmatch(backend):
            raise BundleError(f"backend name {backend!r} is not a plain name")
        names = [s.name for s in servers]
        if len(set(names)) != len(names):
            raise BundleError(f"backend {backend}: server names repeat")
        for s in servers:
            where = f"server {backend}/{s.name}"
            if not isinstance(s.name, str) or not _SERVER_NAME.fullmatch(s.name):
                raise BundleError(f"server name {s.name!r} of backend {backend} is not plain")
            if not isinstance(s.host, str) or not (s.has_ip or _HOST_NAME.fullmatch(s.host)):
                raise BundleError(f"{where}: host {s.host!r} is neither an IP nor a host name")
            if not _integer(s.port, 1, 65535):
                raise BundleError(f"{where}: port {s.port!r} is not from 1 to 65535")
            if not _integer(s.weight, 0, MAX_WEIGHT):
                raise BundleError(f"{where}: weight {s.weight!r} is not from 0 to {MAX_WEIGHT}")


def _integer(value: object, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _text(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise BundleError(f"{where} must be a string")
    return value


def _object(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BundleError(f"{where} must be an object")
    return value


def _list(value: object, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise BundleError(f"{where} must be a list")
    return value


def _entry(value: object, where: str) -> tuple[str, str]:
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not all(isinstance(part, str) for part in value)
    ):
        raise BundleError(f"an entry of map {where} must be [key, value], not {value!r}")
    return value[0], value[1]


def _server(value: object, backend: str) -> Server:
    data = _object(value, f"a server of backend {backend}")
    if set(data) != {"name", "host", "port", "weight"}:
        raise BundleError(f"a server of backend {backend} has fields {sorted(data)}")
    return Server(data["name"], data["host"], data["port"], data["weight"])
