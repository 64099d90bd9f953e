"""The sections of a backup plan, and `BackupPlan`, the whole of it (pydantic models, frozen).

Decisions the schema makes for the user:
- `read_preference` defaults to primaryPreferred: the freshest data, and still a backup while the primary is
  down or when the URI points at one member with directConnection.
- Encryption is mandatory, and is either public-key (recipients and/or key files) or symmetric (a passphrase),
  never both: gpg would encrypt to the keys and silently ignore the passphrase, and a restore must know
  which one secret opens the backup.
- Recipients are pinned by long key id or full fingerprint; short ids and e-mail addresses are refused
  because another key in the keyring could match them.
- `compression.threads: 0` compresses in the dump's thread (zstd's own meaning); N > 0 adds N zstd workers.
- `notify` is optional so that a plan can be tried without InfluxDB, but `warnings()` flags its absence:
  without events a failing backup is only visible in Prefect.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from mongobackup.glacier_plan import PricePlan, RestorePlan
from mongobackup.names import (
    check_bucket_name,
    check_database_name,
    check_instance_name,
    check_key_id,
    is_system_database,
)
from mongobackup.pitr.settings import PitrPlan
from mongobackup.plan.fields import (
    SecretField,
    SecretRef,
    Section,
    check_block_name,
    check_http_url,
    check_mongodb_uri,
)
from mongobackup.plan.notify import NotifyPlan
from mongobackup.redact import redact_uri
from mongobackup.snapshots.plan import SnapshotSource, check_sources
from mongobackup.tiers import TierPolicy

ReadPreference = Literal["primary", "primaryPreferred", "secondary", "secondaryPreferred", "nearest"]
Engine = Literal["pymongo", "mongodump"]
#: gpg --cipher-algo names with a 128-bit block; 3DES, CAST5, Blowfish and IDEA are refused.
Cipher = Literal["AES256", "AES192", "AES", "CAMELLIA256", "CAMELLIA192", "CAMELLIA128", "TWOFISH"]

_REGION = re.compile(r"^[a-z0-9][a-z0-9-]*$")  # eu-west-1, us-east-1, or a local stand-in's name


class InstancePlan(Section):
    """One MongoDB deployment (a replica set) to back up."""

    #: Exactly one of uri, uri_env (an environment variable holding the URI), uri_secret (a Prefect Secret).
    secret_fields: ClassVar = {"uri": SecretField(inline=True, required=True)}

    #: Used in object keys, events, dashboards and run status.
    name: str
    uri: SecretRef
    databases: Literal["all"] | list[str] = "all"
    #: fnmatch patterns (case-sensitive) of database names to leave out.
    exclude: list[str] = Field(default_factory=list)
    read_preference: ReadPreference = "primaryPreferred"
    #: pymongo: our own dump; mongodump: the stock tool's --archive output, where it is on PATH.
    engine: Engine = "pymongo"
    #: Databases of this instance backed up at the same time: 1 spares a busy replica set.
    max_parallel: int = Field(default=1, ge=1, le=16)
    #: How long to wait for the instance to answer before the backup fails as "unreachable".
    connect_timeout_s: float = Field(default=10.0, gt=0, le=300)

    _name = field_validator("name")(check_instance_name)
    _uri = field_validator("uri")(check_mongodb_uri)

    @field_validator("databases", mode="plain")
    @classmethod
    def _database_names(cls, value: Any) -> Literal["all"] | list[str]:
        # Validated by hand: a union of "all" and a list would report a failure against each alternative.
        if value == "all":
            return "all"
        if isinstance(value, str):
            raise ValueError(f"give `all` or a list of database names, not {value!r}")
        if not isinstance(value, list) or not value:
            raise ValueError("give `all` or a non-empty list of database names")
        names = [check_database_name(name) for name in value]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"database listed more than once: {', '.join(twice)}")
        return names

    @field_validator("exclude")
    @classmethod
    def _patterns(cls, patterns: list[str]) -> list[str]:
        if any(not p for p in patterns):
            raise ValueError("an exclude pattern is empty")
        return patterns

    @model_validator(mode="after")
    def _no_contradiction(self) -> InstancePlan:
        if isinstance(self.databases, list):
            excluded = [n for n in self.databases if self.is_excluded(n)]
            if excluded:
                raise ValueError(f"listed databases are also excluded by a pattern: {', '.join(excluded)}")
        return self

    def is_excluded(self, database: str) -> bool:
        return any(fnmatch.fnmatchcase(database, pattern) for pattern in self.exclude)

    def select_databases(self, available: Sequence[str]) -> list[str]:
        """The databases to back up, given those the instance has.

        `all`: every available database but admin, local and config, in the order given. A list: exactly the
        listed names, in the plan's order, even those not available (the caller reports them). Exclude
        patterns apply to both.
        """
        if self.databases == "all":
            chosen = [name for name in dict.fromkeys(available) if not is_system_database(name)]
        else:
            chosen = list(self.databases)
        return [name for name in chosen if not self.is_excluded(name)]


class StoragePlan(Section):
    """Where backups are stored: an S3 bucket (AWS or any S3-compatible endpoint)."""

    bucket: str
    #: Object keys start with <prefix><tier>/<instance>/<database>/.
    prefix: str = ""
    #: None for AWS itself.
    endpoint_url: str | None = None
    region: str | None = None
    #: A prefect-aws AwsCredentials block name; None: boto3's default credential chain.
    credentials_block: str | None = None
    #: Multipart part size; grown at run time when 10,000 parts would not cover an object. S3's minimum is 5.
    part_size_mib: int = Field(default=8, ge=5, le=5120)
    #: Open multipart uploads of ours older than this are aborted by the next backup run and by retention
    #: (an upload outlives its process only when the process was killed; a run lasts hours at most).
    abort_uploads_after_h: float = Field(default=24, gt=0)

    _bucket = field_validator("bucket")(check_bucket_name)
    _endpoint = field_validator("endpoint_url")(check_http_url)
    _credentials = field_validator("credentials_block")(check_block_name)

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, prefix: str) -> str:
        # The prefix is glued to "<tier>/": without the slash "backups" would give "backupsdaily/...".
        if prefix and not prefix.endswith("/"):
            raise ValueError(f"{prefix!r} must be empty or end with '/'")
        if prefix.startswith("/") or "//" in prefix:
            raise ValueError(f"{prefix!r} must not start with '/' or contain '//' (empty key segments)")
        # S3 keeps `..` literally while other stores resolve or refuse it, and a path-minded tool (a sync,
        # a lifecycle filter, a restore to disk) would leave the prefix: each segment must be a plain name.
        odd = [segment for segment in prefix.split("/") if segment in (".", "..")]
        if odd:
            raise ValueError(f"{prefix!r} must not contain a {odd[0]!r} segment")
        if "\\" in prefix:
            raise ValueError(f"{prefix!r} must not contain a backslash (some stores read it as a separator)")
        return prefix

    @field_validator("region")
    @classmethod
    def _region(cls, region: str | None) -> str | None:
        if region is not None and not _REGION.match(region):
            raise ValueError(f"{region!r} is not a region name such as eu-west-1")
        return region


class EncryptionPlan(Section):
    """How backups are encrypted with GPG: to public keys, or with a symmetric passphrase."""

    #: Symmetric encryption instead of keys: passphrase_env or passphrase_secret, never inline.
    secret_fields: ClassVar = {"passphrase": SecretField()}

    #: Long key ids or fingerprints (spaces and a 0x prefix are accepted and removed).
    recipients: list[str] = Field(default_factory=list)
    #: Armored or binary public key files; relative paths are resolved against the plan file's folder.
    public_key_files: list[Path] = Field(default_factory=list)
    passphrase: SecretRef | None = None
    #: The GnuPG home to use; None: $GNUPGHOME or ~/.gnupg. Relative to the plan file's folder.
    gnupghome: Path | None = None
    cipher: Cipher = "AES256"

    @field_validator("recipients")
    @classmethod
    def _pinned_keys(cls, recipients: list[str]) -> list[str]:
        return list(dict.fromkeys(check_key_id(recipient) for recipient in recipients))

    @field_validator("cipher", mode="before")
    @classmethod
    def _upper_cipher(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("public_key_files", mode="after")
    @classmethod
    def _resolve_key_files(cls, paths: list[Path], info: ValidationInfo) -> list[Path]:
        return [resolve_path(path, info) for path in paths]

    @field_validator("gnupghome", mode="after")
    @classmethod
    def _resolve_home(cls, path: Path | None, info: ValidationInfo) -> Path | None:
        return None if path is None else resolve_path(path, info)

    @model_validator(mode="after")
    def _one_method(self) -> EncryptionPlan:
        public = bool(self.recipients or self.public_key_files)
        if public and self.passphrase is not None:
            raise ValueError(
                f"use public keys (recipients, public_key_files) or a passphrase ({self.passphrase.source}), "
                "not both: gpg would ignore the passphrase"
            )
        if not public and self.passphrase is None:
            raise ValueError(
                "no recipients, public_key_files, passphrase_secret or passphrase_env: backups are "
                "never stored unencrypted"
            )
        return self

    @property
    def method(self) -> Literal["public-key", "symmetric"]:
        return "public-key" if self.recipients or self.public_key_files else "symmetric"


def resolve_path(path: Path, info: ValidationInfo) -> Path:
    """A path of the plan, relative to the plan file's folder (load_plan passes it as context)."""
    base = (info.context or {}).get("base_dir")
    path = path.expanduser()
    # normpath, not resolve(): `../../demo/keys/x.asc` reads better in messages than a symlink target.
    return path if path.is_absolute() or base is None else Path(os.path.normpath(Path(base) / path))


