"""`LocalServices`: start, health-check and stop the local stand-ins for the real services.

Each service lives in its own state folder `run_dir/<name>/`: its data, its log `<name>.log`, a `pid`
file and a `port` file. Those files are the only shared state, so a second process
(`python -m devservices stop`) finds and stops what another one started, by PID and never by name.
"""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from devservices.catalog import SPECS, Launch, ServiceSpec, find_binary
from devservices.process import launch, listens_on, read_int, recorded_process, terminate, write_atomically

#: Fixed ports for the demo, so URLs in its docs and dashboards stay put.
DEMO_PORTS: dict[str, int] = {
    "mongo-a": 27101,
    "mongo-b": 27102,
    "mongo-scratch": 27103,
    "moto": 5055,
    "influxdb": 8086,
    "victoria": 18428,
    "prefect": 4200,
    "seaweedfs": 8333,
    "etcd": 2379,
    "consul": 8500,
}

SERVICE_NAMES: tuple[str, ...] = tuple(SPECS)

#: What `python -m devservices start` brings up when given no names: all but the optional SeaweedFS and
#: the worker (which only a demo that runs deployments needs).
DEFAULT_SERVICES: tuple[str, ...] = (
    "mongo-a",
    "mongo-b",
    "mongo-scratch",
    "moto",
    "influxdb",
    "victoria",
    "prefect",
)

_LOG_TAIL_LINES = 15


class ServiceError(RuntimeError):
    """A local service could not be started or found; the message names it and its log file."""

    def __init__(self, service: str, reason: str, log_file: Path | None = None):
        message = f"{service}: {reason}"
        if log_file is not None:
            message += f"; see its log {log_file}"
            tail = _tail(log_file)
            if tail:
                message += f"\n--- last lines of {log_file.name} ---\n{tail}"
        super().__init__(message)
        self.service = service
        self.log_file = log_file


@dataclass(frozen=True)
class ServiceStatus:
    """One line of `status`: what the state folder records and whether the server answers."""

    name: str
    pid: int | None
    port: int | None
    running: bool  # the recorded process is alive
    healthy: bool  # and answers its health check

    @property
    def state(self) -> str:
        if self.healthy:
            return "up"
        return "unhealthy" if self.running else "down"


