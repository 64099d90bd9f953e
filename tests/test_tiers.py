"""The tier policy against an independently written table.

The expected tier is computed here with the standard library only (zoneinfo, date arithmetic from a known
Monday and a literal month table), never with mongobackup.tiers, so a bug in the policy cannot hide in its own
expectation. Instants are built the other way round from the policy: from a local wall time to UTC.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pendulum
import pytest
from pydantic import ValidationError

from mongobackup.tiers import PRECEDENCE, Tier, TierPolicy, prefix_for

FIRST_DAY = date(2000, 1, 1)
LAST_DAY = date(2100, 12, 31)

#: The tier of the 1st of each month, written out: the old bash script forgot February and August.
FIRST_OF_MONTH = {
    1: "yearly",
    2: "monthly",
    3: "monthly",
    4: "quarterly",
    5: "monthly",
    6: "monthly",
    7: "quarterly",
    8: "monthly",
    9: "monthly",
    10: "quarterly",
    11: "monthly",
    12: "monthly",
}
A_MONDAY = date(2000, 1, 3)
DAY_OFFSET = {"monday": 0, "tuesday": 1, "wednesday": 2, "thursday": 3, "friday": 4, "saturday": 5, "sunday": 6}

#: Local wall times asked for every day: just after midnight, noon, just before midnight. None of them falls
#: into a DST gap or overlap in the zones below (their clocks change at 01:00-03:00).
LOCAL_TIMES = (time(0, 0, 30), time(12, 0), time(23, 59, 30))

#: (zone, weekly day): one zone east of UTC in the southern hemisphere, one west in the northern, and the
#: example plan's zone; each with a different weekly day so that Monday is not special-cased by accident.
ZONES = [("Australia/Sydney", "monday"), ("America/Los_Angeles", "friday"), ("Europe/London", "sunday")]


def expected_tier(day: date, weekly_day: str) -> str:
    if day.day == 1:
        return FIRST_OF_MONTH[day.month]
    if (day - A_MONDAY).days % 7 == DAY_OFFSET[weekly_day]:
        return "weekly"
    return "daily"


def all_days(first: date = FIRST_DAY, last: date = LAST_DAY):
    day = first
    while day <= last:
        yield day
        day += timedelta(days=1)


def utc_instant(day: date, wall: time, zone: ZoneInfo) -> datetime:
    local = datetime.combine(day, wall, tzinfo=zone)
    instant = local.astimezone(UTC)
    # The premise of the table: the wall time exists exactly once on that day.
    assert instant.astimezone(zone).replace(tzinfo=None) == local.replace(tzinfo=None), local
    return instant


def test_the_expectation_itself_is_sane():
    # Spot checks of expected_tier against a calendar: guards the table against a bug of its own.
    assert date(2000, 1, 3).strftime("%A") == "Monday"
    assert expected_tier(date(2024, 1, 1), "monday") == "yearly"  # a Monday
    assert expected_tier(date(2024, 2, 1), "monday") == "monthly"
    assert expected_tier(date(2024, 8, 1), "monday") == "monthly"
    assert expected_tier(date(2024, 4, 15), "monday") == "weekly"  # month 4, but not the 1st
    assert expected_tier(date(2024, 4, 16), "monday") == "daily"
    assert expected_tier(date(2026, 11, 27), "friday") == "weekly"


@pytest.mark.parametrize(("zone_name", "weekly_day"), ZONES)
def test_every_day_2000_to_2100_matches_the_table(zone_name, weekly_day):
    policy = TierPolicy(timezone=zone_name, weekly_day=weekly_day)
    zone = ZoneInfo(zone_name)
    mismatches = []
    for day in all_days():
        want = expected_tier(day, weekly_day)
        for wall in LOCAL_TIMES:
            instant = utc_instant(day, wall, zone)
            got = policy.tier_for(instant)
            if got.value != want:
                mismatches.append(
                    f"{day} {wall} {zone_name} ({instant:%Y-%m-%dT%H:%M:%SZ}): {got.value}, expected {want}"
                )
    assert not mismatches, f"{len(mismatches)} mismatches, first: " + "; ".join(mismatches[:10])


def dst_days(zone: ZoneInfo) -> list[date]:
    """Local days that are not 24 hours long."""
    days = []
    for day in all_days():
        start = datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)
        end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone).astimezone(UTC)
        if end - start != timedelta(hours=24):
            days.append(day)
    return days


@pytest.mark.parametrize(("zone_name", "weekly_day"), ZONES)
def test_dst_days_every_quarter_hour(zone_name, weekly_day):
    policy = TierPolicy(timezone=zone_name, weekly_day=weekly_day)
    zone = ZoneInfo(zone_name)
    days = dst_days(zone)
    # Two changes a year over most of the century (Sydney, London and Los Angeles all observe DST now).
    assert len(days) > 150, days
    mismatches = []
    for day in days:
        start = datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)
        end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone).astimezone(UTC)
        instants = [start + timedelta(minutes=15 * n) for n in range(int((end - start) / timedelta(minutes=15)))]
        want = expected_tier(day, weekly_day)
        for instant in [*instants, end - timedelta(seconds=1)]:
            if policy.tier_for(instant).value != want:
                mismatches.append(f"{instant.isoformat()} ({day})")
        # The instant the local day ends belongs to the next day.
        if policy.tier_for(end).value != expected_tier(day + timedelta(days=1), weekly_day):
            mismatches.append(f"{end.isoformat()} (start of {day + timedelta(days=1)})")
    assert not mismatches, mismatches[:10]


@pytest.mark.parametrize(
    ("utc", "zone_name", "weekly_day", "want", "why"),
    [
        # Europe/London: clocks go forward at 01:00 UTC on 2024-03-31 (a Sunday), back at 01:00 UTC on 2024-10-27.
        ("2024-03-31T00:59:59Z", "Europe/London", "sunday", "weekly", "just before the spring change"),
        ("2024-03-31T01:00:01Z", "Europe/London", "sunday", "weekly", "just after it (02:00:01 BST)"),
        ("2024-03-31T22:59:59Z", "Europe/London", "monday", "daily", "23:59:59 BST on 31 March"),
        ("2024-03-31T23:00:00Z", "Europe/London", "monday", "quarterly", "00:00 BST on 1 April; UTC still 31 March"),
        ("2024-10-27T00:30:00Z", "Europe/London", "sunday", "weekly", "01:30 BST, the first of two 01:30s"),
        ("2024-10-27T01:30:00Z", "Europe/London", "sunday", "weekly", "01:30 GMT, the second"),
        ("2024-10-27T23:59:59Z", "Europe/London", "monday", "daily", "23:59:59 GMT on Sunday 27 October"),
        # Australia/Sydney: DST started on Sunday 1 October 2023 at 02:00 AEST (16:00 UTC on 30 September).
        ("2023-09-30T13:59:59Z", "Australia/Sydney", "monday", "daily", "23:59:59 AEST on Saturday 30 September"),
        ("2023-09-30T14:00:30Z", "Australia/Sydney", "monday", "quarterly", "00:00:30 AEST on 1 October"),
        ("2023-09-30T16:00:00Z", "Australia/Sydney", "monday", "quarterly", "03:00 AEDT, right after the change"),
        ("2023-10-01T12:59:59Z", "Australia/Sydney", "monday", "quarterly", "23:59:59 AEDT on 1 October"),
        ("2023-10-01T13:00:00Z", "Australia/Sydney", "monday", "weekly", "00:00 AEDT on Monday 2 October"),
        # Sydney is 11 hours ahead in (southern) summer: New Year there is still 31 December in UTC.
        ("2025-12-31T13:00:00Z", "Australia/Sydney", "monday", "yearly", "00:00 AEDT on 1 January 2026"),
        ("2025-12-31T12:59:59Z", "Australia/Sydney", "monday", "daily", "23:59:59 AEDT on Wednesday 31 December"),
        # America/Los_Angeles is behind UTC: the UTC 1st is still the last day of the month there.
        ("2024-11-01T06:59:59Z", "America/Los_Angeles", "monday", "daily", "23:59:59 PDT on Thursday 31 October"),
        ("2024-11-01T07:00:00Z", "America/Los_Angeles", "monday", "monthly", "00:00 PDT on 1 November"),
        ("2024-11-03T08:30:00Z", "America/Los_Angeles", "sunday", "weekly", "01:30 PDT, before the fall-back"),
        ("2024-11-03T09:30:00Z", "America/Los_Angeles", "sunday", "weekly", "01:30 PST, after it"),
        ("2024-03-10T10:00:00Z", "America/Los_Angeles", "sunday", "weekly", "03:00 PDT, right after spring-forward"),
        ("2027-01-01T00:30:00Z", "America/Los_Angeles", "monday", "daily", "16:30 PST on Thursday 31 December"),
        ("2027-01-01T00:30:00Z", "Europe/London", "monday", "yearly", "00:30 GMT on 1 January"),
    ],
)
def test_named_instants(utc, zone_name, weekly_day, want, why):
    instant = datetime.fromisoformat(utc.replace("Z", "+00:00"))
    assert TierPolicy(timezone=zone_name, weekly_day=weekly_day).tier_for(instant).value == want, why


@pytest.mark.parametrize("zone_name", ["Australia/Sydney", "Asia/Kolkata"])
def test_first_of_each_month_while_utc_is_still_on_the_previous_day(zone_name):
    policy = TierPolicy(timezone=zone_name, weekly_day="wednesday")
    zone = ZoneInfo(zone_name)
    for year in range(2000, 2101):
        for month in range(1, 13):
            first = date(year, month, 1)
            midnight = datetime.combine(first, time(0), tzinfo=zone).astimezone(UTC)
            assert midnight.date() == first - timedelta(days=1)  # the premise: UTC is a day behind
            assert policy.tier_for(midnight).value == FIRST_OF_MONTH[month], first
            before = midnight - timedelta(seconds=1)
            assert policy.tier_for(before).value == expected_tier(first - timedelta(days=1), "wednesday"), first


def test_the_zone_of_the_given_datetime_does_not_matter():
    policy = TierPolicy(timezone="Europe/London")
    instant = datetime(2024, 3, 31, 23, 0, tzinfo=UTC)  # 1 April 00:00 BST
    same = [
        instant,
        instant.astimezone(timezone(timedelta(hours=-7))),
        instant.astimezone(ZoneInfo("Asia/Tokyo")),
        pendulum.instance(instant).in_timezone("America/New_York"),
    ]
    assert {policy.tier_for(when) for when in same} == {Tier.QUARTERLY}


def test_naive_datetimes_are_rejected():
    with pytest.raises(ValueError, match="naive"):
        TierPolicy(timezone="UTC").tier_for(datetime(2024, 1, 1, 12, 0))


def test_precedence_yearly_quarterly_monthly_weekly_daily():
    assert PRECEDENCE == (Tier.YEARLY, Tier.QUARTERLY, Tier.MONTHLY, Tier.WEEKLY, Tier.DAILY)
    policy = TierPolicy(timezone="UTC", weekly_day="monday")
    # Each of these 1sts is a Monday, so the weekly rule also matches and must lose.
    for day, want in [
        (date(2024, 1, 1), Tier.YEARLY),
        (date(2024, 4, 1), Tier.QUARTERLY),
        (date(2024, 7, 1), Tier.QUARTERLY),
        (date(2025, 9, 1), Tier.MONTHLY),
        (date(2025, 9, 8), Tier.WEEKLY),
        (date(2025, 9, 9), Tier.DAILY),
    ]:
        assert day.strftime("%A") == "Monday" or want is Tier.DAILY
        assert policy.tier_for(datetime.combine(day, time(12), tzinfo=UTC)) is want, day


def test_tier_names_and_prefixes():
    assert [t.value for t in Tier] == ["daily", "weekly", "monthly", "quarterly", "yearly"]
    assert [prefix_for(t) for t in Tier] == ["daily/", "weekly/", "monthly/", "quarterly/", "yearly/"]
    assert str(Tier.WEEKLY) == "weekly" and f"{Tier.YEARLY}" == "yearly"


def test_policy_defaults_and_lifecycle_view():
    policy = TierPolicy(timezone="Europe/London")
    assert policy.weekly_day == "monday"
    assert policy.retention_days == {
        Tier.DAILY: 9,
        Tier.WEEKLY: 40,
        Tier.MONTHLY: 365,
        Tier.QUARTERLY: 2190,
        Tier.YEARLY: 43800,
    }
    assert list(policy.tiers()) == list(Tier)
    assert policy.glacier_tiers() == [Tier.WEEKLY, Tier.MONTHLY, Tier.QUARTERLY, Tier.YEARLY]
    assert policy.transition_days(Tier.DAILY) is None and policy.transition_days(Tier.YEARLY) == 9
    assert TierPolicy(timezone="UTC", glacier_after_days=None).transition_days(Tier.WEEKLY) is None
    assert TierPolicy(timezone="UTC", weekly_day="Friday").weekly_day == "friday"


@pytest.mark.parametrize(
    ("settings", "field", "words"),
    [
        ({"timezone": "Mars/Olympus"}, "timezone", "unknown timezone"),
        ({"timezone": "+02:00"}, "timezone", "unknown timezone"),
        ({"timezone": "UTC", "weekly_day": "mon"}, "weekly_day", "monday"),
        ({"timezone": "UTC", "retention_days": {"daily": 9}}, "retention_days", "missing: weekly"),
        (
            {
                "timezone": "UTC",
                "retention_days": {"daily": 0, "weekly": 40, "monthly": 365, "quarterly": 2190, "yearly": 43800},
            },
            "retention_days",
            "at least 1 day",
        ),
        ({"timezone": "UTC", "retention_days": {"hourly": 1}}, "retention_days", "daily"),
        ({"timezone": "UTC", "glacier_after_days": 40}, "", "weekly (40)"),
        ({"timezone": "UTC", "glacier_after_days": -1}, "glacier_after_days", "greater than or equal"),
        ({"timezone": "UTC", "bogus": 1}, "bogus", "not permitted"),
        ({"timezone": "UTC", "transition_class": {"weekly": "TAPE"}}, "transition_class", "weekly=TAPE"),
        ({"timezone": "UTC", "transition_class": {"monthly": "STANDARD_IA"}}, "", "monthly) needs"),
    ],
)
def test_invalid_policies_are_refused(settings, field, words):
    with pytest.raises(ValidationError) as caught:
        TierPolicy(**settings)
    errors = caught.value.errors()
    assert any(str(e["loc"][0] if e["loc"] else "") == field and words in e["msg"] for e in errors), errors