class Compression(Section):
    """zstd settings. Levels above 19 ("ultra") need far more memory per thread; 3 is zstd's default."""

    level: int = Field(default=3, ge=1, le=22)
    #: 0: compress in the dump's own thread; N: N zstd worker threads.
    threads: int = Field(default=0, ge=0, le=64)


class RetryPlan(Section):
    """Retries of the network steps (transient faults only): exponential backoff with jitter."""

    attempts: int = Field(default=3, ge=0, le=20)
    #: The first delay in seconds; each retry doubles it.
    backoff_s: float = Field(default=10.0, ge=0)
    #: Prefect's retry_jitter_factor: each delay may grow by up to this fraction.
    jitter: float = Field(default=0.5, ge=0)


class StatusPlan(Section):
    """How `flows.status` and the `watchdog` flow judge the newest committed backup of each database."""

    #: RED when the newest committed backup finished longer ago than this. 26: a nightly run plus two hours
    #: of slack for a slow dump, so one late run is not an alarm and one missed run is.
    max_age_h: float = Field(default=26.0, gt=0, le=24 * 400)


class FanOutPlan(Section):
    """The nightly parent that runs each instance as a run of its own (prefect.yaml: backup/nightly)."""

    #: The parent fails after this long, naming the instances not finished, and cancels those never started.
    deadline_h: float = Field(default=12.0, gt=0, le=24 * 7)


