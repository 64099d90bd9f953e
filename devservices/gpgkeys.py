"""Throwaway GnuPG homes with a passphrase-less key pair, for tests and the demo.

The home lives under /tmp with a short name: gpg-agent puts its sockets there, and a Unix socket path
longer than about 100 bytes (as pytest's tmp paths easily are) makes gpg fail in odd ways.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
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


def create_gpg_key(uid: str = "Backup Test <backup@test>", *, home: Path | None = None) -> GpgKey:
    """Make a GnuPG home holding an ed25519 certify key with a cv25519 encryption subkey, no passphrase.

    Curve keys take milliseconds, where RSA generation can take seconds of entropy on a busy machine.
    """
    if home is None:
        home = Path(tempfile.mkdtemp(prefix="gpg-", dir="/tmp"))
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(home, 0o700)  # gpg warns about, and may refuse, a home others can read
    _gpg(home, "--quick-gen-key", uid, "ed25519", "cert", "never")
    fingerprint = next(
        line.split(":")[9]
        for line in _gpg(home, "--with-colons", "--list-keys", uid).splitlines()
        if line.startswith("fpr:")
    )
    _gpg(home, "--quick-add-key", fingerprint, "cv25519", "encr", "never")
    public_key_file = home / "public-key.asc"
    public_key_file.write_text(_gpg(home, "--armor", "--export", fingerprint))
    return GpgKey(home=home, fingerprint=fingerprint, public_key_file=public_key_file, uid=uid)


def remove_gpg_home(home: Path) -> None:
    """Stop the home's gpg-agent (it would outlive us otherwise) and delete the home."""
    env = {**os.environ, "GNUPGHOME": str(home)}
    subprocess.run(["gpgconf", "--kill", "all"], env=env, capture_output=True, timeout=30, check=False)
    shutil.rmtree(home, ignore_errors=True)
