"""The tier policy's cost lint and the retention dry run's cost table, on the plan example and a real bucket.

Expected sums are worked out by hand from the default price table (us-east-1 list prices) in the comments,
not computed with the module under test.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from flows.retention import main
from mongobackup.glacier_plan import PricePlan
from mongobackup.plan import load_plan
from mongobackup.tiercost import lint_policy
from mongobackup.tiers import Tier, TierPolicy

EXAMPLE = Path(__file__).resolve().parent.parent / "deployments" / "plans" / "example.yaml"
PRICES = PricePlan()


def test_the_old_weekly_rule_pays_ninety_days_of_glacier_and_the_lint_says_so():
    lints = {lint.tier: lint for lint in lint_policy(TierPolicy(timezone="UTC"), PRICES)}
    weekly = lints[Tier.WEEKLY]
    assert not weekly.ok
    assert "GLACIER bills 90 days minimum" in weekly.finding and "not 31" in weekly.finding
    # 9 days STANDARD (0.023) + 90 billed days GLACIER (0.0036), per 30-day month: 0.0069 + 0.0108.
    assert weekly.cost_per_gb == pytest.approx(0.0177)
    costs = dict(weekly.alternatives)
    assert costs[None] == pytest.approx(0.023 * 40 / 30)  # no transition: 40 days STANDARD
    assert costs["GLACIER_IR"] == pytest.approx(0.0069 + 0.004 * 3)  # GLACIER_IR bills 90 days too
    assert costs["DEEP_ARCHIVE"] == pytest.approx(0.0069 + 0.00099 * 6)  # DEEP_ARCHIVE bills 180
    text = "\n".join(weekly.lines(PRICES))
    assert "no transition $0.0307" in text and "GLACIER_IR $0.0189" in text
    assert "cheaper: tiers.transition_class: {weekly: DEEP_ARCHIVE}" in text
    # Tiers kept longer than 90 days after the transition pay no minimum; daily never moves.
    assert lints[Tier.MONTHLY].ok and lints[Tier.YEARLY].ok and lints[Tier.DAILY].ok


def test_a_price_table_where_glacier_ir_wins_names_it():
    # A store whose GLACIER_IR is as cheap as GLACIER: the lint names the setting that is cheaper there.
    prices = PricePlan(storage_gb_month={"GLACIER_IR": 0.002, "DEEP_ARCHIVE": 0.01})
    weekly = next(lint for lint in lint_policy(TierPolicy(timezone="UTC"), prices) if lint.tier == Tier.WEEKLY)
    assert weekly.cheaper[0][0] == "GLACIER_IR"
    assert "cheaper: tiers.transition_class: {weekly: GLACIER_IR}" in "\n".join(weekly.lines(prices))
    assert prices.storage("STANDARD") == 0.023  # what the plan does not give keeps its default


def test_retention_dry_run_on_the_plan_example_prints_the_lint_and_the_cost_table(
    services, bucket, s3_client, aws_env, tmp_path, capsys
):
    example = yaml.safe_load(EXAMPLE.read_text())
    example["storage"].update(bucket=bucket, endpoint_url=services.url("moto"), region="us-east-1")
    plan = tmp_path / "example.yaml"
    plan.write_text(yaml.safe_dump(example, sort_keys=False))
    assert load_plan(plan).tiers.glacier_after_days == 9  # the example's own policy, unchanged
    mib = 1 << 20
    stored = [
        ("daily/rs-orders/shop/20261201T013000Z-a1.archive.zst.gpg", 3 * mib, "STANDARD"),
        ("weekly/rs-orders/shop/20261102T013000Z-a2.archive.zst.gpg", 2 * mib, "GLACIER"),
        ("weekly/rs-orders/shop/20261123T013000Z-a3.archive.zst.gpg", 2 * mib, "STANDARD"),
        ("yearly/rs-orders/shop/20260101T013000Z-a4.archive.zst.gpg", 5 * mib, "DEEP_ARCHIVE"),
    ]
    for key, size, storage_class in stored:
        s3_client.put_object(Bucket=bucket, Key=key, Body=b"\0" * size, StorageClass=storage_class)

    assert main(["--plan", str(plan), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "+ add mongo-backup-weekly" in out and "NoncurrentVersionTransitions[0].StorageClass = GLACIER" in out
    assert "GLACIER bills 90 days minimum, so each backup pays for 90 days of GLACIER, not 31" in out
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ") and len(line.split()) > 4}
    assert rows["weekly"].split()[1:3] == ["2", f"{4 * mib:,}"]
    assert "GLACIER 0.002 GiB, STANDARD 0.002 GiB" in rows["weekly"]
    assert rows["yearly"].split()[1:3] == ["1", f"{5 * mib:,}"] and "DEEP_ARCHIVE" in rows["yearly"]
    assert rows["quarterly"].split()[1:3] == ["0", "0"]
    assert rows["total"].split()[1:3] == ["4", f"{12 * mib:,}"]
    # 3 MiB + 2 MiB STANDARD at 0.023, 2 MiB GLACIER at 0.0036, 5 MiB DEEP_ARCHIVE at 0.00099 per GiB-month.
    expected = (5 * 0.023 + 2 * 0.0036 + 5 * 0.00099) / 1024
    assert rows["total"].split()[-1] == f"${expected:.4f}"
    assert "us-east-1 list prices of 2025-06" in out
    with pytest.raises(s3_client.exceptions.ClientError):  # the dry run wrote no rules
        s3_client.get_bucket_lifecycle_configuration(Bucket=bucket)
