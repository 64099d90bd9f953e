"""The live resources of one run of a plan, built once and shared by its tasks: storage, keys, events, clients.

    with RunResources(plan) as resources:
        resources.storage.check_bucket()

This is the one place that reads secrets (environment variables and Prefect Secret blocks) and the AWS
credentials block. Values are handed to the core as arguments; the core never looks them up itself. Each
resource is built on first use and then kept for the run: one credentials-block load, one import of the key
files, one Mongo client per instance (closed with the resources). The command lines that need no Prefect
(`flows.restore`, `flows.status`) use this module too: Prefect and prefect-aws are imported only when a plan
names a Secret block or when the storage is first built.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from pymongo import MongoClient
from pymongo.errors import ConfigurationError

from mongobackup.backup import ArchiveSource, tool_version
from mongobackup.crypto import EncryptionKeys, Gpg
from mongobackup.dump import DatabaseDump, open_client, source_errors
from mongobackup.errors import BackupError, EncryptionError, SourceError, StorageError, one_line
from mongobackup.keys import BackupLocation
from mongobackup.mongodump import MongodumpDump
from mongobackup.notify import EventSink, make_sink
from mongobackup.plan import BackupPlan, DrillPlan, SecretRef
from mongobackup.redact import redact_text
from mongobackup.s3 import S3Storage, s3_client
from mongobackup.units import MIB


class SecretMissing(BackupError):
    """A secret the plan names (env var or Prefect Secret block) is not there; the message names the field."""


class DrillNotConfigured(BackupError):
    """The plan has no `drill` section: there is no scratch server to restore into."""


def secret_value(ref: SecretRef | None, where: str) -> str | None:
    """The value of the secret `ref` points at (None for no ref); `where` is its section's dotted path."""
    if ref is None:
        return None
    field_name = f"{where}.{ref.source}"
    if ref.inline is not None:
        return ref.inline
    if ref.env is not None:
        value = os.environ.get(ref.env)
        if not value:
            raise SecretMissing(f"{field_name}: environment variable {ref.env} is not set")
        return value
    from prefect.blocks.system import Secret

    try:
        return str(Secret.load(ref.secret).get())
    except (ValueError, LookupError) as exc:
        raise SecretMissing(f"{field_name}: Prefect Secret block {ref.secret!r} cannot be loaded: {exc}") from exc


@dataclass(frozen=True)
class Encryption:
    """The plan's GnuPG home (key files imported) and the resolved recipients or passphrase.

    `gpg()` gives a fresh Gpg over that home for each stream: python-gnupg keeps one output sink per
    instance, so two transfers at once must not share one.
    """

    home: str | None
    keys: EncryptionKeys = field(repr=False)

    def gpg(self) -> Gpg:
        return Gpg(self.home)


class RunResources:
    """Everything a run of `plan` needs that costs a lookup or a connection, each built once (thread-safe)."""

    def __init__(self, plan: BackupPlan):
        self.plan = plan
        self._lock = threading.RLock()
        self._built: dict[str, Any] = {}
        self._clients: dict[str, MongoClient] = {}

    def __enter__(self) -> RunResources:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Closes the Mongo clients; the resources may be used again afterwards (clients reopen)."""
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()

    def _once(self, name: str, build: Callable[[], Any]) -> Any:
        with self._lock:
            if name not in self._built:
                self._built[name] = build()
            return self._built[name]

    @property
    def storage(self) -> S3Storage:
        """The plan's bucket, through a prefect-aws credentials block or the default credential chain."""
        return self._once("storage", lambda: build_storage(self.plan))

    @property
    def encryption(self) -> Encryption:
        """Key files imported and recipients resolved (or the passphrase read): what a backup encrypts with."""
        return self._once("encryption", lambda: build_encryption(self.plan))

    @property
    def event_sink(self) -> EventSink | None:
        """The InfluxDB writer of the plan, or None when the plan has no notify section."""
        return self._once("event_sink", lambda: build_event_sink(self.plan))

    @property
    def passphrase(self) -> str | None:
        """The symmetric passphrase of the plan (None for public-key plans)."""
        return self._once("passphrase", lambda: secret_value(self.plan.encryption.passphrase, "encryption"))

    def instance_uri(self, instance: str) -> str:
        index, settings = self.plan.instance(instance)
        value = secret_value(settings.uri, f"instances.{index}")
        assert value is not None  # the plan schema requires exactly one source
        return value

    def snapshot_secret(self, source: str) -> str | None:
        """The Consul token or etcd password of a snapshot source (None when the plan names none)."""
        index, settings = self.plan.snapshot_source(source)
        return secret_value(settings.secret, f"snapshots.{index}")

    def mongo_client(self, instance: str) -> MongoClient:
        """The instance's client, opened on first use and kept until `close()`."""
        with self._lock:
            if instance not in self._clients:
                index, settings = self.plan.instance(instance)
                try:
                    self._clients[instance] = open_client(
                        self.instance_uri(instance),
                        read_preference=settings.read_preference,
                        timeout_s=settings.connect_timeout_s,
                    )
                except (ConfigurationError, ValueError) as exc:
                    # pymongo parses the URI here, before any connection: no retry can mend it. The plan
                    # checks only the scheme of an inline URI; one from a variable or a block it never sees.
                    field_name = f"instances.{index}.{settings.uri.source}"
                    raise SourceError(
                        instance, None, f"{field_name}: not a usable MongoDB URI: {redact_text(one_line(exc))}"
                    ) from exc
            return self._clients[instance]

    def archive_source(self, location: BackupLocation, log: Callable[[str], None]) -> ArchiveSource:
        """The dump engine the plan chose for this instance: our own (pymongo) or the stock mongodump."""
        instance = self.plan.instance(location.instance)[1]
        client = self.mongo_client(location.instance)
        if instance.engine == "mongodump":
            dump = MongodumpDump(
                self.instance_uri(location.instance),
                location.instance,
                location.database,
                read_preference=instance.read_preference,
            )
            with source_errors(location.instance, location.database):
                dump.summary.replica_set = client.admin.command("hello").get("setName")
            return dump
        return DatabaseDump(
            client,
            location.instance,
            location.database,
            tool_version=tool_version(),
            on_namespace=lambda ns: log(f"dump: {ns}"),
        )

    def decryption(self, gnupghome: str | Path | None = None) -> tuple[Gpg, str | None]:
        """A Gpg over the home holding the private key (argument, else drill.gnupghome, else
        encryption.gnupghome, else $GNUPGHOME) and, for symmetric plans, the passphrase."""
        plan = self.plan
        home = gnupghome or (plan.drill.gnupghome if plan.drill else None) or plan.encryption.gnupghome
        return Gpg(home), self.passphrase

    @property
    def drill(self) -> DrillPlan:
        if self.plan.drill is None:
            raise DrillNotConfigured(
                "drill: the plan has no drill section (drill.scratch_uri or scratch_uri_env): "
                "there is no scratch MongoDB to restore into"
            )
        return self.plan.drill

    def scratch_uri(self) -> str:
        """The drill's scratch MongoDB, from the plan, an environment variable or a Prefect Secret block."""
        value = secret_value(self.drill.scratch_uri, "drill")
        if value is None:  # the plan allows none only without instances (snapshot sources only)
            raise DrillNotConfigured("drill.scratch_uri: not set, and a database backup is to be drilled")
        return value


