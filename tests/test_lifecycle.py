"""The generated S3 lifecycle configuration, applied to real stores: moto (which keeps rules exactly, Glacier
transitions included) and SeaweedFS (which refuses transitions, as self-hosted stores do).

The expected rules are the team's hand-written lifecycle JSON for the five tiers, spelled out literally here
and never computed from mongobackup.tiers, so a bug in the generator cannot hide in its own expectation.
"""

from __future__ import annotations

import uuid

import pytest

from flows.retention import main
from mongobackup.lifecycle import (
    LifecycleUnsupported,
    apply_lifecycle,
    diff_lifecycle,
    enable_object_lock,
    enable_versioning,
    lifecycle_rules,
    merge_rules,
)
from mongobackup.s3 import S3Storage
from mongobackup.tiers import TierPolicy
from tests.helpers import own_s3_client, storage_on
from tests.planfiles import write_plan


def seed_rule(tier: str, days: int, glacier: bool, prefix: str = "", rule_id: str | None = None) -> dict:
    rule = {
        "ID": rule_id or f"mongo-backup-{tier}",
        "Filter": {"Prefix": f"{prefix}{tier}/"},
        "Status": "Enabled",
        "Expiration": {"Days": days},
    }
    if glacier:
        rule["Transitions"] = [{"Days": 9, "StorageClass": "GLACIER"}]
        rule["NoncurrentVersionTransitions"] = [{"NoncurrentDays": 9, "StorageClass": "GLACIER"}]
    rule["NoncurrentVersionExpiration"] = {"NoncurrentDays": days}
    rule["AbortIncompleteMultipartUpload"] = {"DaysAfterInitiation": 7}
    return rule


#: The seed's rules: daily 9 days (never Glacier: 90 days minimum billing), weekly 40, monthly 365,
#: quarterly 2190, yearly 43800, all but daily in Glacier after 9 days.
SEED_RULES = [
    seed_rule("daily", 9, glacier=False),
    seed_rule("weekly", 40, glacier=True),
    seed_rule("monthly", 365, glacier=True),
    seed_rule("quarterly", 2190, glacier=True),
    seed_rule("yearly", 43800, glacier=True),
]

FOREIGN_RULE = {
    "ID": "team-logs-expire",
    "Filter": {"Prefix": "logs/"},
    "Status": "Enabled",
    "Expiration": {"Days": 30},
}

POLICY = TierPolicy(timezone="Europe/London")


def stored_rules(storage: S3Storage) -> list[dict]:
    return storage.client.get_bucket_lifecycle_configuration(Bucket=storage.bucket)["Rules"]


def by_id(rules: list[dict]) -> dict[str, dict]:
    return {rule["ID"]: rule for rule in rules}


def count_puts(storage: S3Storage) -> list[int]:
    calls = [0]

    def count(**_: object) -> None:
        calls[0] += 1

    storage.client.meta.events.register("before-call.s3.PutBucketLifecycleConfiguration", count)
    return calls


def test_generated_rules_are_the_seed_rules():
    assert lifecycle_rules(POLICY) == SEED_RULES
    prefixed = lifecycle_rules(POLICY, "prod/")
    assert [r["Filter"]["Prefix"] for r in prefixed] == [
        f"prod/{t}/" for t in ("daily", "weekly", "monthly", "quarterly", "yearly")
    ]
    assert [r["ID"] for r in prefixed][0] == "mongo-backup-daily:prod/"


def test_without_glacier_no_rule_has_transitions():
    rules = lifecycle_rules(TierPolicy(timezone="UTC", glacier_after_days=None))
    assert all("Transitions" not in rule and "NoncurrentVersionTransitions" not in rule for rule in rules)
    assert [r["Expiration"]["Days"] for r in rules] == [9, 40, 365, 2190, 43800]


