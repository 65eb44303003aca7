"""One HAProxy instance kept on the bundle it is given, without dropping a request.

The manager owns a working directory and the HAProxy running from it in master-worker mode:

    haproxy -W -db -S <workdir>/master.sock -f <workdir>/manager.cfg -f <workdir>/haproxy.cfg

`manager.cfg` is the manager's own `global` section: the runtime API socket
(`stats socket <workdir>/admin.sock level admin expose-fd listeners`, which also hands the
listening sockets to the next worker on reload), `hard-stop-after`, `mworker-max-reloads`,
`default-path config` and `noreuseport` (a port another process holds, even one that allows
`SO_REUSEPORT`, makes the start or reload fail instead of sharing its connections).
`haproxy.cfg` and the map files beside it are the bundle, byte for byte, so HAProxy's messages
point at the renderer's own line numbers. HAProxy runs (and checks) with
the configuration's directory as its working directory: HAProxy 2.6 opens the map files of
converters such as `map_beg(paths.map)` after parsing, from its working directory, where
`default-path config` no longer applies.

The bundle's configuration must leave those settings to the manager (it must not declare
`stats socket`, `master-worker`, `mworker-max-reloads`, `hard-stop-after` or `daemon` in
`global`) and must open with a `defaults` section before any proxy, every `defaults` section
carrying `option idle-close-on-response` (HAProxy 2.6 needs it so that keep-alive clients are
not cut when an old worker leaves). A bundle breaking these rules is rejected like one HAProxy
rejects.

Applying a bundle: it is checked with `haproxy -c` in a staging directory inside the working
directory; a rejected bundle changes nothing (files and running processes stay as they were).
A valid one is moved into place file by file with atomic renames, then either pushed through the
runtime API, when the change is runtime-updatable (see
`controlplane.proxies.haproxy.reload_plan`), or loaded by a reload through the master CLI,
confirmed by `show proc` (the reload counter grew, a new worker serves the runtime API, the
previous workers are leaving). A reload that moves or removes servers (`ChangePlan.retire`)
is done once the previous workers have exited (up to `timeout`; the result's reason says how
long it took), so that no request reaches an old address after it. Since files are written
in both cases, a later reload or restart runs exactly what the runtime API was told. If a
runtime update fails midway, the manager reloads instead.

Any failure while applying (HAProxy's messages are read as UTF-8 with replacement characters,
and an unexpected exception is caught) is an `ApplyResult` that is not ok, carrying the error.

While HAProxy runs, the manager supervises it (a thread, every `supervise_every` seconds): when
the master or its current worker is gone (HAProxy 2.6's master exits when its only worker dies),
it reports `down`, starts HAProxy again on the bundle it last ran, and reports `restarted` or
`restart failed` (then tries again with a growing delay) through `on_health`.

A manager can let go of its HAProxy without stopping it (`detach`), so that the data plane
keeps serving while the control plane restarts; the next manager of the same workdir takes it
over (`adopt`) with the bundle it runs, and an unchanged bundle then needs nothing.
"""

import contextlib
import errno
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from controlplane.haproxy.bundle import Bundle, BundleError
from controlplane.proxies.haproxy.outcomes import ApplyMode, ApplyResult, HealthEvent, HealthState
from controlplane.proxies.haproxy.reload_plan import ChangePlan, plan_change
from controlplane.proxies.haproxy.runtime import (
    CommandError,
    MapEntry,
    MasterCLI,
    ProcessList,
    RuntimeAPI,
)

log = logging.getLogger(__name__)

