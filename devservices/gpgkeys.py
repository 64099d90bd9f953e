"""Throwaway GnuPG homes with a passphrase-less key pair, for tests and the demo.

The home lives under /tmp with a short name: gpg-agent puts its sockets there, and a Unix socket path
longer than about 100 bytes (as pytest's tmp paths easily are) makes gpg fail in odd ways.

gpg starts a gpg-agent daemon for a home on first need (a secret key, a symmetric passphrase) and leaves it
running after gpg exits: whoever removes a home stops its agent first (`remove_gpg_home`), and a test run
stops the agents of the homes it made under its tmp folder (`stop_gpg_agents_under`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class GpgKey:
    """A key pair in its own GnuPG home; `fingerprint` is the primary (certify-only) key's."""

    home: Path
    fingerprint: str
    public_key_file: Path  # the armored public key, for importing into another home or a config
    uid: str


def _gpg(home: Path, *args: str) -> str:
    done = subprocess.run(
        [
            "gpg",
            "--homedir",
            str(home),
            "--batch",
            "--no-tty",
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"gpg {' '.join(args)} failed in {home} (code {done.returncode}):\n{done.stderr}")
    return done.stdout


#: `create_gpg_key(expired=True)` makes the key at this (faked) time, valid for one day.
EXPIRED_KEY_CREATED = "20200101T000000"


def create_gpg_key(
    uid: str = "Backup Test <backup@test>", *, home: Path | None = None, expired: bool = False
) -> GpgKey:
    """Make a GnuPG home holding an ed25519 certify key with a cv25519 encryption subkey, no passphrase.

    Curve keys take milliseconds, where RSA generation can take seconds of entropy on a busy machine.
    expired: the key and its subkey are made on 2020-01-01 (gpg's faked system time) and expired one day
    later, at 2020-01-02T00:00:00Z, as a key nobody renewed.
    """
    when = ["--faked-system-time", f"{EXPIRED_KEY_CREATED}!"] if expired else []
    expiry = "1d" if expired else "never"
    if home is None:
        home = Path(tempfile.mkdtemp(prefix="gpg-", dir="/tmp"))
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(home, 0o700)  # gpg warns about, and may refuse, a home others can read
    _gpg(home, *when, "--quick-gen-key", uid, "ed25519", "cert", expiry)
    fingerprint = next(
        line.split(":")[9]
        for line in _gpg(home, "--with-colons", "--list-keys", uid).splitlines()
        if line.startswith("fpr:")
    )
    _gpg(home, *when, "--quick-add-key", fingerprint, "cv25519", "encr", expiry)
    public_key_file = home / "public-key.asc"
    public_key_file.write_text(_gpg(home, "--armor", "--export", fingerprint))
    return GpgKey(home=home, fingerprint=fingerprint, public_key_file=public_key_file, uid=uid)


@contextmanager
def throwaway_gpg_key(uid: str, *, home: Path | None = None, expired: bool = False) -> Iterator[GpgKey]:
    """`create_gpg_key` for the length of a `with` block; the home and its gpg-agent go at its end."""
    key = create_gpg_key(uid, home=home, expired=expired)
    try:
        yield key
    finally:
        remove_gpg_home(key.home)


def remove_gpg_home(home: Path) -> None:
    """Stop the home's gpg-agent (it would outlive us otherwise) and delete the home."""
    stop_gpg_agent(home)
    shutil.rmtree(home, ignore_errors=True)


def stop_gpg_agent(home: Path, *, timeout: float = 10.0) -> None:
    """Ask the gpg-agent of `home` (if any) to exit, through gpgconf, and wait until it is gone."""
    subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], capture_output=True, timeout=30, check=False)
    deadline = time.monotonic() + timeout
    while gpg_agent_pids(home) and time.monotonic() < deadline:
        time.sleep(0.05)


def stop_gpg_agents_under(root: Path) -> None:
    """Stop every gpg-agent whose GnuPG home lies under `root` (homes a test or a run made in its folder)."""
    for home in sorted({home for home, _ in _gpg_agents() if home.is_relative_to(root)}):
        stop_gpg_agent(home)


def gpg_agent_pids(home: Path) -> list[int]:
    """The PIDs of the live gpg-agent daemons serving `home`, read from /proc."""
    return [pid for agent_home, pid in _gpg_agents() if agent_home == home]


def _gpg_agents() -> list[tuple[Path, int]]:
    """(home, PID) of every live gpg-agent on the machine started with --homedir, as gpg starts it.

    Cheap enough to run after every test: only a process whose `comm` says gpg-agent has its command line read.
    """
    agents: list[tuple[Path, int]] = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/comm", "rb") as comm:
                if comm.read() != b"gpg-agent\n":
                    continue  # a zombie keeps its comm but has an empty cmdline: it is sorted out below
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                argv = cmdline.read().split(b"\0")
        except OSError:
            continue  # gone meanwhile, or not ours to read
        if b"--homedir" in argv and argv.index(b"--homedir") + 1 < len(argv):
            agents.append((Path(os.fsdecode(argv[argv.index(b"--homedir") + 1])), int(pid)))
    return agents
