"""GPG encryption and decryption of streams, through python-gnupg and the `gpg` binary.

The stored object is a plain OpenPGP message, so `gpg --decrypt` alone can open it in an emergency. GPG's own
compression is switched off: the data is already zstd-compressed, and zlib over it costs 5x for nothing.
python-gnupg keeps all output in memory unless an `on_data` callback returns False, so every call here
streams through one.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import queue
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import gnupg

from mongobackup.errors import EncryptionError
from mongobackup.streams import CHUNK_SIZE

DEFAULT_CIPHER = "AES256"
_NO_COMPRESSION = ["--compress-algo", "none"]
#: Plaintext chunks (of up to CHUNK_SIZE) a DecryptingReader holds between gpg and its consumer.
DECRYPT_QUEUE_CHUNKS = 4


@dataclass(frozen=True)
class EncryptionKeys:
    """Who can open a backup: public-key recipients (by fingerprint) or a symmetric passphrase."""

    fingerprints: tuple[str, ...] = ()
    passphrase: str | None = field(default=None, repr=False)
    cipher: str = DEFAULT_CIPHER

    def __post_init__(self) -> None:
        if not self.fingerprints and not self.passphrase:
            raise EncryptionError("encryption: no recipients and no passphrase: refusing to store plaintext")


class Gpg:
    """One GnuPG home: imports the plan's key files, resolves recipients, streams encryption through gpg."""

    def __init__(self, gnupghome: str | Path | None = None):
        home = gnupghome or os.environ.get("GNUPGHOME")
        self.home = str(home) if home else None
        try:
            if home:
                # A home dedicated to backups may not exist yet; gpg insists that only we can read it.
                Path(home).mkdir(mode=0o700, parents=True, exist_ok=True)
            self._gpg = _PipedGPG(gnupghome=self.home)
        except (OSError, ValueError) as exc:
            raise EncryptionError(f"gpg: cannot start GnuPG (home {self.home or '~/.gnupg'}): {exc}") from exc
        # python-gnupg copies with 16 KiB reads by default; 1 MiB keeps Python overhead out of the hot path.
        self._gpg.buffer_size = CHUNK_SIZE

    def import_key_files(self, paths: Sequence[str | Path]) -> list[str]:
        """Imports public key files; returns their fingerprints. Names the file on any failure."""
        fingerprints: list[str] = []
        for path in paths:
            try:
                data = Path(path).read_bytes()
            except OSError as exc:
                raise EncryptionError(f"encryption.public_key_files: cannot read {path}: {exc}") from exc
            result = self._gpg.import_keys(data)
            if not result.fingerprints:
                raise EncryptionError(f"encryption.public_key_files: {path} holds no OpenPGP public key")
            fingerprints.extend(fp for fp in result.fingerprints if fp not in fingerprints)
        return fingerprints

    def resolve_recipients(self, recipients: Sequence[str]) -> list[str]:
        """Full fingerprints of the given key ids/fingerprints/emails; each must name one usable key."""
        resolved: list[str] = []
        for recipient in recipients:
            found = self._gpg.list_keys(keys=[recipient])
            keys = [k for k in found if _can_encrypt(k)]
            if found and not keys:
                raise EncryptionError(f"GPG recipient {recipient!r}: {_why_unusable(found[0])}")
            if not keys:
                raise EncryptionError(
                    f"unknown GPG recipient {recipient!r}: no usable public key for it in the keyring "
                    f"{self.home or '~/.gnupg'} (import it or list its file under encryption.public_key_files)"
                )
            if len(keys) > 1:
                raise EncryptionError(f"GPG recipient {recipient!r} matches {len(keys)} keys: use a fingerprint")
            fingerprint = keys[0]["fingerprint"]
            if fingerprint not in resolved:
                resolved.append(fingerprint)
        return resolved

    def encrypt_stream(self, source: BinaryIO, on_data: Callable[[bytes], None], keys: EncryptionKeys) -> None:
        """Encrypts `source` to `on_data` chunk by chunk. Raises if gpg, the source or the sink failed."""
        kwargs: dict[str, object] = {"armor": False, "extra_args": [*_NO_COMPRESSION, "--cipher-algo", keys.cipher]}
        self._set_sink(on_data)
        try:
            if keys.fingerprints:
                # Recipients are pinned by full fingerprint in the plan: that is the trust decision, so gpg's
                # web of trust (which would refuse an imported but uncertified key) is not consulted.
                result = self._gpg.encrypt_file(source, list(keys.fingerprints), always_trust=True, **kwargs)  # type: ignore[arg-type]
            else:
                result = self._gpg.encrypt_file(
                    source, None, symmetric=keys.cipher, passphrase=keys.passphrase, **kwargs
                )  # type: ignore[arg-type]
        finally:
            self._set_sink(None)
        _check(result, "encrypt")

    def decrypt_stream(
        self, source: BinaryIO, on_data: Callable[[bytes], None], *, passphrase: str | None = None
    ) -> None:
        """Decrypts an OpenPGP message to `on_data`; raises on a wrong key, bad passphrase or damaged data."""
        self._set_sink(on_data)
        try:
            result = self._gpg.decrypt_file(source, passphrase=passphrase)
        finally:
            self._set_sink(None)
        _check(result, "decrypt")

    def decrypting_reader(
        self, source: BinaryIO, *, name: str, passphrase: str | None = None, queue_chunks: int = DECRYPT_QUEUE_CHUNKS
    ) -> DecryptingReader:
        """A readable of the plaintext of the OpenPGP message in `source`, decrypted as it is read.

        `name` (e.g. the object's s3:// address) goes into every error. This Gpg must not be used for
        anything else until the reader is exhausted or closed: python-gnupg's sink is per instance.
        """
        return DecryptingReader(self, source, name=name, passphrase=passphrase, queue_chunks=queue_chunks)

    def _set_sink(self, on_data: Callable[[bytes], None] | None) -> None:
        if on_data is None:
            self._gpg.on_data = None
            return

        def sink(chunk: bytes) -> bool:
            if chunk:
                on_data(chunk)
            return False  # tells python-gnupg not to keep the chunk

        self._gpg.on_data = sink


