"""GPG streaming through python-gnupg and the real gpg binary."""

from __future__ import annotations

import io
import os
import subprocess

import pytest

from mongobackup.crypto import EncryptionKeys, Gpg
from mongobackup.errors import EncryptionError


@pytest.fixture
def empty_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("gpg", numbered=True)
    home.chmod(0o700)
    return home


def encrypt(gpg: Gpg, data: bytes, keys: EncryptionKeys) -> bytes:
    out: list[bytes] = []
    gpg.encrypt_stream(io.BytesIO(data), out.append, keys)
    return b"".join(out)


def test_public_key_from_file_encrypts_for_the_stock_gpg_cli(gpg_key, empty_home):
    gpg = Gpg(empty_home)  # holds no key until the plan's key file is imported
    fingerprints = gpg.resolve_recipients(gpg.import_key_files([gpg_key.public_key_file]))
    assert fingerprints == [gpg_key.fingerprint]
    data = os.urandom(3 << 20)
    message = encrypt(gpg, data, EncryptionKeys(tuple(fingerprints)))
    plain = subprocess.run(
        ["gpg", "--homedir", str(gpg_key.home), "--batch", "--quiet", "--decrypt"],
        input=message,
        capture_output=True,
        check=True,
    ).stdout
    assert plain == data


def test_symmetric_round_trip_and_wrong_passphrase(empty_home):
    gpg = Gpg(empty_home)
    data = os.urandom(100_000)
    message = encrypt(gpg, data, EncryptionKeys(passphrase="correct horse"))
    out: list[bytes] = []
    gpg.decrypt_stream(io.BytesIO(message), out.append, passphrase="correct horse")
    assert b"".join(out) == data
    with pytest.raises(EncryptionError, match="decrypt failed"):
        gpg.decrypt_stream(io.BytesIO(message), out.append, passphrase="wrong")


def test_no_double_compression(empty_home):
    gpg = Gpg(empty_home)
    data = b"\x00" * 1_000_000  # gpg's default zlib would shrink this to almost nothing
    assert len(encrypt(gpg, data, EncryptionKeys(passphrase="p"))) > len(data)


def test_unknown_recipient_is_named(empty_home):
    with pytest.raises(EncryptionError, match="unknown GPG recipient 'DEADBEEF00112233'"):
        Gpg(empty_home).resolve_recipients(["DEADBEEF00112233"])


def test_key_file_that_is_not_a_key(empty_home, tmp_path):
    bogus = tmp_path / "not-a-key.asc"
    bogus.write_text("hello")
    with pytest.raises(EncryptionError, match="not-a-key.asc holds no OpenPGP public key"):
        Gpg(empty_home).import_key_files([bogus])


def test_no_keys_at_all_refuses_plaintext():
    with pytest.raises(EncryptionError, match="refusing to store plaintext"):
        EncryptionKeys()


def test_sink_failure_is_raised(empty_home):
    def sink(chunk: bytes) -> None:
        raise OSError("disk on fire")

    with pytest.raises(OSError, match="disk on fire"):
        Gpg(empty_home).encrypt_stream(io.BytesIO(b"x" * 100), sink, EncryptionKeys(passphrase="p"))
