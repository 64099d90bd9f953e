"""The backup plan: the YAML file a user writes, validated by pydantic, with errors that name the field.

    plan = load_plan("deployments/plans/local.yaml")

Every section forbids unknown fields, so a misspelt option fails loudly instead of being ignored. Secrets are
never in the plan itself unless the user insists (an inline `uri` with a password works, and `warnings()`
says so): the plan names an environment variable or a Prefect Secret block, and `tasks.resources` reads it.

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
import ipaddress
import os
import re
from collections.abc import Sequence
from difflib import get_close_matches
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from mongobackup.glacier_plan import PricePlan, RestorePlan
from mongobackup.pitr.settings import PitrPlan
from mongobackup.redact import redact_uri
from mongobackup.tiers import TierPolicy

#: Databases that `databases: all` leaves out: server internals, restored only by hand.
SYSTEM_DATABASES = frozenset({"admin", "local", "config"})

ReadPreference = Literal["primary", "primaryPreferred", "secondary", "secondaryPreferred", "nearest"]
Engine = Literal["pymongo", "mongodump"]
#: gpg --cipher-algo names with a 128-bit block; 3DES, CAST5, Blowfish and IDEA are refused.
Cipher = Literal["AES256", "AES192", "AES", "CAMELLIA256", "CAMELLIA192", "CAMELLIA128", "TWOFISH"]

_INSTANCE_NAME = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: Prefect block document names: lowercase letters, digits and dashes.
_BLOCK_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$")
#: Characters MongoDB refuses in a database name (the Windows set, so a plan is valid on every server).
_DB_NAME_FORBIDDEN = set('/\\. "$*<>:|?\0')
_DB_NAME_MAX_BYTES = 63
#: A long key id (16 hex digits) or a v4 (40) / v5 (64) fingerprint.
_KEY_ID = re.compile(r"^(?:[0-9A-F]{16}|[0-9A-F]{40}|[0-9A-F]{64})$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_BUCKET_RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_BUCKET_RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")
_REGION = re.compile(r"^[a-z0-9][a-z0-9-]*$")  # eu-west-1, us-east-1, or a local stand-in's name
_HTTP_URL = re.compile(r"^https?://[^/?#\s]+(?:[/?#]\S*)?$")


class PlanError(ValueError):
    """A plan file that cannot be read or is not valid; the message names the file and every bad field.

    `problems` holds (dotted field path, message) pairs; the path is "" for problems of the file itself.
    """

    def __init__(self, path: str | Path, problems: Sequence[tuple[str, str]]):
        self.path = str(path)
        self.problems = list(problems)
        super().__init__(
            "\n".join(f"plan {self.path}: {where + ': ' if where else ''}{what}" for where, what in self.problems)
        )


class _Section(BaseModel):
    # frozen: a plan is handed to many tasks; none of them may change it under the others.
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_env_name(value: str | None) -> str | None:
    if value is not None and not _ENV_NAME.match(value):
        raise ValueError(f"{value!r} is not an environment variable name (letters, digits, _)")
    return value


def _check_block_name(value: str | None) -> str | None:
    if value is not None and not _BLOCK_NAME.match(value):
        raise ValueError(f"{value!r} is not a Prefect block name (lowercase letters, digits and dashes)")
    return value


def _check_http_url(value: str | None) -> str | None:
    if value is not None and not _HTTP_URL.match(value):
        raise ValueError(f"{redact_uri(value)!r} is not an http:// or https:// URL")
    return value


def _set_fields(model: BaseModel, names: Sequence[str]) -> list[str]:
    return [name for name in names if getattr(model, name) is not None]


def check_database_name(name: object) -> str:
    """`name` if MongoDB accepts it as a database name; ValueError saying why not."""
    if not isinstance(name, str):
        # YAML reads `2024` or `on` as a number or a boolean.
        raise ValueError(f"database name {name!r} is not a string (quote it in YAML)")
    if not name:
        raise ValueError("a database name is empty")
    bad = sorted({c for c in name if c in _DB_NAME_FORBIDDEN})
    if bad:
        shown = " ".join("space" if c == " " else "NUL" if c == "\0" else c for c in bad)
        raise ValueError(f"database name {name!r} contains characters MongoDB forbids: {shown}")
    if len(name.encode()) > _DB_NAME_MAX_BYTES:
        raise ValueError(f"database name {name!r} is longer than {_DB_NAME_MAX_BYTES} bytes")
    return name


class InstancePlan(_Section):
    """One MongoDB deployment (a replica set) to back up."""

    #: Used in object keys, events, dashboards and run status.
    name: str
    #: Exactly one of uri, uri_env (an environment variable holding the URI), uri_secret (a Prefect Secret).
    uri: str | None = Field(default=None, repr=False)  # may hold a password: never in a repr
    uri_env: str | None = None
    uri_secret: str | None = None
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

    @field_validator("name")
    @classmethod
    def _name_fits_keys(cls, name: str) -> str:
        # The name is a path segment of every object key and an InfluxDB tag value.
        if not _INSTANCE_NAME.match(name) or set(name) == {"."}:
            raise ValueError(f"instance name {name!r}: use 1-64 of A-Z a-z 0-9 . _ - (not only dots)")
        return name

    @field_validator("uri")
    @classmethod
    def _mongodb_uri(cls, uri: str | None) -> str | None:
        if uri is not None and not uri.startswith(("mongodb://", "mongodb+srv://")):
            raise ValueError(f"{redact_uri(uri)!r} is not a mongodb:// or mongodb+srv:// URI")
        return uri

    _env = field_validator("uri_env")(_check_env_name)
    _secret = field_validator("uri_secret")(_check_block_name)

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
    def _one_source_no_contradiction(self) -> InstancePlan:
        sources = _set_fields(self, ("uri", "uri_env", "uri_secret"))
        if len(sources) != 1:
            got = f"got {', '.join(sources)}" if sources else "got none"
            raise ValueError(f"exactly one of uri, uri_env, uri_secret must be set ({got})")
        if isinstance(self.databases, list):
            excluded = [n for n in self.databases if self.is_excluded(n)]
            if excluded:
                raise ValueError(f"listed databases are also excluded by a pattern: {', '.join(excluded)}")
        return self

    @property
    def uri_source(self) -> Literal["uri", "uri_env", "uri_secret"]:
        """Which field holds the connection string: the resolver reads that one."""
        if self.uri is not None:
            return "uri"
        return "uri_env" if self.uri_env is not None else "uri_secret"

    def describe_uri_source(self) -> str:
        """Where the URI comes from, safe to log: the redacted URI, or the variable or block name."""
        if self.uri is not None:
            return f"uri {redact_uri(self.uri)}"
        if self.uri_env is not None:
            return f"environment variable {self.uri_env}"
        return f"Prefect Secret block {self.uri_secret}"

    def is_excluded(self, database: str) -> bool:
        return any(fnmatch.fnmatchcase(database, pattern) for pattern in self.exclude)

    def select_databases(self, available: Sequence[str]) -> list[str]:
        """The databases to back up, given those the instance has.

        `all`: every available database but admin, local and config, in the order given. A list: exactly the
        listed names, in the plan's order, even those not available (the caller reports them). Exclude
        patterns apply to both.
        """
        if self.databases == "all":
            chosen = [name for name in dict.fromkeys(available) if name not in SYSTEM_DATABASES]
        else:
            chosen = list(self.databases)
        return [name for name in chosen if not self.is_excluded(name)]


class StoragePlan(_Section):
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

    @field_validator("bucket")
    @classmethod
    def _bucket_name(cls, name: str) -> str:
        rule = _bucket_rule_broken(name)
        if rule:
            raise ValueError(f"{name!r} is not a valid S3 bucket name: {rule}")
        return name

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, prefix: str) -> str:
        # The prefix is glued to "<tier>/": without the slash "backups" would give "backupsdaily/...".
        if prefix and not prefix.endswith("/"):
            raise ValueError(f"{prefix!r} must be empty or end with '/'")
        if prefix.startswith("/") or "//" in prefix:
            raise ValueError(f"{prefix!r} must not start with '/' or contain '//' (empty key segments)")
        return prefix

    @field_validator("region")
    @classmethod
    def _region(cls, region: str | None) -> str | None:
        if region is not None and not _REGION.match(region):
            raise ValueError(f"{region!r} is not a region name such as eu-west-1")
        return region

    _endpoint = field_validator("endpoint_url")(_check_http_url)
    _credentials = field_validator("credentials_block")(_check_block_name)


def _bucket_rule_broken(name: str) -> str | None:
    """The S3 general-purpose bucket naming rule `name` breaks, or None."""
    if not 3 <= len(name) <= 63:
        return "3 to 63 characters"
    if not _BUCKET.match(name):
        return "lowercase letters, digits, dots and hyphens, starting and ending with a letter or digit"
    if ".." in name or ".-" in name or "-." in name:
        return "no dot next to another dot or a hyphen"
    try:
        ipaddress.IPv4Address(name)
        return "not an IP address"
    except ValueError:
        pass
    if name.startswith(_BUCKET_RESERVED_PREFIXES) or name.endswith(_BUCKET_RESERVED_SUFFIXES):
        return "a reserved prefix or suffix"
    return None


class EncryptionPlan(_Section):
    """How backups are encrypted with GPG: to public keys, or with a symmetric passphrase."""

    #: Long key ids or fingerprints (spaces and a 0x prefix are accepted and removed).
    recipients: list[str] = Field(default_factory=list)
    #: Armored or binary public key files; relative paths are resolved against the plan file's folder.
    public_key_files: list[Path] = Field(default_factory=list)
    #: Symmetric encryption instead: the passphrase from a Prefect Secret block or an environment variable.
    passphrase_secret: str | None = None
    passphrase_env: str | None = None
    #: The GnuPG home to use; None: $GNUPGHOME or ~/.gnupg. Relative to the plan file's folder.
    gnupghome: Path | None = None
    cipher: Cipher = "AES256"

    @field_validator("recipients")
    @classmethod
    def _pinned_keys(cls, recipients: list[str]) -> list[str]:
        cleaned = []
        for recipient in recipients:
            key = recipient.replace(" ", "").upper().removeprefix("0X")
            if not _KEY_ID.match(key):
                raise ValueError(
                    f"recipient {recipient!r}: give a full fingerprint (40 or 64 hex digits) or a "
                    "long key id (16); short ids and e-mail addresses can match the wrong key"
                )
            cleaned.append(key)
        return list(dict.fromkeys(cleaned))

    @field_validator("cipher", mode="before")
    @classmethod
    def _upper_cipher(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("public_key_files", mode="after")
    @classmethod
    def _resolve_key_files(cls, paths: list[Path], info: ValidationInfo) -> list[Path]:
        return [_resolve(path, info) for path in paths]

    @field_validator("gnupghome", mode="after")
    @classmethod
    def _resolve_home(cls, path: Path | None, info: ValidationInfo) -> Path | None:
        return None if path is None else _resolve(path, info)

    _passphrase_secret = field_validator("passphrase_secret")(_check_block_name)
    _passphrase_env = field_validator("passphrase_env")(_check_env_name)

    @model_validator(mode="after")
    def _one_method(self) -> EncryptionPlan:
        symmetric = _set_fields(self, ("passphrase_secret", "passphrase_env"))
        public = bool(self.recipients or self.public_key_files)
        if len(symmetric) > 1:
            raise ValueError("set one of passphrase_secret and passphrase_env, not both")
        if public and symmetric:
            raise ValueError(
                f"use public keys (recipients, public_key_files) or a passphrase ({symmetric[0]}), "
                "not both: gpg would ignore the passphrase"
            )
        if not public and not symmetric:
            raise ValueError(
                "no recipients, public_key_files, passphrase_secret or passphrase_env: backups are "
                "never stored unencrypted"
            )
        return self

    @property
    def method(self) -> Literal["public-key", "symmetric"]:
        return "public-key" if self.recipients or self.public_key_files else "symmetric"


def _resolve(path: Path, info: ValidationInfo) -> Path:
    """A path of the plan, relative to the plan file's folder (load_plan passes it as context)."""
    base = (info.context or {}).get("base_dir")
    path = path.expanduser()
    # normpath, not resolve(): `../../demo/keys/x.asc` reads better in messages than a symlink target.
    return path if path.is_absolute() or base is None else Path(os.path.normpath(Path(base) / path))


