"""Processes we start, recorded by PID in a state folder, and stopped by that PID only.

A service is launched as the leader of its own session (and so of its own process group), its PID is
written to `<state>/pid`, and stopping it signals that group: a server's helper children (uvicorn workers,
a wineserver) go with it and nothing else on the machine is touched. A PID file can outlive its process and
the PID can be reused; `recorded_process` tells the two apart by the process start time.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import psutil

#: A process created this long after its PID file was written cannot be the one the file records.
_PID_FILE_SLACK_S = 2.0


def write_atomically(path: Path, text: str) -> None:
    """Write `text` so that a concurrent reader sees the old file or the new one, never half of it."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def read_int(path: Path) -> int | None:
    """The integer stored in `path`, or None when the file is missing or garbled."""
    try:
        return int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def recorded_process(pid_file: Path) -> psutil.Process | None:
    """The live process that `pid_file` records, or None when it is gone, a zombie, or a reused PID."""
    pid = read_int(pid_file)
    if pid is None:
        return None
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        if proc.create_time() > pid_file.stat().st_mtime + _PID_FILE_SLACK_S:
            return None  # the PID was reused by a process born after our record
        return proc
    except (psutil.NoSuchProcess, FileNotFoundError):
        return None


def launch(argv: list[str], *, cwd: Path, env: dict[str, str], log_file: Path) -> subprocess.Popen[bytes]:
    """Start `argv` detached from our terminal and session, its output appended to `log_file`."""
    with log_file.open("ab") as log:
        log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {' '.join(argv)}\n".encode())
        log.flush()
        return subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def listens_on(pid: int, port: int) -> bool:
    """Whether process `pid` or one of its descendants listens on TCP `port`.

    A health check alone cannot tell our server from another one already on that port (ours then fails
    to bind and exits a moment later); the listening socket can.
    """
    try:
        root = psutil.Process(pid)
        family = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return False
    for proc in family:
        try:
            connections = proc.net_connections(kind="tcp")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if any(c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port for c in connections):
            return True
    return False


def _group_alive(pgid: int) -> bool:
    """Whether any non-zombie process is left in process group `pgid`."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # killpg also succeeds on zombies that no one has reaped yet (a parent that exited, an init that
    # does not reap): only a live member counts.
    for proc in psutil.process_iter(["status"]):
        try:
            if os.getpgid(proc.pid) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                return True
        except (ProcessLookupError, psutil.Error):
            continue
    return False


def _wait_until(done: Callable[[], bool], timeout: float, reap: Callable[[], object]) -> bool:
    """Poll `done` until it holds or `timeout` passes; `reap` collects our own exited children meanwhile."""
    deadline = time.monotonic() + timeout
    while True:
        reap()
        if done():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def terminate(proc: psutil.Process, *, timeout: float, child: subprocess.Popen[bytes] | None = None) -> None:
    """SIGTERM the process (and its own group, if it leads one), then SIGKILL what is left after `timeout`.

    `child` is the Popen object when this process started it, so that it gets reaped rather than left
    as a zombie that still looks alive.
    """
    pid = proc.pid
    try:
        leads_group = os.getpgid(pid) == pid
    except ProcessLookupError:
        return

    def send(sig: signal.Signals) -> None:
        try:
            if leads_group:
                os.killpg(pid, sig)
            else:
                os.kill(pid, sig)
        except ProcessLookupError:
            pass

    def gone() -> bool:
        if leads_group:
            return not _group_alive(pid)
        try:
            return proc.status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    def reap() -> object:
        return child.poll() if child is not None else None

    send(signal.SIGTERM)
    if _wait_until(gone, timeout, reap):
        return
    send(signal.SIGKILL)
    _wait_until(gone, 10.0, reap)