class LocalServices:
    """The local services under one run folder.

    `ports=None` gives each service a free loopback port picked when it starts; a mapping fixes the ports
    of the services it names (the demo passes `DEMO_PORTS`), the others still get free ones.
    """

    def __init__(self, run_dir: Path, ports: Mapping[str, int] | None = None):
        unknown = set(ports or {}) - set(SPECS)
        if unknown:
            raise ValueError(f"unknown services in ports: {sorted(unknown)}; known: {list(SPECS)}")
        self.run_dir = Path(run_dir).resolve()
        self._fixed_ports = dict(ports or {})
        self._children: dict[str, subprocess.Popen[bytes]] = {}
        self._ports_lock = threading.Lock()
        self._handed_out: set[int] = set()  # ports picked by this object, so parallel starts never share one

    # --- where things are -------------------------------------------------------------------------

    def state_dir(self, name: str) -> Path:
        """The folder holding this service's data, log, pid and port files."""
        return self.run_dir / _spec(name).name

    def log_file(self, name: str) -> Path:
        return self.state_dir(name) / f"{name}.log"

    def port(self, name: str) -> int:
        """The port the service listens on: as recorded by whoever started it, else as fixed here."""
        recorded = read_int(self.state_dir(name) / "port")
        fixed = self._fixed_ports.get(name)
        if fixed is not None and (recorded is None or recorded_process(self.state_dir(name) / "pid") is None):
            return fixed
        if recorded is not None:
            return recorded
        raise ServiceError(name, f"not started under {self.run_dir}, so it has no port yet")

    def url(self, name: str) -> str:
        """The HTTP base URL (Prefect: its API URL, ending in /api; SeaweedFS: its S3 endpoint)."""
        if name.startswith("mongo-"):
            raise ValueError(f"{name} speaks the MongoDB protocol, not HTTP: use mongo_uri({name!r})")
        return _spec(name).url(self.port(name))

    def mongo_uri(self, name: str) -> str:
        """A URI pymongo and the mongo tools connect to directly, bypassing replica-set discovery."""
        if not name.startswith("mongo-"):
            raise ValueError(f"{name} is not a MongoDB service: use url({name!r})")
        return _spec(name).url(self.port(name))

    # --- start ------------------------------------------------------------------------------------

    def start(self, names: Iterable[str]) -> None:
        """Start these services (and what they require), each once, and wait until every one answers.

        Services with nothing left to wait for start together in threads. A service already running
        under this run folder is only health-checked. Raises ServiceError naming each that failed.
        """
        pending = _with_requirements(names)
        done: set[str] = set()
        errors: list[ServiceError] = []
        while pending and not errors:
            wave = [n for n in pending if set(_spec(n).requires) <= done]
            with ThreadPoolExecutor(max_workers=len(wave), thread_name_prefix="devservices") as pool:
                outcomes = list(zip(wave, pool.map(self._start_one_catching, wave), strict=True))
            for name, error in outcomes:
                if error is None:
                    done.add(name)
                else:
                    errors.append(error)
            pending = [n for n in pending if n not in wave]
        if len(errors) == 1:
            raise errors[0]
        if errors:
            raise ServiceError(
                ", ".join(e.service for e in errors),
                "failed to start:\n\n" + "\n\n".join(str(e) for e in errors),
            )

    def _start_one_catching(self, name: str) -> ServiceError | None:
        try:
            self._start_one(name)
        except ServiceError as exc:
            return exc
        return None

    def _start_one(self, name: str) -> None:
        spec = _spec(name)
        state = self.state_dir(name)
        state.mkdir(parents=True, exist_ok=True)
        running = recorded_process(state / "pid")
        if running is not None:
            self._adopt(spec, running.pid)
            return
        binary = find_binary(spec.binary)
        if binary is None:
            raise ServiceError(
                name,
                f"{spec.binary!r} is not in {Path(sys.executable).parent} nor on PATH; install it: {spec.install_hint}",
            )
        # A picked port can be taken by someone else before the server binds it: pick a new one, once.
        attempts = 1 if name in self._fixed_ports else 2
        for attempt in range(1, attempts + 1):
            try:
                self._launch(spec, binary, reuse_port=attempt == 1)
                return
            except _ExitedEarly as exc:
                if attempt == attempts:
                    raise exc.error from None

    def _adopt(self, spec: ServiceSpec, pid: int) -> None:
        """Take over a service someone already started here: check its port and that it answers."""
        port = self.port(spec.name)
        wanted = self._fixed_ports.get(spec.name)
        if wanted is not None and wanted != port:
            raise ServiceError(
                spec.name,
                f"already running (pid {pid}) on port {port}, not on the requested {wanted}; stop it first",
                self.log_file(spec.name),
            )
        self._wait_healthy(spec, port, None)

    def _launch(self, spec: ServiceSpec, binary: Path, *, reuse_port: bool) -> None:
        """Start the server, record its port and PID, and wait until it answers."""
        state = self.state_dir(spec.name)
        port = self._fixed_ports.get(spec.name) or self._pick_port(read_int(state / "port") if reuse_port else None)
        if spec.name in self._fixed_ports and not _port_is_free(port):
            raise ServiceError(spec.name, f"its port {port} is taken by a process not recorded under {state}")
        extra = tuple(self._pick_port(None) for _ in range(spec.extra_ports))
        write_atomically(state / "port", f"{port}\n")
        plan = Launch(state_dir=state, port=port, extra_ports=extra, binary=binary, url_of=self.url)
        plan.data_dir.mkdir(exist_ok=True)
        env = {**os.environ, **spec.env(plan)}
        child = launch(spec.argv(plan), cwd=state, env=env, log_file=self.log_file(spec.name))
        self._children[spec.name] = child
        write_atomically(state / "pid", f"{child.pid}\n")
        try:
            self._wait_healthy(spec, port, child)
            spec.after_start(plan)
        except _ExitedEarly:
            (state / "pid").unlink(missing_ok=True)
            raise
        except Exception as exc:
            self._stop_one(spec.name)
            if isinstance(exc, ServiceError):
                raise
            raise ServiceError(spec.name, f"set-up after start failed: {exc}", self.log_file(spec.name)) from exc

    def _pick_port(self, preferred: int | None) -> int:
        """A free loopback port no other service here uses; the one it had before when that is free."""
        with self._ports_lock:
            self._handed_out.discard(preferred)  # its own port from an earlier start here
            for name in SPECS:
                recorded = read_int(self.state_dir(name) / "port")
                if recorded is not None and recorded != preferred:
                    self._handed_out.add(recorded)
            self._handed_out.update(self._fixed_ports.values())
            port = _free_port(preferred, avoid=self._handed_out)
            self._handed_out.add(port)
            return port

    def _wait_healthy(self, spec: ServiceSpec, port: int, child: subprocess.Popen[bytes] | None) -> None:
        """Poll the health check until it passes, the process exits, or the start-up timeout ends."""
        deadline = time.monotonic() + spec.startup_timeout
        log = self.log_file(spec.name)
        while True:
            if spec.healthy(port) and (child is None or listens_on(child.pid, port)):
                return
            if child is not None:
                try:
                    code = child.wait(timeout=0.1)  # doubles as the pause between polls
                except subprocess.TimeoutExpired:
                    pass
                else:
                    raise _ExitedEarly(
                        ServiceError(
                            spec.name,
                            f"exited with code {code} before answering its health check on port {port}",
                            log,
                        )
                    )
            elif recorded_process(self.state_dir(spec.name) / "pid") is None:
                raise ServiceError(spec.name, "its process died while we waited for it", log)
            else:
                time.sleep(0.1)
            if time.monotonic() > deadline:
                raise ServiceError(
                    spec.name,
                    f"did not answer its health check on port {port} within {spec.startup_timeout:.0f} s",
                    log,
                )

    # --- stop and status ----------------------------------------------------------------------------

    def stop(self, names: Iterable[str] | None = None) -> None:
        """Stop these services (default: every one with a state folder here) by their recorded PIDs.

        SIGTERM, a wait, then SIGKILL, each to the service's own process group only. All stop in
        parallel, except the Prefect server, which goes last: a worker whose server is gone ignores SIGTERM.
        Stopping what is not running is a no-op.
        """
        chosen = list(SPECS) if names is None else [_spec(n).name for n in names]
        chosen = [n for n in chosen if self.state_dir(n).is_dir()]
        last = [n for n in chosen if n == "prefect"]
        for wave in ([n for n in chosen if n not in last], last):
            if wave:
                with ThreadPoolExecutor(max_workers=len(wave), thread_name_prefix="devservices-stop") as pool:
                    list(pool.map(self._stop_one, wave))

    def _stop_one(self, name: str) -> None:
        pid_file = self.state_dir(name) / "pid"
        child = self._children.pop(name, None)
        proc = recorded_process(pid_file)
        if proc is not None:
            terminate(proc, timeout=_spec(name).stop_timeout, child=child)
        elif child is not None:
            child.poll()
        pid_file.unlink(missing_ok=True)

    def status(self, names: Iterable[str] | None = None) -> list[ServiceStatus]:
        """What each service's state folder records, and whether it answers now."""
        result = []
        for name in SPECS if names is None else names:
            state = self.state_dir(name)
            proc = recorded_process(state / "pid")
            port = read_int(state / "port")
            healthy = proc is not None and port is not None and _spec(name).healthy(port)
            result.append(
                ServiceStatus(name, proc.pid if proc else read_int(state / "pid"), port, proc is not None, healthy)
            )
        return result