class CompressionPlan(_Section):
    """zstd settings. Levels above 19 ("ultra") need far more memory per thread; 3 is zstd's default."""

    level: int = Field(default=3, ge=1, le=22)
    #: 0: compress in the dump's own thread; N: N zstd worker threads.
    threads: int = Field(default=0, ge=0, le=64)


class InfluxV1Plan(_Section):
    """InfluxDB 1.x: line protocol to `/write?db=<database>`."""

    api: Literal["v1"]
    url: str
    database: str
    username: str | None = None
    password_env: str | None = None
    password_secret: str | None = None

    _url = field_validator("url")(_check_http_url)
    _password_env = field_validator("password_env")(_check_env_name)
    _password_secret = field_validator("password_secret")(_check_block_name)

    @model_validator(mode="after")
    def _password_needs_user(self) -> InfluxV1Plan:
        sources = _set_fields(self, ("password_env", "password_secret"))
        if len(sources) > 1:
            raise ValueError("set one of password_env and password_secret, not both")
        if sources and not self.username:
            raise ValueError(f"{sources[0]} is set but username is not")
        return self


class InfluxV2Plan(_Section):
    """InfluxDB 2.x (or VictoriaMetrics, InfluxDB 1.8+) through `/api/v2/write` with influxdb-client."""

    api: Literal["v2"]
    url: str
    org: str
    bucket: str
    #: The API token from a Prefect Secret block or an environment variable; neither for a server without
    #: authentication (VictoriaMetrics).
    token_secret: str | None = None
    token_env: str | None = None

    _url = field_validator("url")(_check_http_url)
    _token_env = field_validator("token_env")(_check_env_name)
    _token_secret = field_validator("token_secret")(_check_block_name)

    @model_validator(mode="after")
    def _one_token(self) -> InfluxV2Plan:
        if self.token_secret is not None and self.token_env is not None:
            raise ValueError("set one of token_secret and token_env, not both")
        return self


