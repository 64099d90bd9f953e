"""A damaged or doubtful backup must never become data: each case fails with an error naming the object and what
failed, and leaves nothing in the target (whatever was written before the damage showed is dropped again).

The damage is real: bytes flipped in the stored object, an object cut short, a manifest removed or edited, the
wrong GPG key or passphrase, and an archive re-encrypted after a flipped byte so that only its CRC can tell.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from bson import Binary
from pymongo import MongoClient

from flows.restore import main
from mongobackup.crypto import EncryptionKeys, Gpg
from mongobackup.errors import VerificationError
from mongobackup.inventory import UncommittedBackup, select_backup
from mongobackup.keys import BackupLocation
from mongobackup.manifest import BackupManifest
from mongobackup.restore import RestoreOptions, restore_backup
from mongobackup.restore_result import RestoreFailed, RestoreProgress
from mongobackup.s3 import S3Storage
from mongobackup.staging import is_lease
from tests.faults.contract import RestoreFault, check_restore_fault
from tests.helpers import database_names, decrypt_object, make_backup, new_bucket, storage_on, unique
from tests.planfiles import write_plan

PASSPHRASE = "correct horse battery staple"
PAYLOAD_BYTES = 24 * 1024
DOCS_PER_COLLECTION = 25


@dataclass(frozen=True)
class Backups:
    storage: S3Storage
    instance: str
    database: str
    public: BackupManifest  # encrypted to gpg_key
    symmetric: BackupManifest  # encrypted with PASSPHRASE
    earlier: BackupManifest  # the same data encrypted to gpg_key again: an object of the same size as public's
    plan: Path


def marker(collection: str, n: int) -> bytes:
    return f"MARK-{collection}-{n:03d}:".encode()


@pytest.fixture(scope="module")
def backups(services, s3_client, gpg_key, tmp_path_factory) -> Backups:
    """Three collections of incompressible documents (about 1.8 MB): damage near the end of the object lands
    after the first collections were already written, so a failure has something to drop."""
    uri = services.mongo_uri("mongo-b")
    instance, database = unique("rs-t"), unique("tamper")
    with MongoClient(uri) as client:
        for name in ("a", "b", "c"):
            client[database][name].insert_many(
                [
                    {"_id": n, "payload": Binary(marker(name, n) + os.urandom(PAYLOAD_BYTES))}
                    for n in range(DOCS_PER_COLLECTION)
                ]
            )
        storage = storage_on(services.url("moto"), new_bucket(s3_client))
        public = make_backup(
            client, storage, Gpg(gpg_key.home), instance, database, EncryptionKeys((gpg_key.fingerprint,))
        )
        symmetric = make_backup(
            client,
            storage,
            Gpg(gpg_key.home),
            instance,
            database,
            EncryptionKeys(passphrase=PASSPHRASE),
            when=datetime.now(UTC) - timedelta(hours=1),
        )
        earlier = make_backup(
            client,
            storage,
            Gpg(gpg_key.home),
            instance,
            database,
            EncryptionKeys((gpg_key.fingerprint,)),
            when=datetime.now(UTC) - timedelta(hours=2),
        )
        client.drop_database(database)
    plan = write_plan(
        tmp_path_factory.mktemp("tamper") / "plan.yaml",
        instances=[{"name": instance, "uri": uri}],
        bucket=storage.bucket,
        s3_endpoint=services.url("moto"),
        public_key_file=gpg_key.public_key_file,
        drill={"scratch_uri": services.mongo_uri("mongo-scratch"), "gnupghome": str(gpg_key.home)},
    )
    return Backups(storage, instance, database, public, symmetric, earlier, plan)


def clone(
    backups: Backups,
    manifest: BackupManifest,
    *,
    body: Callable[[bytes], bytes] = lambda b: b,
    edit: Callable[[dict], None] | None = None,
    commit: bool = True,
) -> tuple[str, BackupManifest]:
    """A copy of a stored backup under a new key: its object bytes changed by `body`, its manifest by `edit`."""
    storage = backups.storage
    stored = storage.client.get_object(Bucket=storage.bucket, Key=manifest.object_key)["Body"].read()
    location = BackupLocation(
        "",
        BackupLocation.parse(manifest.object_key).tier,
        manifest.instance,
        manifest.database,
        manifest.scheduled_at - timedelta(days=1),
        uuid.uuid4().hex[:8],
    )
    storage.client.put_object(Bucket=storage.bucket, Key=location.object_key, Body=body(stored))
    data = manifest.to_json_dict()
    data["object_key"] = location.object_key
    if edit is not None:
        edit(data)
    copy = BackupManifest.from_json_dict(data)
    if commit:
        storage.put_json(location.manifest_key, data)
    return location.object_key, copy


def restore(
    backups: Backups,
    key: str,
    manifest: BackupManifest | None,
    *,
    gnupghome: Path,
    passphrase: str | None = None,
    seen: list[int] | None = None,
    target: str | None = None,
    scratch: str,
) -> None:
    """Restores `key` into `target` on the scratch server. With `seen`, each progress step waits a moment
    and records how many documents the target really holds, so a test can show data was written before the
    failure (and is gone after it)."""
    with MongoClient(scratch) as client:

        def on_progress(progress: RestoreProgress) -> None:
            if seen is not None and target is not None:
                time.sleep(0.05)  # lets the insert threads catch up with the reader
                # Documents written into the target database: under staging names until the swap.
                names = [n for n in client[target].list_collection_names() if not is_lease(n)]
                seen.append(sum(client[target][name].count_documents({}) for name in names))

        options = RestoreOptions(target_database=target, batch_bytes=128 * 1024)
        restore_backup(
            backups.storage,
            key,
            Gpg(gnupghome),
            client,
            options,
            manifest=manifest,
            passphrase=passphrase,
            on_progress=on_progress,
        )


@pytest.fixture
def scratch(services) -> str:
    return services.mongo_uri("mongo-scratch")


WRONG_PASSPHRASE = "not-the-passphrase-7f3a"


def assert_untouched(scratch: str, target: str, message: object, where: str) -> None:
    """The contract for a failed restore into a database that did not exist (tests/faults/contract.py): it
    still does not, the message names the object, and no passphrase is in it."""
    check_restore_fault(
        RestoreFault(
            str(message),
            [where],
            scratch,
            target,
            before=None,
            secrets=[PASSPHRASE, WRONG_PASSPHRASE],
            outputs=[str(message)],
        )
    )


def test_a_flipped_byte_in_the_stored_object_fails_and_drops_what_was_written(backups, gpg_key, scratch):
    def flip(data: bytes) -> bytes:
        damaged = bytearray(data)
        damaged[len(data) - 100_000] ^= 0x01  # in the last collection's data: a and b are written by then
        return bytes(damaged)

    key, manifest = clone(backups, backups.public, body=flip)
    target, seen = unique("flipped"), []
    with pytest.raises(RestoreFailed) as failure:
        restore(backups, key, manifest, gnupghome=gpg_key.home, seen=seen, target=target, scratch=scratch)
    message = str(failure.value)
    assert f"restore of {backups.storage.where(key)}" in message
    # Which layer sees it first depends on where the byte is; each says so in its own words.
    assert failure.value.stage in ("archive", "decompress", "decrypt"), message
    assert max(seen) >= DOCS_PER_COLLECTION, "the damage should show only after some data was written"
    assert "dropped the 3 collections and views it had created" in message
    assert_untouched(scratch, target, message, backups.storage.where(key))


def test_a_truncated_object_is_refused_before_anything_is_written(backups, gpg_key, scratch):
    key, manifest = clone(backups, backups.public, body=lambda data: data[: len(data) // 2])
    target = unique("truncated")
    size = backups.public.sizes.encrypted_bytes
    with pytest.raises(
        VerificationError,
        match=rf"{backups.storage.where(key)}: the stored object is {size // 2} "
        rf"bytes, its manifest says {size}: truncated or replaced",
    ) as failure:
        restore(backups, key, manifest, gnupghome=gpg_key.home, target=target, scratch=scratch)
    assert_untouched(scratch, target, failure.value, backups.storage.where(key))


def test_a_truncated_object_without_a_manifest_fails_in_the_stream(backups, gpg_key, scratch):
    key, _ = clone(backups, backups.public, body=lambda data: data[: len(data) * 3 // 4], commit=False)
    target, seen = unique("cut"), []
    with pytest.raises(RestoreFailed, match=rf"restore of {backups.storage.where(key)}") as failure:
        restore(backups, key, None, gnupghome=gpg_key.home, seen=seen, target=target, scratch=scratch)
    assert failure.value.stage in ("archive", "decompress", "decrypt")
    assert max(seen) > 0
    assert_untouched(scratch, target, failure.value, backups.storage.where(key))


def test_an_object_without_a_manifest_is_restored_only_when_named_as_uncommitted(backups, scratch, capsys, aws_env):
    key, _ = clone(backups, backups.public, commit=False)
    target = unique("uncommitted")
    with pytest.raises(UncommittedBackup, match=rf"{key} has no manifest"):
        select_backup(backups.storage, "", backups.instance, backups.database, key=key)
    base = [
        "--plan",
        str(backups.plan),
        "--instance",
        backups.instance,
        "--database",
        backups.database,
        "--key",
        key,
        "--to",
        scratch,
        "--as",
        target,
        "--quiet",
    ]
    try:
        assert main(base) == 1
        assert "has no manifest" in capsys.readouterr().err and target not in database_names(scratch)
        assert main([*base, "--uncommitted"]) == 0
        out = capsys.readouterr().out
        assert "UNCOMMITTED (no manifest)" in out and "verdict:  clean: 3 namespaces match the archive" in out
        with MongoClient(scratch) as client:
            assert client[target].c.count_documents({}) == DOCS_PER_COLLECTION
    finally:
        with MongoClient(scratch) as client:
            client.drop_database(target)


def test_a_manifest_whose_counts_are_wrong_fails_and_verify_only_names_it(backups, gpg_key, scratch):
    def more_in_b(data: dict) -> None:
        for record in data["namespaces"]:
            if record["collection"] == "b":
                record["documents"] += 1

    key, manifest = clone(backups, backups.public, edit=more_in_b)
    ns = f"{backups.database}.b"
    target = unique("counts")
    with pytest.raises(
        RestoreFailed,
        match=rf"{ns}: documents: expected {DOCS_PER_COLLECTION + 1}, found "
        rf"{DOCS_PER_COLLECTION}",
    ) as failure:
        restore(backups, key, manifest, gnupghome=gpg_key.home, target=target, scratch=scratch)
    assert failure.value.stage == "verify"
    assert_untouched(scratch, target, failure.value, backups.storage.where(key))

    verified = restore_backup(backups.storage, key, Gpg(gpg_key.home), None, manifest=manifest)
    assert not verified.verdict.ok
    assert [str(m) for m in verified.verdict.mismatches] == [
        f"{ns}: documents: expected {DOCS_PER_COLLECTION + 1}, found {DOCS_PER_COLLECTION}"
    ]


def test_the_wrong_gpg_key_is_named_and_nothing_is_written(backups, other_gpg_key, scratch, capsys, aws_env):
    target = unique("wrongkey")
    key = backups.public.object_key
    with pytest.raises(RestoreFailed, match="no secret key for this message") as failure:
        restore(backups, key, backups.public, gnupghome=other_gpg_key.home, target=target, scratch=scratch)
    assert failure.value.stage == "decrypt" and "nothing was written to the target" in str(failure.value)
    assert_untouched(scratch, target, failure.value, f"gpg could not decrypt {backups.storage.where(key)}")

    assert (
        main(
            [
                "--plan",
                str(backups.plan),
                "--instance",
                backups.instance,
                "--database",
                backups.database,
                "--to",
                scratch,
                "--as",
                target,
                "--gnupghome",
                str(other_gpg_key.home),
                "--quiet",
            ]
        )
        == 1
    )
    err = capsys.readouterr().err
    assert err.startswith(f"restore: FAILED: decrypt failed for restore of {backups.storage.where(key)}")
    assert_untouched(scratch, target, err, backups.storage.where(key))


def test_the_wrong_passphrase_is_named_and_nothing_is_written(backups, gpg_key, scratch):
    target = unique("wrongpass")
    key = backups.symmetric.object_key
    where = backups.storage.where(key)
    with pytest.raises(RestoreFailed) as failure:
        restore(
            backups,
            key,
            backups.symmetric,
            gnupghome=gpg_key.home,
            passphrase=WRONG_PASSPHRASE,
            target=target,
            scratch=scratch,
        )
    assert_untouched(scratch, target, failure.value, f"gpg could not decrypt {where}: wrong passphrase")
    restore(
        backups, key, backups.symmetric, gnupghome=gpg_key.home, passphrase=PASSPHRASE, target=target, scratch=scratch
    )  # the right one works
    with MongoClient(scratch) as client:
        client.drop_database(target)


def test_a_flipped_byte_only_the_crc_can_see(backups, gpg_key, s3_client, scratch, tmp_path):
    """The archive is damaged before compression and encryption, and the manifest re-signed to match the new
    object: gpg, zstd, size and SHA-256 all pass, and only the namespace's CRC stands between it and the data."""
    archive = bytearray(decrypt_object(s3_client, backups.storage.bucket, backups.public.object_key, gpg_key.home))
    at = archive.index(marker("c", DOCS_PER_COLLECTION - 3)) + 1000  # inside a document of c, not its framing
    archive[at] ^= 0x01
    compressed = subprocess.run(["zstd", "-q", "-c"], input=bytes(archive), capture_output=True, check=True).stdout
    encrypted = subprocess.run(
        [
            "gpg",
            "--homedir",
            str(gpg_key.home),
            "--batch",
            "--yes",
            "--trust-model",
            "always",
            "--compress-algo",
            "none",
            "--recipient",
            gpg_key.fingerprint,
            "--encrypt",
        ],
        input=compressed,
        capture_output=True,
        check=True,
    ).stdout

    def resign(data: dict) -> None:
        data["sizes"]["encrypted_bytes"] = len(encrypted)
        data["sha256"] = hashlib.sha256(encrypted).hexdigest()

    key, manifest = clone(backups, backups.public, body=lambda _: encrypted, edit=resign)
    target, seen = unique("crc"), []
    with pytest.raises(
        RestoreFailed,
        match=rf"archive failed for restore of {backups.storage.where(key)} .*"
        rf"namespace {backups.database}\.c: CRC mismatch",
    ) as failure:
        restore(backups, key, manifest, gnupghome=gpg_key.home, seen=seen, target=target, scratch=scratch)
    assert max(seen) >= DOCS_PER_COLLECTION  # documents of a and b were in the target before c ended
    assert "dropped the 3 collections" in str(failure.value)
    assert_untouched(scratch, target, failure.value, backups.storage.where(key))