#: Pipe buffer asked for between us and gpg (Linux; at most /proc/sys/fs/pipe-max-size, 1 MiB by default):
#: one CHUNK_SIZE write or read per wake-up instead of sixteen through the default 64 KiB.
PIPE_SIZE = CHUNK_SIZE


class _PipedGPG(gnupg.GPG):
    """python-gnupg's GPG whose pipes to gpg hold a whole chunk, where the OS allows it."""

    def _open_subprocess(self, *args: object, **kwargs: object) -> subprocess.Popen:
        process = super()._open_subprocess(*args, **kwargs)
        for pipe in (process.stdin, process.stdout):
            if pipe is not None and hasattr(fcntl, "F_SETPIPE_SZ"):
                with contextlib.suppress(OSError):  # refused (a lower limit): the default size still works
                    fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        return process


class _End:
    """The last item a DecryptingReader's queue carries: how the decryption ended."""

    def __init__(self, error: BaseException | None):
        self.error = error


class DecryptingReader(io.RawIOBase):
    """Pull-based plaintext of an OpenPGP message: gpg decrypts in a thread, `read` takes from a bounded queue.

    python-gnupg hands plaintext to a callback in its own thread. The callback blocks while the queue is
    full, which stops python-gnupg reading gpg's stdout, which stops gpg, which stops the copy of `source`:
    memory stays at `queue_chunks` chunks however large the message. A failure of gpg (wrong key, bad
    passphrase, damaged or truncated data) is raised from `read` as EncryptionError naming `name`, at the
    latest where the plaintext ends, so a consumer that reads to the end never takes damaged data for whole.
    """

    def __init__(
        self, gpg: Gpg, source: BinaryIO, *, name: str, passphrase: str | None, queue_chunks: int = DECRYPT_QUEUE_CHUNKS
    ):
        super().__init__()
        self.name = name
        self._source = source
        self._queue: queue.Queue[bytes | _End] = queue.Queue(maxsize=max(1, queue_chunks))
        self._cancelled = threading.Event()
        self._pending = memoryview(b"")
        self._finished = False
        self.bytes_read = 0
        self._thread = threading.Thread(target=self._decrypt, args=(gpg, passphrase), name="gpg-decrypt", daemon=True)
        self._thread.start()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._pending:
            if self._finished:
                return 0
            item = self._queue.get()
            if isinstance(item, _End):
                self._finished = True
                self._thread.join()
                if item.error is not None:
                    raise self._failure(item.error)
                return 0
            self._pending = memoryview(item)
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        self.bytes_read += n
        return n

    def close(self) -> None:
        """Stops early: later plaintext is dropped and the source closed, so gpg ends without reading it all."""
        if not self._finished:
            self._cancelled.set()
            with contextlib.suppress(Exception):  # closing a stream another thread reads may complain
                self._source.close()
            self._thread.join(timeout=30)
            self._finished = True
        super().close()

    def _decrypt(self, gpg: Gpg, passphrase: str | None) -> None:
        error: BaseException | None = None
        try:
            gpg.decrypt_stream(self._source, self._offer, passphrase=passphrase)
        except BaseException as exc:  # handed to the reading thread, which raises it
            error = exc
        self._put(_End(None if self._cancelled.is_set() else error))

    def _offer(self, chunk: bytes) -> None:
        self._put(chunk)

    def _put(self, item: bytes | _End) -> None:
        # A timeout loop rather than a plain put: once the consumer has gone, nobody would ever take it.
        while not self._cancelled.is_set():
            try:
                self._queue.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def _failure(self, error: BaseException) -> BaseException:
        if isinstance(error, EncryptionError):
            return EncryptionError(
                f"gpg could not decrypt {self.name}: {explain_decrypt_failure(str(error))} ({error})"
            )
        if isinstance(error, OSError):  # gpg died or its pipe broke mid-stream
            return EncryptionError(f"gpg could not decrypt {self.name}: gpg stream broken: {error}")
        return error  # the source failed (e.g. a storage read): its own error names what failed