InfluxPlan = Annotated[InfluxV1Plan | InfluxV2Plan, Field(discriminator="api")]


class NotifyPlan(_Section):
    """Where success and failure events go."""

    influxdb: InfluxPlan | None = None


class RetryPlan(_Section):
    """Retries of the network steps (transient faults only): exponential backoff with jitter."""

    attempts: int = Field(default=3, ge=0, le=20)
    #: The first delay in seconds; each retry doubles it.
    backoff_s: float = Field(default=10.0, ge=0)
    #: Prefect's retry_jitter_factor: each delay may grow by up to this fraction.
    jitter: float = Field(default=0.5, ge=0)


class StatusPlan(_Section):
    """How `flows.status` and the `watchdog` flow judge the newest committed backup of each database."""

    #: RED when the newest committed backup finished longer ago than this. 26: a nightly run plus two hours
    #: of slack for a slow dump, so one late run is not an alarm and one missed run is.
    max_age_h: float = Field(default=26.0, gt=0, le=24 * 400)


class DrillPlan(_Section):
    """The restore fire drill (`flows.firedrill`): where backups are restored to prove they restore.

    The scratch MongoDB must be a server of its own: each drill restores into a fresh database there
    (`drill_<database>_<run id>`) and drops it afterwards, whatever the outcome.
    """

    #: Exactly one of scratch_uri, scratch_uri_env (an environment variable), scratch_uri_secret (a Prefect Secret).
    scratch_uri: str | None = Field(default=None, repr=False)  # may hold a password: never in a repr
    scratch_uri_env: str | None = None
    scratch_uri_secret: str | None = None
    #: The drill of a database fails when its newest committed backup finished longer ago than this: an old
    #: backup is a missed backup. 26: a nightly run plus two hours of slack.
    max_age_h: float = Field(default=26.0, gt=0, le=24 * 400)
    #: The GnuPG home holding the private key that opens the backups (the backup host needs only the public
    #: key). None: encryption.gnupghome, else $GNUPGHOME. Relative to the plan file's folder.
    gnupghome: Path | None = None

    @field_validator("scratch_uri")
    @classmethod
    def _mongodb_uri(cls, uri: str | None) -> str | None:
        if uri is not None and not uri.startswith(("mongodb://", "mongodb+srv://")):
            raise ValueError(f"{redact_uri(uri)!r} is not a mongodb:// or mongodb+srv:// URI")
        return uri

    _env = field_validator("scratch_uri_env")(_check_env_name)
    _secret = field_validator("scratch_uri_secret")(_check_block_name)

    @field_validator("gnupghome", mode="after")
    @classmethod
    def _resolve_home(cls, path: Path | None, info: ValidationInfo) -> Path | None:
        return None if path is None else _resolve(path, info)

    @model_validator(mode="after")
    def _one_scratch(self) -> DrillPlan:
        sources = _set_fields(self, ("scratch_uri", "scratch_uri_env", "scratch_uri_secret"))
        if len(sources) != 1:
            got = f"got {', '.join(sources)}" if sources else "got none"
            raise ValueError(f"exactly one of scratch_uri, scratch_uri_env, scratch_uri_secret must be set ({got})")
        return self