class DrillPlan(Section):
    """The restore fire drill (`flows.firedrill`): where backups are restored to prove they restore.

    The scratch MongoDB must be a server of its own: each drill restores into a fresh database there
    (`drill_<database>_<run id>`) and drops it afterwards, whatever the outcome.
    """

    #: One of scratch_uri, scratch_uri_env (an environment variable), scratch_uri_secret (a Prefect Secret);
    #: required when the plan has instances (a plan of key/value snapshots only drills into scratch etcds).
    secret_fields: ClassVar = {"scratch_uri": SecretField(inline=True)}

    scratch_uri: SecretRef | None = None
    #: The drill of a database fails when its newest committed backup finished longer ago than this: an old
    #: backup is a missed backup. 26: a nightly run plus two hours of slack.
    max_age_h: float = Field(default=26.0, gt=0, le=24 * 400)
    #: The GnuPG home holding the private key that opens the backups (the backup host needs only the public
    #: key). None: encryption.gnupghome, else $GNUPGHOME. Relative to the plan file's folder.
    gnupghome: Path | None = None

    _scratch_uri = field_validator("scratch_uri")(check_mongodb_uri)

    @field_validator("gnupghome", mode="after")
    @classmethod
    def _resolve_home(cls, path: Path | None, info: ValidationInfo) -> Path | None:
        return None if path is None else resolve_path(path, info)


