"""A throwaway etcd on a restored snapshot: what the drill (and an operator's rehearsal) restores into.

`etcdctl snapshot restore` (the stock tool, which checks the trailing hash again) builds a fresh data folder
from the file; an `etcd` member is started on it on loopback ports, health-checked, read, and stopped by
its own PID (SIGTERM, then SIGKILL), however the reading went. Nothing outside the given work folder is
touched, and the folder is the caller's to remove.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from mongobackup.errors import BackupError

DRILL_MEMBER = "drill"
STARTUP_TIMEOUT_S = 60.0


class ScratchEtcdError(BackupError):
    """The restored snapshot could not be turned into a running etcd; names the tool and its output."""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise ScratchEtcdError(f"{name} is not on PATH: the etcd drill needs the etcd server and etcdctl (3.4+)")
    return found


@contextmanager
def scratch_etcd(snapshot_file: Path, workdir: Path) -> Iterator[str]:
    """Restores `snapshot_file` with etcdctl into `workdir`, runs etcd on it; yields its client URL."""
    etcd, etcdctl = _binary("etcd"), _binary("etcdctl")
    data = Path(workdir) / "member-data"
    client, peer = f"http://127.0.0.1:{_free_port()}", f"http://127.0.0.1:{_free_port()}"
    cluster = f"{DRILL_MEMBER}={peer}"
    restore = subprocess.run(
        [etcdctl, "snapshot", "restore", str(snapshot_file), "--data-dir", str(data), "--name", DRILL_MEMBER,
         "--initial-cluster", cluster, "--initial-advertise-peer-urls", peer],
        env={**os.environ, "ETCDCTL_API": "3"},
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    if restore.returncode != 0:
        tail = " | ".join(restore.stderr.strip().splitlines()[-3:])
        raise ScratchEtcdError(f"etcdctl snapshot restore {snapshot_file} failed (exit {restore.returncode}): {tail}")
    log = (Path(workdir) / "etcd.log").open("wb")
    member = subprocess.Popen(
        [etcd, "--name", DRILL_MEMBER, "--data-dir", str(data), "--listen-client-urls", client,
         "--advertise-client-urls", client, "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
         "--initial-cluster", cluster],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    try:
        _wait_healthy(client, member, Path(workdir) / "etcd.log")
        yield client
    finally:
        member.terminate()
        try:
            member.wait(timeout=15)
        except subprocess.TimeoutExpired:
            member.kill()
            member.wait(timeout=15)
        log.close()


def _wait_healthy(client: str, member: subprocess.Popen[bytes], log_file: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    with httpx.Client(trust_env=False, timeout=2.0) as http:
        while time.monotonic() < deadline:
            if member.poll() is not None:
                tail = " | ".join(log_file.read_text(errors="replace").strip().splitlines()[-3:])
                raise ScratchEtcdError(f"the scratch etcd exited with code {member.returncode}: {tail}")
            try:
                if http.get(f"{client}/health").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
    raise ScratchEtcdError(f"the scratch etcd did not answer on {client} within {STARTUP_TIMEOUT_S:.0f} s")