def test_another_backups_object_under_this_key_fails_on_its_digest(backups, gpg_key, scratch):
    """Swapped: the object of an earlier backup of the same data put under this backup's key. Same size, a
    valid archive of the same documents: only the SHA-256 the manifest records can tell."""
    earlier = backups.storage.client.get_object(Bucket=backups.storage.bucket, Key=backups.earlier.object_key)
    body = earlier["Body"].read()
    assert len(body) == backups.public.sizes.encrypted_bytes, "the swap must pass the size check"
    key, manifest = clone(backups, backups.public, body=lambda _: body)
    target, seen = unique("swapped"), []
    with pytest.raises(RestoreFailed, match=r"sha256") as failure:
        restore(backups, key, manifest, gnupghome=gpg_key.home, seen=seen, target=target, scratch=scratch)
    assert max(seen) >= DOCS_PER_COLLECTION  # the documents were written (staged) before the end could tell
    assert_untouched(scratch, target, failure.value, backups.storage.where(key))


def test_a_missing_key_is_named_and_nothing_is_written(backups, scratch, tmp_path):
    """No secret key at all (an empty GnuPG home): the same refusal as a wrong key, naming the object."""
    empty = tmp_path / "empty-home"
    empty.mkdir(mode=0o700)
    target, key = unique("nokey"), backups.public.object_key
    with pytest.raises(RestoreFailed, match="no secret key for this message") as failure:
        restore(backups, key, backups.public, gnupghome=empty, target=target, scratch=scratch)
    assert failure.value.stage == "decrypt"
    assert_untouched(scratch, target, failure.value, f"gpg could not decrypt {backups.storage.where(key)}")