def build_storage(plan: BackupPlan) -> S3Storage:
    """The plan's bucket: one credentials-block load, one boto3 client (thread-safe) for the whole run.

    Missing credentials (no block, and nothing in boto3's default chain) and a block that does not exist fail
    here, as permanent errors naming the field: boto3 would only find out at the first request, as an error
    that reads like a network fault and is retried.
    """
    settings = plan.storage
    session = _boto3_session(settings.credentials_block, settings.region)
    if session.get_credentials() is None:
        where = (
            f"AwsCredentials block {settings.credentials_block!r} holds no keys and"
            if settings.credentials_block
            else "not set, and"
        )
        raise StorageError(
            f"storage.credentials_block: {where} boto3's default chain found no AWS credentials "
            "(AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, ~/.aws/credentials, an instance or container role)"
        )
    client = s3_client(session=session, endpoint_url=settings.endpoint_url, region=settings.region)
    return S3Storage(client, settings.bucket, part_size=settings.part_size_mib * MIB)


def _boto3_session(name: str | None, region: str | None) -> Any:
    """The session of the prefect-aws AwsCredentials block `name`, or boto3's default chain for None.

    Without a block, a plain boto3 session: what an empty AwsCredentials block gives, without importing
    prefect-aws (more than half a second of a run's start on 2 busy cores)."""
    if name is None:
        import boto3

        return boto3.Session(region_name=region)
    from prefect_aws import AwsCredentials

    try:
        return AwsCredentials.load(name).get_boto3_session()
    except ValueError as exc:  # Prefect's "Unable to find block document named ...": retrying will not help
        raise StorageError(f"storage.credentials_block: AwsCredentials block {name!r} cannot be loaded: {exc}") from exc


def build_encryption(plan: BackupPlan) -> Encryption:
    """The GnuPG home with the plan's key files imported, and the resolved recipients or passphrase."""
    settings = plan.encryption
    gpg = Gpg(settings.gnupghome)
    try:
        fingerprints = gpg.resolve_recipients(settings.recipients)
    except EncryptionError as exc:
        raise EncryptionError(f"encryption.recipients: {exc}") from exc
    for path in settings.public_key_files:
        imported = gpg.import_key_files([path])  # its errors name the file already
        try:
            from_file = gpg.resolve_recipients(imported)
        except EncryptionError as exc:
            raise EncryptionError(f"encryption.public_key_files: {path}: {exc}") from exc
        fingerprints += [fingerprint for fingerprint in from_file if fingerprint not in fingerprints]
    passphrase = secret_value(settings.passphrase, "encryption")
    return Encryption(gpg.home, EncryptionKeys(tuple(fingerprints), passphrase, settings.cipher))


def build_event_sink(plan: BackupPlan) -> EventSink | None:
    """The InfluxDB writer of the plan, or None when the plan has no notify section."""
    if plan.notify is None or plan.notify.influxdb is None:
        return None
    influx = plan.notify.influxdb
    where = "notify.influxdb"
    if influx.api == "v1":
        password = secret_value(influx.password, where)
        return make_sink("v1", url=influx.url, database=influx.database, username=influx.username, password=password)
    return make_sink(
        "v2", url=influx.url, org=influx.org, bucket=influx.bucket, token=secret_value(influx.token, where)
    )