def test_transition_class_per_tier_moves_current_and_noncurrent_versions_alike():
    policy = TierPolicy(timezone="UTC", transition_class={"weekly": "glacier_ir", "monthly": "none"})
    rules = {r["ID"]: r for r in lifecycle_rules(policy)}
    assert rules["mongo-backup-weekly"]["Transitions"] == [{"Days": 9, "StorageClass": "GLACIER_IR"}]
    assert rules["mongo-backup-weekly"]["NoncurrentVersionTransitions"] == [
        {"NoncurrentDays": 9, "StorageClass": "GLACIER_IR"}
    ]
    assert "Transitions" not in rules["mongo-backup-monthly"]
    assert "NoncurrentVersionTransitions" not in rules["mongo-backup-monthly"]
    assert rules["mongo-backup-yearly"]["Transitions"] == [{"Days": 9, "StorageClass": "GLACIER"}]


def test_applied_to_moto_reads_back_equal_rule_by_rule(storage):
    diff = apply_lifecycle(storage, POLICY)
    assert diff.changed
    stored = by_id(stored_rules(storage))
    assert sorted(stored) == sorted(r["ID"] for r in SEED_RULES)
    for expected in SEED_RULES:
        assert stored[expected["ID"]] == expected, expected["ID"]


def test_applying_twice_changes_nothing(storage):
    puts = count_puts(storage)
    apply_lifecycle(storage, POLICY)
    first = stored_rules(storage)
    again = apply_lifecycle(storage, POLICY)
    assert not again.changed
    assert {c.kind for c in again.changes} == {"unchanged"}
    assert puts == [1]  # the second apply read, compared and wrote nothing
    assert stored_rules(storage) == first
    assert again.lines()[0].endswith("no change")


def test_a_foreign_rule_survives_and_only_our_outdated_rule_is_replaced(storage):
    outdated = seed_rule("daily", 30, glacier=False)  # someone's old hand-edited retention
    storage.client.put_bucket_lifecycle_configuration(
        Bucket=storage.bucket, LifecycleConfiguration={"Rules": [FOREIGN_RULE, outdated]}
    )

    preview = diff_lifecycle(storage, POLICY)
    assert stored_rules(storage) == [FOREIGN_RULE, outdated]  # the dry run wrote nothing
    lines = "\n".join(preview.lines())
    assert "keep team-logs-expire (not ours)" in lines
    assert "~ update mongo-backup-daily" in lines and "Expiration.Days: 30 -> 9" in lines
    assert "+ add mongo-backup-yearly" in lines

    apply_lifecycle(storage, POLICY)
    stored = by_id(stored_rules(storage))
    assert stored["team-logs-expire"] == FOREIGN_RULE
    assert stored["mongo-backup-daily"] == SEED_RULES[0]
    assert len(stored) == 6


def test_a_foreign_rule_over_our_keys_is_warned_about(storage):
    everything = {"ID": "expire-everything", "Filter": {"Prefix": ""}, "Status": "Enabled", "Expiration": {"Days": 3}}
    storage.client.put_bucket_lifecycle_configuration(
        Bucket=storage.bucket, LifecycleConfiguration={"Rules": [everything]}
    )
    diff = diff_lifecycle(storage, POLICY)
    assert len(diff.warnings) == 1 and "'expire-everything'" in diff.warnings[0]
    assert "daily/" in diff.warnings[0] and "yearly/" in diff.warnings[0]


def test_two_prefixes_in_one_bucket_keep_each_others_rules(storage):
    apply_lifecycle(storage, POLICY, "prod/")
    apply_lifecycle(storage, TierPolicy(timezone="UTC", glacier_after_days=None), "staging/")
    stored = by_id(stored_rules(storage))
    assert len(stored) == 10
    assert stored["mongo-backup-weekly:prod/"]["Transitions"] == [{"Days": 9, "StorageClass": "GLACIER"}]
    assert "Transitions" not in stored["mongo-backup-weekly:staging/"]