class BackupPlan(_Section):
    """A whole backup plan: what to back up, where, how it is encrypted and compressed, tiers, events."""

    instances: list[InstancePlan] = Field(min_length=1)
    storage: StoragePlan
    encryption: EncryptionPlan
    compression: CompressionPlan = Field(default_factory=CompressionPlan)
    tiers: TierPolicy
    notify: NotifyPlan | None = None
    retries: RetryPlan = Field(default_factory=RetryPlan)
    #: The restore fire drill; None: this plan is not drilled (flows.firedrill refuses it).
    drill: DrillPlan | None = None
    status: StatusPlan = Field(default_factory=StatusPlan)
    #: Continuous oplog archiving for point-in-time recovery; None: no instance is archived.
    pitr: PitrPlan | None = None
    #: How a restore thaws a backup from Glacier; prices for the retention dry run's cost table and lint.
    restore: RestorePlan = Field(default_factory=RestorePlan)
    prices: PricePlan = Field(default_factory=PricePlan)

    @field_validator("instances")
    @classmethod
    def _unique_names(cls, instances: list[InstancePlan]) -> list[InstancePlan]:
        # Two instances with one name would write to the same keys and the same dashboard row.
        seen: dict[str, int] = {}
        for index, instance in enumerate(instances):
            if instance.name in seen:
                raise ValueError(
                    f"instance name {instance.name!r} is used twice (instances.{seen[instance.name]}"
                    f".name and instances.{index}.name); names must be unique"
                )
            seen[instance.name] = index
        return instances

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
            if instance.uri is not None and redact_uri(instance.uri) != instance.uri:
                found.append(f"instances.{index}.uri: holds a password in the plan file; prefer uri_env or uri_secret")
        return found