class BackupPlan(Section):
    """A whole backup plan: what to back up, where, how it is encrypted and compressed, tiers, events."""

    #: Key/value stores (Consul, etcd) snapshotted by the `snapshot` flow; see mongobackup.snapshots.plan.
    #: Declared before `instances`, whose check needs it: a plan of snapshots only has no instances.
    snapshots: list[SnapshotSource] = Field(default_factory=list)
    instances: list[InstancePlan] = Field(default_factory=list)
    storage: StoragePlan
    encryption: EncryptionPlan
    compression: Compression = Field(default_factory=Compression)
    tiers: TierPolicy
    notify: NotifyPlan | None = None
    retries: RetryPlan = Field(default_factory=RetryPlan)
    #: The restore fire drill; None: this plan is not drilled (flows.firedrill refuses it).
    drill: DrillPlan | None = None
    status: StatusPlan = Field(default_factory=StatusPlan)
    fan_out: FanOutPlan = Field(default_factory=FanOutPlan)
    #: How a restore thaws a backup from Glacier; prices for the retention dry run's cost table and lint.
    restore: RestorePlan = Field(default_factory=RestorePlan)
    prices: PricePlan = Field(default_factory=PricePlan)
    #: Continuous oplog archiving for point-in-time recovery; None: no instance is archived.
    pitr: PitrPlan | None = None

    @field_validator("instances")
    @classmethod
    def _unique_names(cls, instances: list[InstancePlan], info: ValidationInfo) -> list[InstancePlan]:
        if not instances and not info.data.get("snapshots"):
            raise ValueError("List should have at least 1 item, not 0 (or name a source under snapshots)")
        # Two instances with one name would write to the same keys and the same dashboard row; names that
        # differ only in case do too on a case-insensitive store, and read as one in a dashboard or an alert.
        seen: dict[str, int] = {}
        for index, instance in enumerate(instances):
            first = seen.get(instance.name.casefold())
            if first is not None and instances[first].name == instance.name:
                raise ValueError(
                    f"instance name {instance.name!r} is used twice (instances.{first}"
                    f".name and instances.{index}.name); names must be unique"
                )
            if first is not None:
                raise ValueError(
                    f"instance name {instance.name!r} (instances.{index}.name) differs from "
                    f"{instances[first].name!r} (instances.{first}.name) only in case; names must differ in "
                    "more than case"
                )
            seen[instance.name.casefold()] = index
        return instances

    @model_validator(mode="after")
    def _something_to_back_up(self) -> BackupPlan:
        if not self.instances and not self.snapshots:
            raise ValueError("the plan backs up nothing: give instances, snapshots or both")
        if self.drill is not None and self.instances and self.drill.scratch_uri is None:
            raise ValueError(
                "drill: exactly one of scratch_uri, scratch_uri_env, scratch_uri_secret must be set (got none): "
                "the drill restores the instances' backups into that server"
            )
        check_sources(self.snapshots, self.instance_names)
        return self

    def snapshot_source(self, name: str) -> tuple[int, SnapshotSource]:
        """The index (for messages naming `snapshots.<i>`) and settings of the snapshot source `name`."""
        for index, source in enumerate(self.snapshots):
            if source.name == name:
                return index, source
        known = ", ".join(s.name for s in self.snapshots) or "none"
        raise KeyError(f"the plan has no snapshot source named {name!r} (it has {known})")

    def instance(self, name: str) -> tuple[int, InstancePlan]:
        """The index (for messages naming `instances.<i>`) and settings of the instance called `name`."""
        for index, instance in enumerate(self.instances):
            if instance.name == name:
                return index, instance
        raise KeyError(f"the plan has no instance named {name!r} (it has {', '.join(self.instance_names)})")

    @property
    def instance_names(self) -> list[str]:
        return [instance.name for instance in self.instances]

    def select_databases(self, instance: InstancePlan | str, available: Sequence[str]) -> list[str]:
        """The databases of `instance` to back up, given those it has (see InstancePlan.select_databases)."""
        if isinstance(instance, str):
            instance = self.instance(instance)[1]
        return instance.select_databases(available)

    def warnings(self) -> list[str]:
        """Valid but risky choices, for the flow to log: each names the field."""
        found = []
        if self.notify is None or self.notify.influxdb is None:
            found.append(
                "notify.influxdb: not set: no success or failure events are written, so a backup "
                "that stops running is only visible in Prefect"
            )
        for index, instance in enumerate(self.instances):
            inline = instance.uri.inline
            if inline is not None and redact_uri(inline) != inline:
                found.append(f"instances.{index}.uri: holds a password in the plan file; prefer uri_env or uri_secret")
        return found
