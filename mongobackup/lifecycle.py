"""The bucket's S3 lifecycle configuration, generated from the tier policy and merged in by rule ID.

One rule per tier, filtered on the tier's key prefix (`<storage prefix><tier>/`), so that S3 itself enforces
the retention policy:

    Expiration                      after the tier's retention_days
    Transitions                     to GLACIER after glacier_after_days (every tier but daily; none when None;
                                    tiers.transition_class names another class per tier)
    NoncurrentVersionTransitions    the same, counted from when a version became noncurrent: without it a
                                    versioned bucket keeps deleted or overwritten backups in STANDARD
    NoncurrentVersionExpiration     after the tier's retention_days (what versioning keeps of a deleted backup)
    AbortIncompleteMultipartUpload  after 7 days (an upload orphaned by a killed backup process)

The days, the Glacier tiers and the prefixes come from `TierPolicy`, the same object that decides a backup's
tier, so the rules cannot drift from the keys the backup flow writes.

Applying is a read-merge-write of the whole configuration (S3 has no per-rule API): rules whose ID is not
ours are written back untouched, ours are replaced by ID, and nothing is written when the merge equals what
the bucket has, so applying twice changes nothing. `diff_lifecycle` is the dry run. Rule IDs carry the
storage prefix when there is one, so that two plans sharing a bucket under different prefixes never replace
each other's rules.

Stores that do not implement transitions (SeaweedFS) or lifecycle rules at all answer NotImplemented;
`LifecycleUnsupported` says so and points at `prune`, which deletes expired backups by the same policy.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from mongobackup.errors import StorageError, Unsupported
from mongobackup.storage import BucketAdmin
from mongobackup.tiers import Tier, TierPolicy, prefix_for

RULE_ID_PREFIX = "mongo-backup-"
#: A multipart upload left open this long belongs to a backup process that died (a run lasts hours at most).
ABORT_INCOMPLETE_MULTIPART_DAYS = 7
#: AWS's default for TransitionDefaultMinimumObjectSize; a bucket set otherwise keeps its setting.
DEFAULT_MIN_TRANSITION_SIZE = "all_storage_classes_128K"
#: Codes a store may use when it refuses only the transitions (checked only for rules with any); a store
#: that implements no lifecycle at all raises `errors.Unsupported` (SeaweedFS: NotImplemented, HTTP 501).
TRANSITION_REFUSED_CODES = frozenset({"InvalidArgument", "InvalidRequest", "MalformedXML", "InvalidStorageClass"})
#: Object Lock retention modes: GOVERNANCE can be lifted by a privileged user, COMPLIANCE by nobody.
LockMode = Literal["GOVERNANCE", "COMPLIANCE"]

Rule = dict[str, Any]

PRUNE_HINT = (
    "delete expired backups by the same policy with `python -m flows.retention --plan PLAN --prune` "
    "(the `retention` flow with prune=True), on a schedule"
)


class LifecycleUnsupported(StorageError):
    """LifecycleUnsupported: the store refuses the generated lifecycle rules; the message says what to do."""


# ---------------------------------------------------------------------------------------------------------
# Generating


def rule_id(tier: Tier, prefix: str = "") -> str:
    """The ID of our rule for `tier`: `mongo-backup-<tier>`, plus `:<prefix>` under a storage prefix."""
    base = f"{RULE_ID_PREFIX}{Tier(tier).value}"
    return f"{base}:{prefix}" if prefix else base


def tier_rule(policy: TierPolicy, tier: Tier, prefix: str = "") -> Rule:
    """The lifecycle rule of one tier, in the shape boto3's put/get_bucket_lifecycle_configuration use."""
    days = policy.retention_days[tier]
    rule: Rule = {
        "ID": rule_id(tier, prefix),
        "Filter": {"Prefix": prefix + prefix_for(tier)},
        "Status": "Enabled",
        "Expiration": {"Days": days},
    }
    glacier = policy.transition_days(tier)
    storage_class = policy.storage_class_after(tier)
    if glacier is not None and storage_class is not None:
        rule["Transitions"] = [{"Days": glacier, "StorageClass": storage_class}]
        rule["NoncurrentVersionTransitions"] = [{"NoncurrentDays": glacier, "StorageClass": storage_class}]
    rule["NoncurrentVersionExpiration"] = {"NoncurrentDays": days}
    rule["AbortIncompleteMultipartUpload"] = {"DaysAfterInitiation": ABORT_INCOMPLETE_MULTIPART_DAYS}
    return rule