CONFIG_FILE = "haproxy.cfg"
MANAGER_CONFIG_FILE = "manager.cfg"
MASTER_SOCKET = "master.sock"
RUNTIME_SOCKET = "admin.sock"
LOG_FILE = "haproxy.log"
STATE_FILE = "manager-state.json"
"""The running master's bundle as `Bundle.to_json` writes it, with its `pid`, for a manager that
adopts it (`adopt`)."""
_MANAGER_FILES = frozenset(
    {CONFIG_FILE, MANAGER_CONFIG_FILE, MASTER_SOCKET, RUNTIME_SOCKET, LOG_FILE, STATE_FILE}
)
SECTION_KEYWORDS = frozenset(
    {
        "global",
        "defaults",
        "frontend",
        "backend",
        "listen",
        "peers",
        "resolvers",
        "userlist",
        "mailers",
        "program",
        "http-errors",
        "ring",
        "cache",
        "fcgi-app",
    }
)
RESERVED_GLOBAL_KEYWORDS = (
    "stats socket",
    "master-worker",
    "mworker-max-reloads",
    "hard-stop-after",
    "daemon",
)
_PROXY_SECTIONS = frozenset({"frontend", "backend", "listen"})
_UNIX_PATH_MAX = 107
SUPERVISE_EVERY = 0.5
"""Seconds between two looks at whether HAProxy still runs."""
_RESTART_BACKOFF = (1.0, 30.0)
"""The first and the longest delay between attempts to restart an HAProxy that will not start."""


class HAProxyError(Exception):
    """HAProxy did not start or reload as asked."""


class _RuntimeUnavailable(Exception):
    """A runtime-updatable change that this running worker cannot take after all."""


def bundle_files(bundle: Bundle) -> dict[str, str]:
    """Every file written next to the configuration: map files and the other files."""
    return {**bundle.files, **bundle.maps}


def contract_problems(bundle: Bundle) -> list[str]:
    """Why the manager cannot run this bundle (empty when it can); see the module docstring.

    What every Bundle guarantees (plain file names, well-formed maps and runtime table) is not
    checked again; what is checked is what a bundle from another source than the renderer
    could get wrong and HAProxy would still run: file names the manager uses itself, settings
    it owns, `defaults` without `option idle-close-on-response`."""
    problems = [
        f"file name {name!r} is one of the manager's own files {sorted(_MANAGER_FILES)}"
        for name in bundle_files(bundle)
        if name in _MANAGER_FILES
    ]
    section = ""
    defaults_seen = False
    defaults_ok = True
    for number, line in enumerate(bundle.cfg.split("\n"), start=1):
        text = line.split("#", 1)[0].strip()
        words = text.split()
        if not words:
            continue
        if words[0] in SECTION_KEYWORDS:
            if section == "defaults" and not defaults_ok:
                problems.append("a defaults section lacks 'option idle-close-on-response'")
            section = words[0]
            if section == "defaults":
                defaults_seen, defaults_ok = True, False
            elif section in _PROXY_SECTIONS and not defaults_seen:
                problems.append(f"line {number}: '{text}' comes before any defaults section")
                defaults_seen = True
            continue
        if section == "defaults" and words[:2] == ["option", "idle-close-on-response"]:
            defaults_ok = True
        if section == "global":
            for keyword in RESERVED_GLOBAL_KEYWORDS:
                if words[: keyword.count(" ") + 1] == keyword.split():
                    problems.append(f"line {number}: '{keyword}' is set by the manager")
    if section == "defaults" and not defaults_ok:
        problems.append("a defaults section lacks 'option idle-close-on-response'")
    return problems