def test_merge_keeps_order_and_appends_new_rules():
    ours = lifecycle_rules(POLICY)
    merged = merge_rules([FOREIGN_RULE, seed_rule("weekly", 1, glacier=False)], ours)
    assert [r["ID"] for r in merged] == [
        "team-logs-expire",
        "mongo-backup-weekly",
        "mongo-backup-daily",
        "mongo-backup-monthly",
        "mongo-backup-quarterly",
        "mongo-backup-yearly",
    ]
    assert merged[1] == SEED_RULES[1]


def test_versioning_and_object_lock_on_moto(storage):
    assert enable_versioning(storage, dry_run=True).changed
    assert storage.client.get_bucket_versioning(Bucket=storage.bucket).get("Status") is None
    assert enable_versioning(storage).changed
    assert not enable_versioning(storage).changed
    lock = enable_object_lock(storage, POLICY, 30)
    assert lock.changed and lock.after == "GOVERNANCE 30 days"
    assert len(lock.warnings) == 1 and "daily (9 days)" in lock.warnings[0]  # the lock outlives daily's retention
    config = storage.client.get_object_lock_configuration(Bucket=storage.bucket)["ObjectLockConfiguration"]
    assert config["Rule"]["DefaultRetention"]["Days"] == 30
    assert not enable_object_lock(storage, POLICY, 30).changed


def test_seaweedfs_refusal_of_transitions_points_at_prune(services):
    services.start(["seaweedfs"])
    storage = storage_on(services.url("seaweedfs"), f"lc-{uuid.uuid4().hex[:12]}")
    storage.client.create_bucket(Bucket=storage.bucket)

    with pytest.raises(LifecycleUnsupported) as refused:
        apply_lifecycle(storage, POLICY)
    message = str(refused.value)
    assert f"s3://{storage.bucket}" in message and "NotImplemented" in message
    assert "tiers.glacier_after_days: null" in message
    assert "python -m flows.retention --plan PLAN --prune" in message

    # The remedy the message names works: without transitions SeaweedFS takes the rules.
    no_glacier = TierPolicy(timezone="UTC", glacier_after_days=None)
    assert apply_lifecycle(storage, no_glacier).changed
    assert not apply_lifecycle(storage, no_glacier).changed


def test_cli_dry_run_then_apply_through_the_flow(services, bucket, s3_client, aws_env, prefect, tmp_path, capsys):
    plan = write_plan(
        tmp_path / "plan.yaml",
        instances=[{"name": "rs-a", "uri": "mongodb://127.0.0.1:1"}],
        bucket=bucket,
        s3_endpoint=services.url("moto"),
        encryption={"passphrase_env": "UNUSED"},
    )
    assert main(["--plan", str(plan), "--dry-run", "--versioning"]) == 0
    out = capsys.readouterr().out
    assert "+ add mongo-backup-daily" in out and "versioning: Off -> Enabled" in out
    assert s3_client.get_bucket_versioning(Bucket=bucket).get("Status") is None

    assert main(["--plan", str(plan), "--versioning"]) == 0
    assert "retention: Completed" in capsys.readouterr().out
    stored = by_id(s3_client.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"])
    assert stored["mongo-backup-quarterly"] == SEED_RULES[3]
    assert s3_client.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"


def test_cli_on_seaweedfs_fails_with_the_prune_hint(services, aws_env, prefect, tmp_path, capsys):
    services.start(["seaweedfs"])
    bucket = f"lc-{uuid.uuid4().hex[:12]}"
    own_s3_client(services.url("seaweedfs")).create_bucket(Bucket=bucket)
    plan = write_plan(
        tmp_path / "plan.yaml",
        instances=[{"name": "rs-a", "uri": "mongodb://127.0.0.1:1"}],
        bucket=bucket,
        s3_endpoint=services.url("seaweedfs"),
        encryption={"passphrase_env": "UNUSED"},
    )
    assert main(["--plan", str(plan)]) == 1
    assert "--prune" in capsys.readouterr().out