def lifecycle_rules(policy: TierPolicy, prefix: str = "") -> list[Rule]:
    """Our rules, one per tier, shortest-lived tier first."""
    return [tier_rule(policy, tier, prefix) for tier in policy.tiers()]


def merge_rules(current: Sequence[Rule], ours: Sequence[Rule]) -> list[Rule]:
    """`current` with each of `ours` replacing the rule of the same ID in place, the others appended.

    Rules with other IDs (someone else's, or ours under another prefix) are kept as they are, in their order.
    """
    by_id = {rule["ID"]: rule for rule in ours}
    merged = [by_id.pop(rule.get("ID", ""), rule) for rule in current]
    return merged + [rule for rule in ours if rule["ID"] in by_id]


# ---------------------------------------------------------------------------------------------------------
# Comparing


@dataclass(frozen=True)
class RuleChange:
    """RuleChange is what applying does to one rule ID."""

    rule_id: str
    kind: Literal["add", "update", "unchanged", "foreign"]
    before: Rule | None
    after: Rule | None

    def describe(self) -> list[str]:
        """Human-readable lines for the dry run: one headline, and one line per changed setting."""
        if self.kind == "add":
            return [f"+ add {self.rule_id}"] + [f"    {path} = {value}" for path, value in _flatten(self.after)]
        if self.kind == "update":
            return [f"~ update {self.rule_id}"] + list(_field_changes(self.before or {}, self.after or {}))
        if self.kind == "foreign":
            return [f"  keep {self.rule_id} (not ours)"]
        return [f"  unchanged {self.rule_id}"]


@dataclass(frozen=True)
class LifecycleDiff:
    """LifecycleDiff is the bucket's configuration now, what applying would write, and the change per rule."""

    bucket: str
    current: tuple[Rule, ...]
    merged: tuple[Rule, ...]
    changes: tuple[RuleChange, ...]
    warnings: tuple[str, ...] = ()
    #: The bucket's TransitionDefaultMinimumObjectSize when it is not AWS's default (written back as it was).
    min_transition_size: str | None = None

    @property
    def changed(self) -> bool:
        return any(change.kind in ("add", "update") for change in self.changes)

    def lines(self) -> list[str]:
        head = f"lifecycle of s3://{self.bucket}: " + ("changes" if self.changed else "no change")
        body = [line for change in self.changes for line in change.describe()]
        return [head, *body, *(f"! {warning}" for warning in self.warnings)]


def diff_rules(
    bucket: str, current: Sequence[Rule], ours: Sequence[Rule], min_transition_size: str | None = None
) -> LifecycleDiff:
    """The diff of merging `ours` into `current` (pure)."""
    current_by_id = {rule.get("ID", ""): rule for rule in current}
    our_ids = {rule["ID"] for rule in ours}
    changes = [
        RuleChange(rule.get("ID", ""), "foreign", rule, rule) for rule in current if rule.get("ID", "") not in our_ids
    ]
    for rule in ours:
        before = current_by_id.get(rule["ID"])
        kind: Literal["add", "update", "unchanged"] = (
            "add" if before is None else "unchanged" if _canonical(before) == _canonical(rule) else "update"
        )
        changes.append(RuleChange(rule["ID"], kind, before, rule))
    return LifecycleDiff(
        bucket,
        tuple(current),
        tuple(merge_rules(current, ours)),
        tuple(changes),
        tuple(_overlap_warnings(current, ours)),
        min_transition_size,
    )


def _canonical(rule: Mapping[str, Any]) -> str:
    # Key order is not meaningful in S3's answer; a legacy top-level Prefix means the same as Filter.Prefix.
    normal = dict(rule)
    if "Prefix" in normal and "Filter" not in normal:
        normal["Filter"] = {"Prefix": normal.pop("Prefix")}
    return json.dumps(normal, sort_keys=True, default=str)


