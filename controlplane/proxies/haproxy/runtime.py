"""Clients for HAProxy's two control sockets: the runtime API and the master CLI.

The runtime API (a worker's `stats socket ... level admin`) changes what the current worker
runs without a reload: server weights and states, and map contents. The master CLI
(`haproxy -W -S <socket>`) supervises processes: `show proc` lists the master and its workers,
`reload` re-executes the master with the configuration on disk.

Each command opens its own connection, sends one line (plus an optional payload), shuts the
write side (the master CLI only answers after that) and reads the answer until the socket
closes.
"""

import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

ServerAdminState = Literal["ready", "drain", "maint"]

# A CLI request, payload included, must fit in one buffer (tune.bufsize, 16 KiB by default).
PAYLOAD_CHUNK_BYTES = 8000


class CommandError(Exception):
    """HAProxy refused a command or did not answer it."""

    def __init__(self, command: str, answer: str) -> None:
        self.command = command
        self.answer = answer
        super().__init__(f"{command!r}: {answer or 'no answer (connection closed)'}")


def send(path: str, command: str, payload: str | None = None, timeout: float = 5.0) -> str:
    """Send one command (and payload lines, if any) to a HAProxy unix socket; return the answer.

    The answer is returned without its trailing blank line. A connection closed without any
    answer raises CommandError (HAProxy does that for requests larger than its buffer).
    """
    request = command.rstrip("\n")
    if payload is not None:
        lines = [line for line in payload.splitlines() if line.strip()]
        request += " <<\n" + "".join(f"{line}\n" for line in lines)
    request += "\n"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(request.encode())
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    raw = b"".join(chunks).decode(errors="replace")
    if not raw:
        raise CommandError(command, "")
    return raw.rstrip("\n")


@dataclass(frozen=True)
class Process:
    """One line of the master's `show proc`."""

    pid: int
    kind: str
    reloads: int
    uptime: str
    version: str


@dataclass(frozen=True)
class ProcessList:
    """The master's `show proc`: how often it reloaded, its current and leaving workers."""

    master: Process
    failed_reloads: int
    workers: tuple[Process, ...]
    old_workers: tuple[Process, ...]

    @property
    def reloads(self) -> int:
        """Successful and failed reloads since the master started."""
        return self.master.reloads


_MASTER_RELOADS = re.compile(r"(\d+)\s+\[failed:\s*(\d+)\]")


def parse_show_proc(text: str) -> ProcessList:
    """Parse the master CLI's `show proc` answer (HAProxy 2.6 layout)."""
    master: Process | None = None
    failed = 0
    groups: dict[str, list[Process]] = {"workers": [], "old workers": [], "programs": []}
    group = ""
    for line in text.splitlines():
        if line.startswith("#<PID>") or not line.strip():
            continue
        if line.startswith("#"):
            group = line.lstrip("# ").strip()
            continue
        if group == "" and master is None:
            fields = line.split()
            found = _MASTER_RELOADS.search(line)
            if found is None:
                raise ValueError(f"unexpected master line in show proc: {line!r}")
            failed = int(found.group(2))
            master = Process(
                pid=int(fields[0]),
                kind=fields[1],
                reloads=int(found.group(1)),
                uptime=fields[-2],
                version=fields[-1],
            )
            continue
        fields = line.split()
        process = Process(int(fields[0]), fields[1], int(fields[2]), fields[3], fields[4])
        groups.setdefault(group, []).append(process)
    if master is None:
        raise ValueError(f"no master line in show proc: {text!r}")
    return ProcessList(
        master=master,
        failed_reloads=failed,
        workers=tuple(groups["workers"]),
        old_workers=tuple(groups["old workers"]),
    )


class MasterCLI:
    """The master process's CLI (`haproxy -W -S <path>`)."""

    def __init__(self, path: str, timeout: float = 5.0) -> None:
        self.path = path
        self.timeout = timeout

    def command(self, command: str) -> str:
        """Run one master CLI command (prefix `@1 ` to reach the current worker)."""
        return send(self.path, command, timeout=self.timeout)

    def show_proc(self) -> ProcessList:
        """The master, its current workers and the old workers still finishing their work."""
        return parse_show_proc(self.command("show proc"))

    def reload(self) -> None:
        """Ask the master to re-execute itself with the configuration on disk.

        HAProxy 2.6 closes the connection without an answer; confirm with `show proc`.
        """
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(self.timeout)
            sock.connect(self.path)
            sock.sendall(b"reload\n")
            sock.shutdown(socket.SHUT_WR)
            while sock.recv(65536):
                pass


@dataclass(frozen=True)
class ServerState:
    """One server as `show servers state` reports it."""

    backend: str
    server: str
    address: str
    port: int
    operational_state: int
    admin_state: int
    weight: int
    initial_weight: int


@dataclass(frozen=True)
class PatternFile:
    """A map or ACL pattern reference as `show map` / `show acl` list it."""

    id: int
    file: str
    current_version: int
    next_version: int
    entries: int


@dataclass(frozen=True)
class MapEntry:
    """One entry of a loaded map."""

    key: str
    value: str


_PATTERN_LINE = re.compile(
    r"^(\d+) \(([^)]*)\) .*curr_ver=(\d+) next_ver=(\d+) entry_cnt=(\d+)\s*$"
)
_NEW_VERSION = re.compile(r"New version created:\s*(\d+)")


