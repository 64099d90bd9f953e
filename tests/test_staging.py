"""A restore's staging names: reserved, tagged with the run, never over MongoDB's 255-byte namespace limit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from mongobackup.staging import (
    MAX_NAMESPACE_BYTES,
    STALE_AFTER_S,
    StagingRun,
    is_lease,
    is_reserved,
    lease_name,
    probe_names,
    run_of,
    staging_name,
)


def test_staging_names_fit_the_namespace_limit_and_stay_distinct():
    database = "d" * 63  # MongoDB's longest database name
    long_a, long_b = "é" * 200 + "a", "é" * 200 + "b"  # share a 400-byte beginning
    names = {staging_name(database, "0123abcd", c) for c in (long_a, long_b, "orders")}
    assert len(names) == 3
    for name in names:
        assert len(f"{database}.{name}".encode()) <= MAX_NAMESPACE_BYTES
        assert name.encode().decode() == name  # cut on a character boundary
        assert is_reserved(name) and run_of(name) == "0123abcd" and not is_lease(name)
    assert staging_name("shop", "0123abcd", "orders").endswith("_orders")  # readable when it fits


def test_leases_and_probes_belong_to_their_run_and_user_names_to_none():
    assert is_lease(lease_name("0123abcd")) and run_of(lease_name("0123abcd")) == "0123abcd"
    assert all(run_of(name) == "0123abcd" and not is_lease(name) for name in probe_names("0123abcd"))
    assert run_of("orders") is None and not is_reserved("restore_orders")


def test_a_run_is_dead_without_a_lease_or_a_fresh_heartbeat():
    now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    far = {"host": "another-host", "pid": 1}
    assert not StagingRun("db", "0123abcd", None).alive(now)
    assert StagingRun("db", "0123abcd", far | {"heartbeat": now.replace(tzinfo=None)}).alive(now)
    stale = (now - timedelta(seconds=STALE_AFTER_S + 1)).replace(tzinfo=None)  # pymongo hands back naive UTC
    assert not StagingRun("db", "0123abcd", far | {"heartbeat": stale}).alive(now)