def rule_prefix(rule: Mapping[str, Any]) -> str | None:
    """The key prefix a rule filters on ("" for the whole bucket); None when it filters on tags or sizes only."""
    filt = rule.get("Filter")
    if filt is None:
        return str(rule.get("Prefix", ""))
    if "Prefix" in filt:
        return str(filt["Prefix"])
    if "And" in filt:
        return str(filt["And"].get("Prefix", ""))
    return "" if not filt else None


def _overlap_warnings(current: Sequence[Rule], ours: Sequence[Rule]) -> Iterator[str]:
    # A foreign rule over the same keys (the team's old hand-written rules, say) can expire backups sooner
    # than the policy: S3 applies the earliest action of all matching rules.
    our_ids = {rule["ID"] for rule in ours}
    for rule in current:
        prefix = rule_prefix(rule)
        if rule.get("ID", "") in our_ids or rule.get("Status") != "Enabled" or prefix is None:
            continue
        hit = [
            r["Filter"]["Prefix"]
            for r in ours
            if r["Filter"]["Prefix"].startswith(prefix) or prefix.startswith(r["Filter"]["Prefix"])
        ]
        if hit:
            yield (
                f"rule {rule.get('ID', '(no ID)')!r} (not ours, prefix {prefix!r}) also applies to "
                f"{', '.join(hit)}: S3 applies the earliest action of all matching rules"
            )


def _flatten(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, Mapping):
        for key in value:
            yield from _flatten(value[key], f"{path}.{key}" if path else str(key))
    elif isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
        for index, item in enumerate(value):
            yield from _flatten(item, f"{path}[{index}]")
    else:
        yield path, value


def _field_changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> Iterator[str]:
    old, new = dict(_flatten(before)), dict(_flatten(after))
    for path in sorted(set(old) | set(new)):
        if path not in new:
            yield f"    {path}: {old[path]} -> (removed)"
        elif path not in old:
            yield f"    {path}: (none) -> {new[path]}"
        elif old[path] != new[path]:
            yield f"    {path}: {old[path]} -> {new[path]}"


# ---------------------------------------------------------------------------------------------------------
# Reading and applying


def read_rules(storage: BucketAdmin) -> tuple[list[Rule], str | None]:
    """The bucket's lifecycle rules ([] when it has none) and its non-default minimum transition size."""
    try:
        rules, size = storage.lifecycle_rules()
    except Unsupported as exc:
        raise LifecycleUnsupported(
            f"{storage.where()} has no lifecycle configuration support ({exc.code}): nothing expires backups "
            f"there; {PRUNE_HINT}",
            code=exc.code,
        ) from exc
    return rules, (size if size and size != DEFAULT_MIN_TRANSITION_SIZE else None)


def diff_lifecycle(
    storage: BucketAdmin, policy: TierPolicy, prefix: str = "", extra: Sequence[Rule] = ()
) -> LifecycleDiff:
    """What applying the policy's rules (and `extra` rules of ours, e.g. the oplog's) would change; reads only."""
    current, size = read_rules(storage)
    return diff_rules(storage.bucket, current, [*lifecycle_rules(policy, prefix), *extra], size)


def apply_lifecycle(
    storage: BucketAdmin, policy: TierPolicy, prefix: str = "", extra: Sequence[Rule] = ()
) -> LifecycleDiff:
    """Merges the policy's rules (and `extra`) into the bucket's configuration; writes only when something changes."""
    diff = diff_lifecycle(storage, policy, prefix, extra)
    if diff.changed:
        _put_rules(storage, list(diff.merged), diff.min_transition_size)
    return diff


def _put_rules(storage: BucketAdmin, rules: list[Rule], min_transition_size: str | None) -> None:
    try:
        storage.put_lifecycle_rules(rules, min_transition_size)
    except StorageError as exc:
        refused = _refusal(storage, rules, exc)
        if refused is not None:
            raise refused from exc
        raise