# ---------------------------------------------------------------------------------------------------------
# Loading


class _StrictLoader(yaml.SafeLoader):
    """safe_load that refuses duplicate keys: PyYAML would silently keep the last `storage:` section."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_plan(path: str | Path) -> BackupPlan:
    """Reads, validates and returns the plan at `path`; PlanError naming the file and each bad field.

    Relative paths in the plan (encryption.public_key_files, encryption.gnupghome) are resolved against the
    plan file's folder, so a plan works from any working directory.
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PlanError(path, [("", f"cannot read the file: {exc}")]) from exc
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass: no arbitrary objects
    except yaml.YAMLError as exc:
        raise PlanError(path, [("", _yaml_problem(exc))]) from None
    if not isinstance(data, dict):
        found = "nothing" if data is None else f"a {type(data).__name__}"
        raise PlanError(
            path, [("", f"expected a mapping with instances, storage, encryption, tiers ...; found {found}")]
        )
    try:
        return BackupPlan.model_validate(data, context={"base_dir": file.parent.absolute()})
    except ValidationError as exc:
        raise PlanError(path, plan_problems(exc)) from None


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return f"{where}invalid YAML: {problem}" + (f" ({context})" if context and context != problem else "")


def plan_problems(error: ValidationError) -> list[tuple[str, str]]:
    """(dotted field path, message) for each error of a BackupPlan validation, in the words of a plan file.

    The input values are never shown: a bad field may hold a secret.
    """
    problems: list[tuple[str, str]] = []
    for item in error.errors(include_url=False, include_input=False):
        path, fields = _walk(item["loc"])
        kind = item["type"]
        if kind == "extra_forbidden":
            message = "unknown field"
            close = get_close_matches(str(item["loc"][-1]), fields, n=1)
            if close:
                message += f" (did you mean {close[0]}?)"
            elif fields:
                message += f" (known: {', '.join(fields)})"
        elif kind == "missing":
            message = "required field is missing"
        elif kind in ("union_tag_invalid", "union_tag_not_found"):
            # A discriminated union (notify.influxdb): say which field picks the kind, and its choices.
            ctx = item.get("ctx", {})
            discriminator = str(ctx.get("discriminator", "")).strip("'")
            path = f"{path}.{discriminator}" if discriminator else path
            expected = ctx.get("expected_tags") or ", ".join(repr(tag) for tag in _union_tags(item["loc"]))
            message = (
                f"unknown value {ctx['tag']!r}" if kind == "union_tag_invalid" else "required field is missing"
            ) + (f" (expected one of {expected})" if expected else "")
        else:
            message = item["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
        problems.append((path, message))
    return problems


def _walk(loc: tuple[int | str, ...]) -> tuple[str, list[str]]:
    """The dotted path of a pydantic error location, and the field names of the last model on that path.

    pydantic puts the tag of a discriminated union (notify.influxdb.v1.url) and "[key]" for bad dict keys into
    the location; neither is a level of the YAML file, so both are dropped.
    """
    parts: list[str] = []
    current: Any = BackupPlan
    fields: list[str] = []
    for item in loc:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            fields = list(current.model_fields)
            current = current.model_fields[item].annotation if item in current.model_fields else None
            parts.append(str(item))
        elif _is_union(current):
            member = _union_member(current, item)
            if member is not None:
                current = member
                continue
            parts.append(str(item))
            current = None
        elif get_origin(current) in (list, dict):
            current = get_args(current)[-1] if get_args(current) else None
            parts.append(str(item))
        elif item == "[key]":
            continue
        else:
            parts.append(str(item))
            current = None
    return ".".join(parts), fields


def _union_tags(loc: tuple[int | str, ...]) -> list[str]:
    """The Literal values of the discriminated union at `loc` (for an error that lacks them)."""
    current: Any = BackupPlan
    for item in loc:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel) and item in current.model_fields:
            current = current.model_fields[item].annotation
        elif get_origin(current) in (list, dict) and get_args(current):
            current = get_args(current)[-1]
        else:
            return []
    current = _unwrap(current)
    tags: list[str] = []
    if _is_union(current):
        for member in get_args(current):
            if isinstance(member, type) and issubclass(member, BaseModel):
                for field in member.model_fields.values():
                    if get_origin(field.annotation) is Literal:
                        tags.extend(get_args(field.annotation))
    return tags


def _unwrap(annotation: Any) -> Any:
    """`X` for `Annotated[X, ...]` and for `X | None`."""
    while True:
        if get_origin(annotation) is Annotated:
            annotation = get_args(annotation)[0]
            continue
        if _is_union(annotation):
            members = [a for a in get_args(annotation) if a is not type(None)]
            if len(members) == 1:
                annotation = members[0]
                continue
        return annotation


def _is_union(annotation: Any) -> bool:
    return get_origin(annotation) in (Union, UnionType)


def _union_member(union: Any, tag: int | str) -> Any:
    """The model of a discriminated union whose `api` (any Literal field) is `tag`, or None."""
    for member in get_args(union):
        if isinstance(member, type) and issubclass(member, BaseModel):
            for field in member.model_fields.values():
                if get_origin(field.annotation) is Literal and tag in get_args(field.annotation):
                    return member
    return None
