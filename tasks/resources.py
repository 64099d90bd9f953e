"""Live resources built from a backup plan: clients, storage, keys, event sink.

This is the one place that reads secrets (environment variables and Prefect Secret blocks) and credentials
blocks. Values are handed to the core as arguments; the core never looks them up itself.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from pymongo import MongoClient

from mongobackup.backup import ArchiveSource, tool_version
from mongobackup.crypto import EncryptionKeys, Gpg
from mongobackup.dump import DatabaseDump, open_client, source_errors
from mongobackup.errors import BackupError
from mongobackup.keys import BackupLocation
from mongobackup.mongodump import MongodumpDump
from mongobackup.notify import EventSink, make_sink
from mongobackup.plan import BackupPlan, InstancePlan
from mongobackup.s3 import S3Storage, s3_client
from mongobackup.units import MIB


class SecretMissing(BackupError):
    """A secret the plan names (env var or Prefect Secret block) is not there; the message names the field."""


def secret_value(field: str, *, env: str | None = None, secret: str | None = None) -> str | None:
    """The value of a secret the plan refers to by env var name or Prefect Secret block name, or None."""
    if env:
        value = os.environ.get(env)
        if not value:
            raise SecretMissing(f"{field}: environment variable {env} is not set")
        return value
    if secret:
        from prefect.blocks.system import Secret

        try:
            return str(Secret.load(secret).get())
        except (ValueError, LookupError) as exc:
            raise SecretMissing(f"{field}: Prefect Secret block {secret!r} cannot be loaded: {exc}") from exc
    return None


def instance_uri(instance: InstancePlan, index: int) -> str:
    field = f"instances.{index}"
    if instance.uri:
        return instance.uri
    value = secret_value(
        f"{field}.uri_env" if instance.uri_env else f"{field}.uri_secret",
        env=instance.uri_env,
        secret=instance.uri_secret,
    )
    assert value is not None  # the plan schema requires exactly one source
    return value


def mongo_client(plan: BackupPlan, instance_name: str) -> MongoClient:
    index, instance = plan.instance(instance_name)
    return open_client(
        instance_uri(instance, index), read_preference=instance.read_preference, timeout_s=instance.connect_timeout_s
    )


def archive_source(
    plan: BackupPlan, client: MongoClient, location: BackupLocation, log: Callable[[str], None]
) -> ArchiveSource:
    """The dump engine the plan chose for this instance: our own (pymongo) or the stock mongodump."""
    index, instance = plan.instance(location.instance)
    if instance.engine == "mongodump":
        dump = MongodumpDump(
            instance_uri(instance, index),
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


def storage_for(plan: BackupPlan) -> S3Storage:
    """The plan's bucket, through a prefect-aws credentials block or the default credential chain."""
    from prefect_aws import AwsCredentials

    settings = plan.storage
    credentials = (
        AwsCredentials.load(settings.credentials_block)
        if settings.credentials_block
        else AwsCredentials(region_name=settings.region)
    )
    client = s3_client(
        session=credentials.get_boto3_session(), endpoint_url=settings.endpoint_url, region=settings.region
    )
    return S3Storage(client, settings.bucket, part_size=settings.part_size_mib * MIB)


def encryption_for(plan: BackupPlan) -> tuple[Gpg, EncryptionKeys]:
    """The GnuPG home with the plan's key files imported, and the resolved recipients or passphrase."""
    settings = plan.encryption
    gpg = Gpg(settings.gnupghome)
    from_files = gpg.import_key_files(settings.public_key_files)
    fingerprints = gpg.resolve_recipients([*settings.recipients, *from_files])
    passphrase = secret_value("encryption.passphrase", env=settings.passphrase_env, secret=settings.passphrase_secret)
    return gpg, EncryptionKeys(tuple(fingerprints), passphrase, settings.cipher)


def event_sink(plan: BackupPlan) -> EventSink | None:
    """The InfluxDB writer of the plan, or None when the plan has no notify section."""
    if plan.notify is None or plan.notify.influxdb is None:
        return None
    influx = plan.notify.influxdb
    if influx.api == "v1":
        password = secret_value("notify.influxdb.password", env=influx.password_env, secret=influx.password_secret)
        return make_sink("v1", url=influx.url, database=influx.database, username=influx.username, password=password)
    token = secret_value("notify.influxdb.token", env=influx.token_env, secret=influx.token_secret)
    return make_sink("v2", url=influx.url, org=influx.org, bucket=influx.bucket, token=token)
