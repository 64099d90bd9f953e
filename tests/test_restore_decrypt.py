"""`Gpg.decrypting_reader`: python-gnupg's push callback turned into a pull stream with a bounded queue.

A consumer that does not read holds gpg back (nothing piles up in memory), one that stops early ends gpg
without the rest of the source being read, and every gpg failure surfaces from `read` naming the object.
"""

from __future__ import annotations

import io
import os
import time

import pytest

from mongobackup.crypto import DECRYPT_QUEUE_CHUNKS, EncryptionKeys, Gpg
from mongobackup.errors import EncryptionError
from mongobackup.streams import CHUNK_SIZE

MIB = 1 << 20


class CountingSource(io.RawIOBase):
    """A readable over bytes that counts how far it has been read (to see what gpg pulled)."""

    def __init__(self, data: bytes):
        super().__init__()
        self._data = memoryview(data)
        self.position = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        if self.closed:  # as a file or an S3 body does once closed
            raise ValueError("I/O operation on closed file")
        n = min(len(buffer), len(self._data) - self.position)
        buffer[:n] = self._data[self.position : self.position + n]
        self.position += n
        return n


@pytest.fixture(scope="module")
def message(gpg_key) -> tuple[bytes, bytes]:
    """48 MiB of random plaintext and its encryption to the test key."""
    plain = os.urandom(48 * MIB)
    out: list[bytes] = []
    Gpg(gpg_key.home).encrypt_stream(io.BytesIO(plain), out.append, EncryptionKeys((gpg_key.fingerprint,)))
    return plain, b"".join(out)


def test_round_trip_in_small_reads(gpg_key, message):
    plain, encrypted = message
    reader = Gpg(gpg_key.home).decrypting_reader(io.BytesIO(encrypted), name="s3://b/k")
    parts = []
    while chunk := reader.read(100_000):
        parts.append(chunk)
    assert b"".join(parts) == plain
    assert reader.read(10) == b""  # stays at its end


def test_a_consumer_that_does_not_read_holds_gpg_back(gpg_key, message):
    _, encrypted = message
    source = CountingSource(encrypted)
    reader = Gpg(gpg_key.home).decrypting_reader(source, name="s3://b/k")  # type: ignore[arg-type]
    try:
        time.sleep(1.5)  # plenty for gpg to decrypt all 48 MiB if nothing held it back
        # The queue, python-gnupg's reads and the pipes' and gpg's own buffers: a few MiB, not the message.
        assert source.position < (DECRYPT_QUEUE_CHUNKS + 8) * CHUNK_SIZE < len(encrypted) // 2
        assert reader.read(1000)
    finally:
        reader.close()


def test_closing_early_stops_without_reading_the_rest(gpg_key, message):
    _, encrypted = message
    source = CountingSource(encrypted)
    reader = Gpg(gpg_key.home).decrypting_reader(source, name="s3://b/k")  # type: ignore[arg-type]
    assert len(reader.read(1000)) == 1000
    started = time.monotonic()
    reader.close()
    assert time.monotonic() - started < 5
    assert source.position < len(encrypted)


def test_a_wrong_key_fails_from_read_naming_the_object(other_gpg_key, message):
    _, encrypted = message
    reader = Gpg(other_gpg_key.home).decrypting_reader(io.BytesIO(encrypted), name="s3://bucket/daily/x.gpg")
    with pytest.raises(EncryptionError, match=r"gpg could not decrypt s3://bucket/daily/x\.gpg: no secret key"):
        reader.read(10)


def test_damage_found_at_the_end_is_raised_before_the_stream_ends(gpg_key, message):
    plain, encrypted = message
    damaged = bytearray(encrypted)
    damaged[len(damaged) // 3] ^= 0x01  # gpg hands out all the plaintext and finds out at the end
    reader = Gpg(gpg_key.home).decrypting_reader(io.BytesIO(bytes(damaged)), name="s3://b/k")
    got = 0
    with pytest.raises(EncryptionError, match="s3://b/k: the encrypted data was modified"):
        while chunk := reader.read(CHUNK_SIZE):
            got += len(chunk)
    assert got == len(plain)  # every byte came out, and still the reader refused to end cleanly