def _refusal(storage: BucketAdmin, rules: list[Rule], exc: StorageError) -> LifecycleUnsupported | None:
    """The clear error for a store that does not implement what the rules ask, or None for other errors."""
    transitions = any(rule.get("Transitions") or rule.get("NoncurrentVersionTransitions") for rule in rules)
    unsupported = isinstance(exc, Unsupported)
    if transitions and (unsupported or exc.code in TRANSITION_REFUSED_CODES):
        return LifecycleUnsupported(
            f"{storage.where()} refuses lifecycle rules with storage-class transitions ({exc.code}: "
            f"{exc}). A store without a Glacier class (SeaweedFS, MinIO, ...) needs "
            f"`tiers.glacier_after_days: null` in the plan, which leaves the transitions out; and if the store "
            f"does not enforce lifecycle rules at all, {PRUNE_HINT}",
            code=exc.code,
        )
    if unsupported:
        return LifecycleUnsupported(
            f"{storage.where()} refuses lifecycle rules ({exc.code}: {exc}): nothing expires backups there; "
            f"{PRUNE_HINT}",
            code=exc.code,
        )
    return None


# ---------------------------------------------------------------------------------------------------------
# Versioning and Object Lock


@dataclass(frozen=True)
class BucketSetting:
    """BucketSetting is one bucket-level setting: what it is, what applying sets it to, and warnings."""

    name: str
    before: str
    after: str
    warnings: tuple[str, ...] = field(default=())

    @property
    def changed(self) -> bool:
        return self.before != self.after

    def lines(self) -> list[str]:
        head = f"{'~' if self.changed else ' '} {self.name}: {self.before}" + (
            f" -> {self.after}" if self.changed else " (unchanged)"
        )
        return [head, *(f"! {warning}" for warning in self.warnings)]


def versioning_setting(storage: BucketAdmin) -> BucketSetting:
    """Bucket versioning now, and Enabled as what applying sets."""
    return BucketSetting("versioning", storage.versioning(), "Enabled")


def enable_versioning(storage: BucketAdmin, *, dry_run: bool = False) -> BucketSetting:
    """Turns versioning on (a deleted or overwritten backup stays recoverable until the noncurrent rule)."""
    setting = versioning_setting(storage)
    if setting.changed and not dry_run:
        storage.enable_versioning()
    return setting


def object_lock_setting(storage: BucketAdmin, policy: TierPolicy, days: int, mode: LockMode) -> BucketSetting:
    """The bucket's default Object Lock retention now, and `<mode> <days> days` as what applying sets."""
    if days < 1:
        raise ValueError(f"object lock retention must be at least 1 day, got {days}")
    config = storage.object_lock()
    retention = (config or {}).get("Rule", {}).get("DefaultRetention", {})
    if config is None:
        before = "Off"
    elif retention.get("Days"):
        before = f"{retention.get('Mode')} {retention.get('Days')} days"
    else:
        before = f"{config.get('ObjectLockEnabled', 'Off')}, no default retention"
    # A locked version cannot be deleted, by lifecycle or prune, before its lock ends: the lock, not the tier,
    # then decides how long a short-lived tier's backups stay.
    longer = [f"{t.value} ({policy.retention_days[t]} days)" for t in policy.tiers() if policy.retention_days[t] < days]
    warnings = (
        (
            f"the lock ({days} days) outlives the retention of {', '.join(longer)}: those backups stay (as "
            f"noncurrent versions) until their lock ends",
        )
        if longer
        else ()
    )
    return BucketSetting("object lock default retention", before, f"{mode} {days} days", warnings)


def enable_object_lock(
    storage: BucketAdmin, policy: TierPolicy, days: int, mode: LockMode = "GOVERNANCE", *, dry_run: bool = False
) -> BucketSetting:
    """Sets the bucket's default Object Lock retention; the store must support Object Lock (and versioning)."""
    setting = object_lock_setting(storage, policy, days, mode)
    if setting.changed and not dry_run:
        config = {"ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": mode, "Days": days}}}
        try:
            storage.put_object_lock(config)
        except StorageError as exc:
            if isinstance(exc, Unsupported) or exc.code == "InvalidBucketState":
                raise StorageError(
                    f"{storage.where()} refuses Object Lock ({exc.code}: {exc}); on AWS the bucket needs versioning on "
                    "(--versioning), on other stores Object Lock may have to be enabled when the "
                    "bucket is created, or is not supported at all"
                ) from exc
            raise
    return setting