class _ExitedEarly(Exception):
    """The server process exited before answering: worth one retry when its port was picked for it."""

    def __init__(self, error: ServiceError):
        super().__init__(str(error))
        self.error = error


def _spec(name: str) -> ServiceSpec:
    try:
        return SPECS[name]
    except KeyError:
        raise ValueError(f"unknown service {name!r}; known: {', '.join(SPECS)}") from None


def _with_requirements(names: Iterable[str]) -> list[str]:
    """`names` plus what they require, each once, requirements first."""
    ordered: list[str] = []

    def add(name: str) -> None:
        for required in _spec(name).requires:
            add(required)
        if name not in ordered:
            ordered.append(name)

    for name in names:
        add(name)
    return ordered


def _port_is_free(port: int) -> bool:
    """Whether a server could listen on `port` now (as servers do, TIME_WAIT leftovers do not count)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
            return True
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            return False


def _free_port(preferred: int | None, *, avoid: set[int]) -> int:
    """A loopback port free right now and not in `avoid`: `preferred` if it is, else one the kernel picks."""
    if preferred is not None and preferred not in avoid and _port_is_free(preferred):
        return preferred
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in avoid:
            return port


def _tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    """The last lines of a log, for error messages; empty when there is no log yet."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 8192))
            text = f.read().decode(errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
