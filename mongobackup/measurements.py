"""Measurement, tag and field names of the backup events: the one module where they are spelled.

The notifier writes what is declared here, and the Grafana dashboards and alert rules (`mongobackup.dashboards`) are
generated from the same declarations, so a panel can never query a name the code does not write. Every
measurement is a `MeasurementSpec` listing its tag and field names and field types; `Event` refuses names that
are not in its measurement's spec.

Shapes written today (<r> is the replica set; each line ends with a nanosecond timestamp):

  instance_backup_completed,database=<db>,instance=<r>,tier=<t> value=true,bytes=<n>i,docs=<n>i,duration_s=<x>
  instance_backup_completed,instance=<r> value=true
  instance_backup_failed,database=<db>,instance=<r>,stage=<stage>,tier=<t> value=1i,error="<short text>"
  instance_backup_stale,database=<db>,instance=<r> value=1i,age_h=<x>          (the watchdog; no age_h: missing)
  instance_oplog_archived,instance=<r> value=true,lag_s=<x>,entries=<n>i,bytes=<n>i   (each committed segment)
  instance_oplog_gap,instance=<r> value=1i,gap_s=<x>                          (the oplog rolled over unarchived)
  instance_oplog_lag,instance=<r> value=1i,lag_s=<x>                          (the watchdog: lag above max_lag_s)
  consul_snapshot_completed,source=<s>,tier=<t> value=true,bytes=<n>i,snapshot_bytes=<n>i,duration_s=<x>,index=<n>i
  consul_snapshot_failed,source=<s>,stage=<stage>,tier=<t> value=1i,error="<short text>"
  etcd_snapshot_completed,... / etcd_snapshot_failed,...                     (the same shapes; index: the revision)

The watchdog and the drill report a snapshot source like an instance with one database called `snapshot`
(`instance_backup_stale,database=snapshot,instance=<s>`, `instance_restore_drill,...`), so the existing
stale and drill panels and alerts cover snapshots too.

The second line is the team's existing contract: their Grafana panel runs
`SELECT last("value") FROM "instance_backup_completed" WHERE "instance"='<rs>' AND time > now() - 24h` and
turns red when it finds nothing. It is written once per instance when every database of that instance
succeeded, with only the `instance` tag, so that the panel's query matches it exactly as it did before.

Field types are part of the contract: InfluxDB fixes a field's type per shard and rejects a point whose
field has another type ("field type conflict"). `value` is a boolean in `instance_backup_completed` because
the existing points are; `instance_backup_failed` uses an integer 1 so that InfluxQL `sum("value")` per time
bucket counts failures (InfluxQL's sum() refuses booleans; count() works on either).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

# Tag names.
INSTANCE = "instance"  # the replica set name (what the team's panel filters on)
DATABASE = "database"
TIER = "tier"  # daily, weekly, monthly, quarterly, yearly
SOURCE = "source"  # a key/value store snapshotted (snapshots[].name in the plan)
STAGE = "stage"  # where a backup failed: dump, compress, encrypt, upload, verify, commit, list-databases, ...

# Field names.
VALUE = "value"
BYTES = "bytes"  # bytes stored in S3 (after compression and encryption)
DOCS = "docs"
DURATION_S = "duration_s"
ERROR = "error"  # a short, one-line, already redacted description of the failure
RESTORE_MB_S = "restore_mb_s"
BACKUP_AGE_H = "backup_age_h"
# The restore drill's time to restore, per stage: waiting for a thaw from Glacier, reading and decrypting the
# object, writing into MongoDB, verifying the restored data, and all of it.
THAW_WAIT_S = "thaw_wait_s"
DOWNLOAD_S = "download_s"
RESTORE_S = "restore_s"
VERIFY_S = "verify_s"
TOTAL_S = "total_s"
AGE_H = "age_h"
LAG_S = "lag_s"  # recovery point lag: now minus the newest archived oplog entry's time
ENTRIES = "entries"  # oplog entries in a segment
GAP_S = "gap_s"  # seconds of oplog lost between two chains
SNAPSHOT_BYTES = "snapshot_bytes"  # the snapshot file's size, before compression and encryption
INDEX = "index"  # the store's position in the snapshot: Consul's Raft index, etcd's revision

#: The longest `error` string we write: enough for "SourceError: instance rs-a, database x: ..." and short
#: enough that a dashboard table stays readable. Longer messages are cut with an ellipsis.
ERROR_MAX_CHARS = 240

FieldValue = bool | int | float | str


@dataclass(frozen=True)
class MeasurementSpec:
    """MeasurementSpec declares a measurement: the tags and fields (with types) its points may carry.

    `required_tags`/`required_fields` are what every point of the measurement has; the other declared names
    are optional (the per-instance completion point has no database, tier or sizes).
    """

    name: str
    tags: tuple[str, ...]
    fields: Mapping[str, type]
    required_tags: tuple[str, ...] = (INSTANCE,)
    required_fields: tuple[str, ...] = (VALUE,)
    description: str = ""

    def __post_init__(self) -> None:
        # Read-only, so that no caller can widen the contract at run time.
        object.__setattr__(self, "fields", MappingProxyType(dict(self.fields)))

    @property
    def tag_names(self) -> frozenset[str]:
        return frozenset(self.tags)

    @property
    def field_names(self) -> frozenset[str]:
        return frozenset(self.fields)

    def check(self, tags: Mapping[str, str], fields: Mapping[str, FieldValue]) -> None:
        """check raises ValueError/TypeError naming a tag or field this measurement does not declare."""
        unknown_tags = sorted(set(tags) - self.tag_names)
        if unknown_tags:
            raise ValueError(f"measurement {self.name}: undeclared tag(s) {', '.join(unknown_tags)}")
        unknown_fields = sorted(set(fields) - self.field_names)
        if unknown_fields:
            raise ValueError(f"measurement {self.name}: undeclared field(s) {', '.join(unknown_fields)}")
        missing = [name for name in self.required_tags if name not in tags]
        missing += [name for name in self.required_fields if name not in fields]
        if missing:
            raise ValueError(f"measurement {self.name}: missing {', '.join(missing)}")
        for name, value in fields.items():
            expected = self.fields[name]
            # Exact type: bool is an int subclass, and an int where a float was declared would be written
            # with the `i` suffix, as an integer, and hit a field type conflict in InfluxDB.
            if type(value) is not expected:
                raise TypeError(
                    f"measurement {self.name}: field {name} must be {expected.__name__}, not {type(value).__name__}"
                )


INSTANCE_BACKUP_COMPLETED = MeasurementSpec(
    name="instance_backup_completed",
    tags=(INSTANCE, DATABASE, TIER),
    fields={VALUE: bool, BYTES: int, DOCS: int, DURATION_S: float},
    description="a database backup was committed (with database/tier/sizes), or every database of an "
    "instance was (instance tag and value only: the existing Grafana panel's point)",
)

INSTANCE_BACKUP_FAILED = MeasurementSpec(
    name="instance_backup_failed",
    tags=(INSTANCE, DATABASE, TIER, STAGE),
    fields={VALUE: int, ERROR: str},
    description="a backup failed after its retries; value is always 1 so that sum() counts failures. "
    "database and tier are absent when the instance itself failed (unreachable, listing failed)",
)

# Written by the restore fire drill (`flows.firedrill`), one point per database drilled. value is true when the
# newest committed backup restored, verified against its manifest and was not older than drill.max_age_h.
INSTANCE_RESTORE_DRILL = MeasurementSpec(
    name="instance_restore_drill",
    tags=(INSTANCE, DATABASE, TIER),
    fields={
        VALUE: bool,
        BYTES: int,
        DOCS: int,
        DURATION_S: float,
        RESTORE_MB_S: float,
        BACKUP_AGE_H: float,
        THAW_WAIT_S: float,
        DOWNLOAD_S: float,
        RESTORE_S: float,
        VERIFY_S: float,
        TOTAL_S: float,
    },
    description="a restore drill of one committed backup: the newest of a database, or a tier's archived pick",
)

# Written by the watchdog when the newest committed backup is too old or missing. value is always 1
# (an integer, so that sum() counts stale databases); database is absent when an instance backed up with
# `databases: all` has no backup at all.
INSTANCE_BACKUP_STALE = MeasurementSpec(
    name="instance_backup_stale",
    tags=(INSTANCE, DATABASE),
    fields={VALUE: int, AGE_H: float},
    description="the newest committed backup of a database is older than the threshold (or missing: then no age_h)",
)

# Point-in-time recovery: the oplog archiver writes one point per committed segment (the lag right after the
# commit, the segment's entries and stored bytes), and one when it finds the oplog rolled over unarchived.
INSTANCE_OPLOG_ARCHIVED = MeasurementSpec(
    name="instance_oplog_archived",
    tags=(INSTANCE,),
    fields={VALUE: bool, LAG_S: float, ENTRIES: int, BYTES: int},
    required_fields=(VALUE, LAG_S),
    description="an oplog segment was committed; lag_s is the recovery point lag right after it",
)

INSTANCE_OPLOG_GAP = MeasurementSpec(
    name="instance_oplog_gap",
    tags=(INSTANCE,),
    fields={VALUE: int, GAP_S: float},
    description="the oplog rolled over while nothing archived it: points inside the gap cannot be restored",
)

# Written by the watchdog when an instance's recovery point lag is above pitr.max_lag_s (no lag_s: nothing
# archived at all).
INSTANCE_OPLOG_LAG = MeasurementSpec(
    name="instance_oplog_lag",
    tags=(INSTANCE,),
    fields={VALUE: int, LAG_S: float},
    description="the recovery point lag of an instance is above pitr.max_lag_s (or nothing is archived)",
)


def _snapshot_specs(kind: str, store: str) -> tuple[MeasurementSpec, MeasurementSpec]:
    completed = MeasurementSpec(
        name=f"{kind}_snapshot_completed",
        tags=(SOURCE, TIER),
        fields={VALUE: bool, BYTES: int, SNAPSHOT_BYTES: int, DURATION_S: float, INDEX: int},
        required_tags=(SOURCE, TIER),
        description=f"a {store} snapshot passed its integrity check and was committed (value is always true); "
        f"{INDEX} is {'the Raft index' if kind == 'consul' else 'the revision'} it holds",
    )
    failed = MeasurementSpec(
        name=f"{kind}_snapshot_failed",
        tags=(SOURCE, TIER, STAGE),
        fields={VALUE: int, ERROR: str},
        required_tags=(SOURCE, STAGE),
        description=f"a {store} snapshot failed after its retries (value 1, so sum() counts failures); stage "
        "check means the snapshot itself was refused by its integrity check and was not stored",
    )
    return completed, failed


CONSUL_SNAPSHOT_COMPLETED, CONSUL_SNAPSHOT_FAILED = _snapshot_specs("consul", "Consul")
ETCD_SNAPSHOT_COMPLETED, ETCD_SNAPSHOT_FAILED = _snapshot_specs("etcd", "etcd")
#: The snapshot measurements by kind of store (the plan's `snapshots[].kind`).
SNAPSHOT_COMPLETED: Mapping[str, MeasurementSpec] = MappingProxyType(
    {"consul": CONSUL_SNAPSHOT_COMPLETED, "etcd": ETCD_SNAPSHOT_COMPLETED}
)
SNAPSHOT_FAILED: Mapping[str, MeasurementSpec] = MappingProxyType(
    {"consul": CONSUL_SNAPSHOT_FAILED, "etcd": ETCD_SNAPSHOT_FAILED}
)

#: Every measurement the project writes, by name.
MEASUREMENTS: Mapping[str, MeasurementSpec] = MappingProxyType(
    {
        spec.name: spec
        for spec in (
            INSTANCE_BACKUP_COMPLETED,
            INSTANCE_BACKUP_FAILED,
            INSTANCE_RESTORE_DRILL,
            INSTANCE_BACKUP_STALE,
            INSTANCE_OPLOG_ARCHIVED,
            INSTANCE_OPLOG_GAP,
            INSTANCE_OPLOG_LAG,
            *SNAPSHOT_COMPLETED.values(),
            *SNAPSHOT_FAILED.values(),
        )
    }
)