class HAProxyManager:
    """Runs one HAProxy (master-worker) from `workdir` and keeps it on the latest bundle.

    `on_apply` is told the result of every start and apply, `on_health` every `HealthEvent` of
    the supervisor (None as `supervise_every` turns supervision off). `threads` sets HAProxy's
    `nbthread` (default: one per CPU).
    """

    def __init__(
        self,
        workdir: str | Path,
        haproxy_bin: str = "haproxy",
        instance_id: str | None = None,
        group: str = "default",
        on_apply: Callable[[ApplyResult], None] | None = None,
        hard_stop_after: str = "30s",
        max_reloads: int = 10,
        timeout: float = 10.0,
        on_health: Callable[[HealthEvent], None] | None = None,
        supervise_every: float | None = SUPERVISE_EVERY,
        threads: int | None = None,
    ) -> None:
        self.workdir = Path(workdir).resolve()
        self.threads = threads
        self.haproxy_bin = haproxy_bin
        self.instance_id = instance_id or f"{socket.gethostname()}:{self.workdir}"
        self.group = group
        self.on_apply = on_apply
        self.on_health = on_health
        self.hard_stop_after = hard_stop_after
        self.max_reloads = max_reloads
        self.timeout = timeout
        self.supervise_every = supervise_every
        if len(str(self.workdir / MASTER_SOCKET)) > _UNIX_PATH_MAX:
            raise ValueError(f"workdir path too long for unix sockets: {self.workdir}")
        self.master = MasterCLI(str(self.workdir / MASTER_SOCKET))
        self.runtime = RuntimeAPI(str(self.workdir / RUNTIME_SOCKET))
        self._lock = threading.RLock()
        self._process: subprocess.Popen[bytes] | None = None
        self._adopted: int | None = None
        self._worker: int | None = None
        self._log: IO[bytes] | None = None
        self._log_from = 0
        """Where in the log file what the running HAProxy logged begins."""
        self._current: Bundle | None = None
        self._last_good: Bundle | None = None
        """What HAProxy last ran: what it is restarted on. None once stopped or detached."""
        self._down: HealthEvent | None = None
        self._restart_delay = _RESTART_BACKOFF[0]
        self._restart_at = 0.0
        self._supervisor: tuple[threading.Thread, threading.Event] | None = None

    # -- public -------------------------------------------------------------------------------

    @property
    def current(self) -> Bundle | None:
        """The bundle HAProxy runs, or None when not running or after a failed reload."""
        return self._current

    @property
    def running(self) -> bool:
        """Whether the master process is alive."""
        if self._process is not None:
            return self._process.poll() is None
        return self._adopted is not None and _alive(self._adopted)

    @property
    def master_pid(self) -> int | None:
        """The pid of the master this manager started or adopted (None when it has none)."""
        return self._process.pid if self._process is not None else self._adopted

    @property
    def down(self) -> HealthEvent | None:
        """The `down` (or `restart failed`) event while HAProxy is down, None while it runs."""
        return self._down

    def adopt(self) -> bool:
        """Take over the HAProxy that a previous manager of this workdir left running (see
        `detach`), with the bundle it runs; False when there is none to take over."""
        with self._lock:
            if self.running:
                return True
            try:
                text = (self.workdir / STATE_FILE).read_bytes()
                bundle, about = Bundle.from_json(text, envelope=("pid",))
                pid = about["pid"]
                if not _alive(pid):
                    return False
                procs = self.master.show_proc()
            except (OSError, BundleError, CommandError):
                return False
            self._adopted, self._current = pid, bundle
            with contextlib.suppress(OSError):
                self._log_from = (self.workdir / LOG_FILE).stat().st_size
            self._worker = procs.workers[0].pid if procs.workers else None
            self._supervise(bundle)
            log.info(
                "haproxy %s: adopted master %d running %s", self.instance_id, pid, bundle.version
            )
            return True

    def detach(self) -> None:
        """Let go of HAProxy without stopping it, so that it keeps serving while no manager
        runs; a later manager of the same workdir takes it over with `adopt`."""
        with self._lock:
            supervisor = self._unsupervise()
            self._process = self._adopted = self._worker = None
            self._current = None
            if self._log is not None:
                self._log.close()
                self._log = None
        _join(supervisor)

    def start(self, bundle: Bundle) -> ApplyResult:
        """Validate the bundle, write it and start HAProxy on it."""
        with self._lock:
            if self.running:
                raise RuntimeError("HAProxy is already running; use apply()")
            began = time.monotonic()
            try:
                result = self._start(bundle, began)
            except Exception as exc:
                result = self._failed(bundle, exc, began)
            return self._report(result)

    def apply(self, bundle: Bundle) -> ApplyResult:
        """Make HAProxy run `bundle`: start, runtime update, reload, nothing, or reject."""
        with self._lock:
            began = time.monotonic()
            self._notice_death()
            try:
                if not self.running:
                    result = self._start(bundle, began)
                elif self._current is not None and self._current.version == bundle.version:
                    result = self._result(
                        bundle, True, "unchanged", "version already running", began=began
                    )
                else:
                    result = self._change(bundle, began)
            except Exception as exc:
                result = self._failed(bundle, exc, began)
            return self._report(result)

    def stop(self) -> None:
        """Stop the master and every worker (fast stop, then SIGKILL); safe to call twice."""
        with self._lock:
            supervisor = self._unsupervise()
            self._halt()
        _join(supervisor)

    def supervise(self) -> None:
        """Look once whether HAProxy still runs; if it died, report it and start it again on
        the bundle it last ran (the supervisor thread calls this every `supervise_every`)."""
        with self._lock:
            if self._last_good is None:
                return
            self._notice_death()
            if self._down is None or time.monotonic() < self._restart_at:
                return
            bundle, began, died = self._last_good, time.monotonic(), self._down.reason
            try:
                result = self._start(bundle, began)
            except Exception as exc:
                result = self._failed(bundle, exc, began)
            if not result.ok:
                self._restart_at = time.monotonic() + self._restart_delay
                self._restart_delay = min(self._restart_delay * 2, _RESTART_BACKOFF[1])
                error = f"{result.reason}: {result.error}" if result.error else result.reason
                self._down = self._health("restart failed", bundle.version, died, error)

    def reload_count(self) -> int:
        """How many times the master has reloaded since it started (from `show proc`)."""
        return self.master.show_proc().reloads

    def processes(self) -> ProcessList:
        """The master's `show proc`: current and leaving workers."""
        return self.master.show_proc()

    def __enter__(self) -> "HAProxyManager":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- steps --------------------------------------------------------------------------------

    def _start(self, bundle: Bundle, began: float) -> ApplyResult:
        self._halt()  # what a master that died may have left: workers, an open log
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._write_manager_config()
        refusal = self._validate_and_install(bundle)
        if refusal is not None:
            return self._result(bundle, False, "rejected", *refusal, began=began)
        for name in (MASTER_SOCKET, RUNTIME_SOCKET):
            (self.workdir / name).unlink(missing_ok=True)
        self._log = open(self.workdir / LOG_FILE, "ab")  # noqa: SIM115 (closed by stop())
        self._log_from = self._log.tell()
        self._process = subprocess.Popen(
            [
                self.haproxy_bin,
                "-W",
                "-db",
                "-S",
                str(self.workdir / MASTER_SOCKET),
                "-f",
                str(self.workdir / MANAGER_CONFIG_FILE),
                "-f",
                str(self.workdir / CONFIG_FILE),
            ],
            cwd=self.workdir,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            self._wait_for_worker(previous=None)
        except HAProxyError as exc:
            self._halt()
            return self._result(
                bundle, False, "start", "HAProxy did not start", str(exc), began=began
            )
        self._running(bundle)
        return self._result(bundle, True, "start", "started", began=began)

    def _change(self, bundle: Bundle, began: float) -> ApplyResult:
        refusal = self._validate_and_install(bundle)
        if refusal is not None:
            return self._result(bundle, False, "rejected", *refusal, began=began)
        plan = (
            plan_change(self._current, bundle)
            if self._current is not None
            else ChangePlan(True, "running configuration unknown")
        )
        reason = plan.reason
        if not plan.reload:
            try:
                self._apply_runtime(plan)
                self._running(bundle)
                return self._result(bundle, True, "runtime", reason, began=began)
            except (_RuntimeUnavailable, CommandError, OSError) as exc:
                reason = f"{reason}; runtime update failed ({exc}), reloaded instead"
        try:
            self._reload()
        except HAProxyError as exc:
            self._current = None
            return self._result(bundle, False, "reload", reason, str(exc), began=began)
        self._running(bundle)
        if plan.retire:
            reason += "; " + self._retire_old_workers()
        return self._result(bundle, True, "reload", reason, began=began)

    def _validate_and_install(self, bundle: Bundle) -> tuple[str, str] | None:
        """Check the bundle in a staging directory and install it; if invalid, (reason, error)."""
        problems = contract_problems(bundle)
        if problems:
            return "bundle breaks the manager's contract", "; ".join(problems)
        stage = Path(tempfile.mkdtemp(prefix=".stage-", dir=self.workdir))
        try:
            (stage / CONFIG_FILE).write_text(bundle.cfg, encoding="utf-8")
            for name, content in bundle_files(bundle).items():
                (stage / name).write_text(content, encoding="utf-8")
            check = subprocess.run(
                [
                    self.haproxy_bin,
                    "-c",
                    "-f",
                    str(self.workdir / MANAGER_CONFIG_FILE),
                    "-f",
                    str(stage / CONFIG_FILE),
                ],
                cwd=stage,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=60,
            )
            if check.returncode != 0:
                output = (check.stdout + check.stderr).decode("utf-8", errors="replace")
                message = _haproxy_message(output, f"{stage}/")
                return "haproxy -c rejected the configuration", message
            previous = set(bundle_files(self._current)) if self._current is not None else set()
            wanted = bundle_files(bundle)
            for name in wanted:
                os.replace(stage / name, self.workdir / name)
            os.replace(stage / CONFIG_FILE, self.workdir / CONFIG_FILE)
            for name in previous - set(wanted):
                (self.workdir / name).unlink(missing_ok=True)
            return None
        finally:
            shutil.rmtree(stage, ignore_errors=True)

    def _apply_runtime(self, plan: ChangePlan) -> None:
        for update in plan.servers:
            self.runtime.set_server_weight(update.backend, update.server, update.weight)
        if not plan.maps:
            return
        loaded = self.runtime.show_maps()
        for change in plan.maps:
            refs = [ref for ref in loaded if self._names_map_file(ref.file, change.name)]
            if not refs:
                raise _RuntimeUnavailable(f"map file {change.name} is not loaded as a map")
            entries = [MapEntry(key, value) for key, value in change.entries]
            for ref in refs:
                self.runtime.replace_map(f"#{ref.id}", entries)

    def _names_map_file(self, loaded: str, name: str) -> bool:
        path = Path(loaded)
        return path.name == name and str(path.parent) in (".", str(self.workdir))

    def _running(self, bundle: Bundle) -> None:
        """HAProxy runs `bundle`: remember it, also on disk for a manager that adopts it, and
        supervise it (reporting `restarted` when it was down)."""
        self._current = bundle
        self._supervise(bundle)
        if self._down is not None:
            died, self._down = self._down.reason, None
            self._restart_delay = _RESTART_BACKOFF[0]
            self._health("restarted", bundle.version, died)
        pid = self._process.pid if self._process is not None else self._adopted
        assert pid is not None
        temporary = self.workdir / f"{STATE_FILE}.tmp"
        temporary.write_text(bundle.to_json(pid=pid))
        os.replace(temporary, self.workdir / STATE_FILE)

    def _reload(self) -> None:
        try:
            before = self.master.show_proc()
            self.master.reload()
        except (OSError, CommandError, ValueError) as exc:
            raise HAProxyError(f"master CLI: {exc}") from exc
        self._wait_for_worker(previous=before)

    def _retire_old_workers(self) -> str:
        """Wait (up to `timeout`) until the workers that ran before the last reload have exited:
        each answers at most one last request per client connection it holds, from the old
        configuration. Says how it went."""
        began = time.monotonic()
        deadline = began + self.timeout
        leaving: tuple[int, ...] = ()
        while time.monotonic() < deadline:
            try:
                leaving = tuple(w.pid for w in self.master.show_proc().old_workers)
            except (OSError, CommandError, ValueError):
                pass
            else:
                if not any(_alive(pid) for pid in leaving):
                    return f"previous workers gone after {time.monotonic() - began:.2f}s"
            time.sleep(0.01)
        return f"previous workers {list(leaving)} still serving after {self.timeout:g}s"

    def _wait_for_worker(self, previous: ProcessList | None) -> None:
        """Wait until a new worker serves the runtime API and the previous ones are leaving."""
        deadline = time.monotonic() + self.timeout
        old_pids = {w.pid for w in previous.workers} if previous is not None else set()
        last_problem = "no answer from the master CLI"
        while time.monotonic() < deadline:
            if not self.running:
                raise HAProxyError(f"HAProxy exited: {self._log_tail()}")
            try:
                procs = self.master.show_proc()
                if previous is not None and procs.failed_reloads > previous.failed_reloads:
                    raise HAProxyError(f"reload failed: {self._log_tail()}")
                current = {w.pid for w in procs.workers}
                if (previous is None or procs.reloads > previous.reloads) and not (
                    current & old_pids
                ):
                    fresh = current - old_pids
                    pid = self.runtime.show_info().get("Pid", "")
                    if pid.isdigit() and int(pid) in fresh:
                        self._worker = int(pid)
                        return
                    last_problem = f"runtime API answered from pid {pid}, waiting for {fresh}"
            except (OSError, CommandError, ValueError) as exc:
                last_problem = str(exc)
            time.sleep(0.01)
        raise HAProxyError(f"no new worker within {self.timeout}s ({last_problem})")

    def _write_manager_config(self) -> None:
        text = (
            "# Written by controlplane's HAProxyManager: the settings it owns.\n"
            "global\n"
            f"    stats socket {self.workdir / RUNTIME_SOCKET} level admin expose-fd listeners\n"
            f"    hard-stop-after {self.hard_stop_after}\n"
            f"    mworker-max-reloads {self.max_reloads}\n"
            "    default-path config\n"
            "    noreuseport\n" + (f"    nbthread {self.threads}\n" if self.threads else "")
        )
        target = self.workdir / MANAGER_CONFIG_FILE
        temporary = target.with_suffix(".tmp")
        temporary.write_text(text)
        os.replace(temporary, target)

    # -- supervision ----------------------------------------------------------------------------

    def _supervise(self, bundle: Bundle) -> None:
        """Keep `bundle` as what HAProxy is restarted on, and the supervisor thread running."""
        self._last_good = bundle
        if self.supervise_every is None:
            return
        if self._supervisor is None or not self._supervisor[0].is_alive():
            stop = threading.Event()
            thread = threading.Thread(
                target=self._supervision,
                args=(stop, self.supervise_every),
                name=f"haproxy-supervisor-{self.group}",
                daemon=True,
            )
            self._supervisor = (thread, stop)
            thread.start()

    def _supervision(self, stop: threading.Event, every: float) -> None:
        while not stop.wait(every):
            try:
                self.supervise()
            except Exception:
                log.exception("supervising haproxy %s failed", self.instance_id)

    def _unsupervise(self) -> threading.Thread | None:
        """Stop supervising (lock held); the thread to join once the lock is released."""
        self._last_good = self._down = None
        supervisor, self._supervisor = self._supervisor, None
        if supervisor is None:
            return None
        thread, stop = supervisor
        stop.set()
        return thread

    def _notice_death(self) -> None:
        """Report `down` when the HAProxy that should run has died (lock held)."""
        if self._last_good is None or self._down is not None:
            return
        died = self._what_died()
        if died is None:
            return
        self._current = None
        self._restart_at = 0.0
        self._down = self._health("down", self._last_good.version, died)

    def _what_died(self) -> str | None:
        """What is gone of the HAProxy that should run (its master or current worker)."""
        if not self.running:
            pid = self._process.pid if self._process is not None else self._adopted
            code = self._process.returncode if self._process is not None else None
            died = f"the master (pid {pid}) exited" + (f" with code {code}" if code else "")
            alert = self._last_alert()
            return f"{died}: {alert}" if alert else died
        if self._worker is None or _alive(self._worker):
            return None
        try:
            workers = self.master.show_proc().workers
        except (OSError, CommandError, ValueError):
            workers = ()
        if workers and _alive(workers[0].pid):
            self._worker = workers[0].pid  # someone else reloaded it
            return None
        return f"the worker (pid {self._worker}) exited"

    def _health(
        self, state: HealthState, version: str | None, reason: str, error: str | None = None
    ) -> HealthEvent:
        event = HealthEvent(state, version, time.time(), reason, error)
        report = log.info if state == "restarted" else log.error
        report("haproxy %s %s: %s%s", self.instance_id, state, reason, f" ({error})" * bool(error))
        if self.on_health is not None:
            try:
                self.on_health(event)
            except Exception:
                log.exception("on_health callback failed")
        return event

    def _halt(self) -> None:
        """Stop every process of HAProxy (lock held); what it should run stays known."""
        process, self._process = self._process, None
        adopted, self._adopted = self._adopted, None
        worker, self._worker = self._worker, None
        self._current = None
        if process is not None:
            _stop_group(process, self.timeout)
        if adopted is not None:
            _stop_adopted(adopted, self.timeout)
        if worker is not None:  # a worker outliving its master holds the listening sockets
            _wait_gone(worker, self.timeout)
        if process is not None or adopted is not None:
            (self.workdir / STATE_FILE).unlink(missing_ok=True)
        if self._log is not None:
            self._log.close()
            self._log = None

    def _last_alert(self) -> str:
        """The first alert HAProxy logged since its last notice (what went wrong first), without
        its prefix."""
        lines = self._log_tail(50).splitlines()
        notices = [n for n, line in enumerate(lines) if "[NOTICE]" in line]
        since = lines[notices[-1] + 1 :] if notices else lines
        alerts = [line for line in since if "[ALERT]" in line]
        return alerts[0].split(" : ", 1)[-1] if alerts else ""

    def _failed(self, bundle: Bundle, exc: Exception, began: float) -> ApplyResult:
        """An apply that raised (say, the haproxy binary vanished): not ok, with the error."""
        log.exception("haproxy %s: applying %s failed", self.instance_id, bundle.version)
        self._current = None  # what runs is not known any more
        mode: ApplyMode = "reload" if self.running else "start"
        error = f"{type(exc).__name__}: {exc}"
        return self._result(bundle, False, mode, "the manager failed", error, began=began)

    def _log_tail(self, lines: int = 20) -> str:
        """The last lines HAProxy logged since it was started (or adopted)."""
        try:
            with open(self.workdir / LOG_FILE, "rb") as log_file:
                log_file.seek(self._log_from)
                text = log_file.read().decode("utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _result(
        self,
        bundle: Bundle,
        ok: bool,
        mode: ApplyMode,
        reason: str,
        error: str | None = None,
        *,
        began: float,
    ) -> ApplyResult:
        return ApplyResult(bundle.version, ok, mode, reason, time.monotonic() - began, error)

    def _report(self, result: ApplyResult) -> ApplyResult:
        log.info(
            "haproxy %s apply %s: %s (%s)",
            self.instance_id,
            result.version,
            result.mode,
            result.reason,
        )
        if self.on_apply is not None:
            try:
                self.on_apply(result)
            except Exception:
                log.exception("on_apply callback failed")
        return result


def _haproxy_message(output: str, stage_prefix: str) -> str:
    """HAProxy's alerts (or its whole output) with staging paths shown as plain file names."""
    lines = [line for line in output.splitlines() if "[NOTICE]" not in line and line.strip()]
    alerts = [line for line in lines if "[ALERT]" in line]
    return "\n".join(alerts or lines).replace(stage_prefix, "") or "haproxy -c failed"


@dataclass(frozen=True)
class Stopped:
    """An HAProxy that a manager had left running, and that was stopped."""

    workdir: Path
    master: int


def stop_left_running(workdir: str | Path) -> list[Stopped]:
    """Stop the HAProxies that managers left running (`detach`, as `serve` does when it stops)
    from `workdir`: its own, and those of its `haproxy-<group>` directories (`serve`'s
    layout). Each is taken over as a new manager would (`adopt`), then stopped with all its
    workers. FileNotFoundError when `workdir` is not a directory."""
    root = Path(workdir)
    if not root.is_dir():
        raise FileNotFoundError(errno.ENOENT, "no such directory", str(root))
    stopped = []
    for directory in [root, *sorted(root.glob("haproxy-*"))]:
        if not (directory / STATE_FILE).is_file():
            continue
        manager = HAProxyManager(directory, supervise_every=None)
        if manager.adopt():
            master = manager.master_pid
            manager.stop()
            if master is not None:
                stopped.append(Stopped(manager.workdir, master))
    return stopped


def _join(thread: threading.Thread | None) -> None:
    """Wait for a supervisor thread that was told to stop (unless it is the caller)."""
    if thread is not None and thread is not threading.current_thread():
        thread.join()


def _alive(pid: int) -> bool:
    """Whether a process exists and has not exited (an exited child of someone else may
    linger as a zombie until its parent reaps it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def _wait_gone(pid: int, timeout: float) -> bool:
    """Wait until a process is gone (or a zombie); False if it is still alive after `timeout`."""
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)
    return True


def _stop_adopted(pid: int, timeout: float) -> None:
    """Stop an adopted master's process group, which is not our child to wait for."""
    for signum in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signum)
        if _wait_gone(pid, timeout):
            return


def _stop_group(process: "subprocess.Popen[bytes]", timeout: float) -> None:
    """Stop a process group: SIGTERM (HAProxy's fast stop), then SIGKILL for what remains."""
    pgid = process.pid
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=timeout)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    process.wait()