def _parse_pattern_files(text: str) -> list[PatternFile]:
    found = []
    for line in text.splitlines():
        match = _PATTERN_LINE.match(line)
        if match:
            ident, file, cur, nxt, count = match.groups()
            found.append(PatternFile(int(ident), file, int(cur), int(nxt), int(count)))
    return found


def map_payloads(entries: Iterable[MapEntry]) -> list[str]:
    """Map entries as `key value` lines, cut into payloads that fit one CLI request."""
    chunks: list[str] = []
    current: list[str] = []
    size = 0
    for entry in entries:
        line = f"{entry.key} {entry.value}\n"
        if current and size + len(line) > PAYLOAD_CHUNK_BYTES:
            chunks.append("".join(current))
            current, size = [], 0
        current.append(line)
        size += len(line)
    if current:
        chunks.append("".join(current))
    return chunks


class RuntimeAPI:
    """A worker's runtime API (`stats socket <path> level admin`)."""

    def __init__(self, path: str, timeout: float = 5.0) -> None:
        self.path = path
        self.timeout = timeout

    def command(self, command: str, payload: str | None = None) -> str:
        """Run one command and return its answer."""
        return send(self.path, command, payload=payload, timeout=self.timeout)

    def _expect_silence(self, command: str, payload: str | None = None) -> None:
        answer = self.command(command, payload)
        if answer.strip():
            raise CommandError(command, answer.strip())

    def show_info(self) -> dict[str, str]:
        """`show info` as a name → value mapping (Pid, Uptime_sec, CurrConns, ...)."""
        info = {}
        for line in self.command("show info").splitlines():
            name, sep, value = line.partition(":")
            if sep:
                info[name.strip()] = value.strip()
        return info

    def show_servers_state(self, backend: str | None = None) -> list[ServerState]:
        """Every server's address, port, states and weights, as the worker runs them."""
        text = self.command("show servers state" + (f" {backend}" if backend else ""))
        states = []
        for line in text.splitlines()[1:]:
            if not line.strip() or line.startswith("#"):
                continue
            f = line.split()
            states.append(
                ServerState(
                    backend=f[1],
                    server=f[3],
                    address=f[4],
                    port=int(f[18]),
                    operational_state=int(f[5]),
                    admin_state=int(f[6]),
                    weight=int(f[7]),
                    initial_weight=int(f[8]),
                )
            )
        return states

    def set_server_weight(self, backend: str, server: str, weight: int) -> None:
        """Set a server's absolute weight (0-256)."""
        self._expect_silence(f"set server {backend}/{server} weight {weight}")

    def set_server_state(self, backend: str, server: str, state: ServerAdminState) -> None:
        """Set a server's administrative state: ready, drain (no new traffic) or maint."""
        self._expect_silence(f"set server {backend}/{server} state {state}")

    def show_maps(self) -> list[PatternFile]:
        """The maps the worker has loaded."""
        return _parse_pattern_files(self.command("show map"))

    def show_acls(self) -> list[PatternFile]:
        """The ACL pattern files and inline ACLs the worker has loaded."""
        return _parse_pattern_files(self.command("show acl"))

    def show_map(self, ref: str) -> list[MapEntry]:
        """The visible entries of a map (`ref` is `#<id>` or the file name)."""
        entries = []
        for line in self.command(f"show map {ref}").splitlines():
            _pointer, _, rest = line.partition(" ")
            key, _, value = rest.partition(" ")
            entries.append(MapEntry(key, value))
        return entries

    def add_map(self, ref: str, key: str, value: str) -> None:
        """Add one entry (does not check whether the key exists)."""
        self._expect_silence(f"add map {ref} {key} {value}")

    def set_map(self, ref: str, key: str, value: str) -> None:
        """Change the value of every entry with this key."""
        self._expect_silence(f"set map {ref} {key} {value}")

    def del_map(self, ref: str, key: str) -> None:
        """Remove every entry with this key."""
        self._expect_silence(f"del map {ref} {key}")

    def clear_map(self, ref: str) -> None:
        """Remove all entries."""
        self._expect_silence(f"clear map {ref}")

    def prepare_map(self, ref: str) -> int:
        """Allocate a new, invisible version of a map and return its number."""
        command = f"prepare map {ref}"
        answer = self.command(command)
        match = _NEW_VERSION.search(answer)
        if match is None:
            raise CommandError(command, answer)
        return int(match.group(1))

    def add_map_entries(self, ref: str, version: int, entries: Iterable[MapEntry]) -> None:
        """Add entries, in order, to a prepared version (several payloads if needed)."""
        for chunk in map_payloads(entries):
            self._expect_silence(f"add map @{version} {ref}", payload=chunk)

    def commit_map(self, ref: str, version: int) -> None:
        """Atomically make a prepared version the visible content of the map."""
        self._expect_silence(f"commit map @{version} {ref}")

    def replace_map(self, ref: str, entries: Iterable[MapEntry]) -> None:
        """Atomically replace a map's content by `entries`, in their order."""
        version = self.prepare_map(ref)
        self.add_map_entries(ref, version, entries)
        self.commit_map(ref, version)