def test_a_key_that_expired_since_the_backup_still_restores_it(backups, gpg_key, scratch, tmp_path):
    """Holds: expiry stops new encryption to a key, never the decryption of what was encrypted to it."""
    home = tmp_path / "expired-home"
    shutil.copytree(gpg_key.home, home, ignore=shutil.ignore_patterns("S.*", "*.lock"))
    subprocess.run(
        ["gpg", "--homedir", str(home), "--batch", "--quick-set-expire", gpg_key.fingerprint, "seconds=1", "*"],
        capture_output=True,
        check=True,
    )
    time.sleep(2)  # let the expiry pass
    listed = subprocess.run(
        ["gpg", "--homedir", str(home), "--with-colons", "--list-keys", gpg_key.fingerprint],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert any(line.split(":")[1] == "e" for line in listed.splitlines() if line.startswith("sub")), listed
    target = unique("expired")
    try:
        restore(backups, backups.public.object_key, backups.public, gnupghome=home, target=target, scratch=scratch)
        with MongoClient(scratch) as client:
            assert client[target].a.count_documents({}) == DOCS_PER_COLLECTION
    finally:
        with MongoClient(scratch) as client:
            client.drop_database(target)


# --- the server side: what the verification before the swap sees ----------------------------------------------


def restore_meddled(
    backups: Backups, scratch: str, gpg_key, target: str, meddle: Callable[[MongoClient, str], bool], **options
) -> list[bool]:
    """Restores the public backup into `target` while `meddle(client, staging name of "a")` writes to the staging
    collection of `a` behind the restore's back, at each progress step until it returns True (it has meddled).
    Returns what `meddle` answered, so a test can show it did meddle."""
    answers: list[bool] = []
    with MongoClient(scratch) as client:

        def on_progress(progress: RestoreProgress) -> None:
            if any(answers):
                return
            staging = [n for n in client[target].list_collection_names() if not is_lease(n) and n.endswith("_a")]
            answers.append(bool(staging) and meddle(client, staging[0]))

        restore_backup(
            backups.storage,
            backups.public.object_key,
            Gpg(gpg_key.home),
            client,
            RestoreOptions(target_database=target, batch_bytes=128 * 1024, **options),
            manifest=backups.public,
            on_progress=on_progress,
        )
    return answers


def test_a_document_slipped_into_a_staging_collection_fails_the_default_verification(backups, gpg_key, scratch):
    """The default verification reads no document back, but the server's own count of each staging collection
    must equal the manifest's: a document someone else wrote into it fails the restore, naming the collection,
    and the target never sees any of it."""
    target = unique("slipped")

    def slip_in(client: MongoClient, staging: str) -> bool:
        client[target][staging].insert_one({"_id": "not-from-the-backup"})
        return True

    with pytest.raises(
        RestoreFailed,
        match=rf"{target}\.a: documents: expected {DOCS_PER_COLLECTION}, found {DOCS_PER_COLLECTION + 1}",
    ) as failure:
        restore_meddled(backups, scratch, gpg_key, target, slip_in)
    assert failure.value.stage == "verify"
    assert_untouched(scratch, target, failure.value, backups.storage.where(backups.public.object_key))


def test_a_document_changed_after_its_insert_fails_the_read_back(backups, gpg_key, scratch):
    """`read_back` (the drills, --read-back) digests every document the server holds: a document changed in the
    staging collection after the server acknowledged it (same count, same _id) fails the restore, naming it."""
    target = unique("changed")
    meddled: list[bool] = []

    def change(client: MongoClient, staging: str) -> bool:
        collection = client[target][staging]
        deadline = time.monotonic() + 30  # the reader waits here: the insert thread of `a` gets to document 0
        while collection.find_one({"_id": 0}) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        changed = collection.update_one({"_id": 0}, {"$set": {"payload": b"changed"}}).modified_count
        meddled.append(changed == 1)
        return changed == 1

    with pytest.raises(RestoreFailed, match=rf"{target}\.a: digest: expected ") as failure:
        restore_meddled(backups, scratch, gpg_key, target, change, read_back=True)
    assert meddled[-1], "the document was never there to change: the test proved nothing"
    assert failure.value.stage == "verify"
    assert_untouched(scratch, target, failure.value, backups.storage.where(backups.public.object_key))