#: What gpg's status and stderr lines mean for a restore, most specific first.
_DECRYPT_FAILURES = (
    (
        ("NO_SECKEY", "No secret key"),
        "no secret key for this message in the keyring (wrong key, or the private key is not in this GnuPG home)",
    ),
    (("BAD_PASSPHRASE", "Bad session key"), "wrong passphrase"),
    (("BADMDC", "manipulated"), "the encrypted data was modified (integrity check failed)"),
    (("pending bytes", "unexpected EOF", "packet(s) truncated", "premature EOF"), "the encrypted data is truncated"),
    (("NODATA",), "not an OpenPGP message (no encrypted data found)"),
    (("invalid packet", "CRC error", "invalid", "unknown packet"), "the encrypted data is damaged"),
)


def explain_decrypt_failure(text: str) -> str:
    """A short reason for a failed decryption, in an operator's words, from gpg's status and stderr text."""
    for markers, reason in _DECRYPT_FAILURES:
        if any(marker in text for marker in markers):
            return reason
    return "decryption failed"


def _can_encrypt(key: dict) -> bool:
    # 'cap' lists capabilities; an upper-case E means the key as a whole (some subkey) can encrypt.
    return "E" in key.get("cap", "") and key.get("trust") not in ("r", "e")


def _why_unusable(key: dict) -> str:
    """Why a key the keyring holds cannot encrypt: expired (and when), revoked, or no encryption subkey."""
    fingerprint = key.get("fingerprint", "?")
    if key.get("trust") == "r":
        return f"GPG key {fingerprint} is revoked: encrypt to its replacement"
    renew = "extend its expiry (gpg --quick-set-expire) and export it again, or encrypt to a new key"
    if key.get("trust") == "e" or _expired(key.get("expires")):
        return f"GPG key {fingerprint} expired on {_utc(key['expires'])}: {renew}"
    subkeys = [info for info in (key.get("subkey_info") or {}).values() if "e" in info.get("cap", "")]
    expired = [info for info in subkeys if info.get("trust") == "e" or _expired(info.get("expires"))]
    if subkeys and len(expired) == len(subkeys):
        last = max(expired, key=lambda info: int(info.get("expires") or 0))
        return f"the encryption subkey of GPG key {fingerprint} expired on {_utc(last['expires'])}: {renew}"
    return f"GPG key {fingerprint} has no usable encryption subkey"


def _expired(expires: str | None) -> bool:
    return bool(expires) and int(expires) <= time.time()  # type: ignore[arg-type]


def _utc(epoch: str | None) -> str:
    if not epoch:
        return "an unknown date"
    return datetime.fromtimestamp(int(epoch), UTC).strftime("%Y-%m-%d %H:%M UTC")


def _check(result: gnupg.Crypt, operation: str) -> None:
    failure = getattr(result, "on_data_failure", None)
    if failure is not None:
        raise failure
    if not result.ok or result.returncode != 0:
        detail = (result.status or "").strip() or "no status"
        stderr_tail = " | ".join(line for line in (result.stderr or "").splitlines()[-4:] if line.strip())
        raise EncryptionError(f"gpg {operation} failed (exit {result.returncode}): {detail}; {stderr_tail}")
