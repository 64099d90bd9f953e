"""The oplog archiver under faults, run as `python -m flows.oplog` and killed or starved for real: kill -9 with a
segment open, kill -9 in the middle of an upload, S3 down for a minute, the oplog rolled over while no archiver
ran. Each ends with the archive equal to the server's oplog (nothing lost, nothing doubled) or a gap reported."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from pymongo import MongoClient

from mongobackup.pitr.chain import check_chain
from mongobackup.pitr.keys import OPLOG_PREFIX, instance_prefix
from mongobackup.pitr.segment import load_segment_manifest
from tests.faults.proxy import FaultyS3Proxy
from tests.helpers import influx_points, unique
from tests.pitr.helpers import (
    INSTANCE,
    PITR_SETTINGS,
    ArchiverProcess,
    ThreadedArchiver,
    archive_of,
    archived_entries,
    last_write,
    pitr_plan,
    server_entries,
    wait_archived,
)


class Writer:
    """Known writes: one insert every `pause_s`, each document's _id its sequence number, until stopped."""

    def __init__(self, uri: str, database: str, pause_s: float = 0.05):
        self.client = MongoClient(uri)
        self.database = database
        self.pause_s = pause_s
        self.written = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="writer", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.client[self.database].known.insert_one({"_id": self.written, "at": time.time()})
            self.written += 1
            time.sleep(self.pause_s)

    def __enter__(self) -> Writer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self.client.drop_database(self.database)
        self.client.close()


def describe_difference(archived: list, expected: list) -> str:
    """Where the archive and the oplog part ways, by timestamp: what is missing and what is doubled."""
    got, want = Counter(e["ts"] for e in archived), Counter(e["ts"] for e in expected)
    missing = sorted((want - got).elements())
    doubled = sorted((got - want).elements())
    first = next((i for i, (a, b) in enumerate(zip(archived, expected, strict=False)) if a.raw != b.raw), None)
    return (
        f"archive ({len(archived)} entries) and oplog ({len(expected)}) differ from index {first}: "
        f"missing {missing[:10]}, doubled or extra {doubled[:10]}"
    )


def assert_nothing_lost_or_doubled(uri: str, storage, gpg_key, writer: Writer) -> None:
    """The archive equals the server's oplog over its range; every known insert is in it exactly once."""
    entries = archived_entries(storage, gpg_key)
    with MongoClient(uri) as client:
        expected = server_entries(client, entries[0]["ts"], entries[-1]["ts"])
    assert [e.raw for e in entries] == [e.raw for e in expected], describe_difference(entries, expected)
    inserted = Counter(e["o"]["_id"] for e in entries if e["ns"] == f"{writer.database}.known" and e["op"] == "i")
    assert sorted(inserted) == list(range(writer.written)), "a known write is missing"
    assert set(inserted.values()) == {1}, "a known write is archived twice"
    archive = archive_of(storage)
    assert archive.gaps == () and archive.leftovers == (), (archive.gaps, archive.leftovers)
    [chain] = archive.chains()
    assert check_chain(storage, archive, chain) == []
    assert storage.open_uploads(OPLOG_PREFIX) == []


def test_kill_9_with_a_segment_open_then_a_restart_loses_and_doubles_nothing(
    pitr_mongo, tmp_path, services, bucket, gpg_key, aws_env, storage, archiver_process
):
    plan = pitr_plan(
        tmp_path,
        mongo_uri=pitr_mongo,
        bucket=bucket,
        s3_endpoint=services.url("moto"),
        gpg_key=gpg_key,
        pitr={"segment_s": 6, "segment_mib": 1, "max_lag_s": 60},
    )
    with Writer(pitr_mongo, unique("kill")) as writer, MongoClient(pitr_mongo) as client:
        first = archiver_process(plan)
        wait_archived(storage, last_write(client), first)
        time.sleep(2)  # entries read since that commit, segment not due yet
        first.kill()
        newest = archive_of(storage).newest
        assert newest is not None and newest.last < last_write(client), "nothing was left open to lose"

        second = archiver_process(plan)
        time.sleep(3)
        writer.stop()
        wait_archived(storage, last_write(client), second)
        assert second.terminate() == 0, second.output()
    assert "segments committed" in second.output()
    assert_nothing_lost_or_doubled(pitr_mongo, storage, gpg_key, writer)


def wait_for_a_held_part(proxy: FaultyS3Proxy, archiver: ArchiverProcess) -> None:
    """Until the proxy holds one of the archiver's UploadPart requests: its upload is under way from then on."""
    deadline = time.monotonic() + 60
    while not proxy.parts_held:
        assert time.monotonic() < deadline and archiver.running(), archiver.output()
        time.sleep(0.1)


def test_kill_9_in_the_middle_of_an_upload_first_or_mid_chain_leaves_no_open_upload_and_loses_nothing(
    pitr_mongo, tmp_path, services, bucket, gpg_key, aws_env, storage, s3_client, archiver_process
):
    """Killed twice while the proxy holds a segment's part: during the first upload of all, and again after
    the restarted archiver committed two segments. Each restart aborts the upload left open and resumes right
    after the newest committed segment: one chain, equal to the oplog."""
    with FaultyS3Proxy(services.url("moto")) as proxy:
        slow = pitr_plan(
            tmp_path, mongo_uri=pitr_mongo, bucket=bucket, s3_endpoint=proxy.url, gpg_key=gpg_key, name="slow.yaml"
        )
        direct = pitr_plan(
            tmp_path, mongo_uri=pitr_mongo, bucket=bucket, s3_endpoint=services.url("moto"), gpg_key=gpg_key
        )
        with Writer(pitr_mongo, unique("upload")) as writer, MongoClient(pitr_mongo) as client:
            proxy.part_delay_s = 300  # every part held: the upload is under way when the process is killed
            first = archiver_process(slow)
            wait_for_a_held_part(proxy, first)
            first.kill()
            proxy.release_held()  # the dead archiver's part reaches S3 now, or never matters
            assert archive_of(storage).segments == ()  # killed before its first commit
            assert s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads"), "no upload was left open"

            proxy.part_delay_s = 0
            second = archiver_process(slow)
            deadline = time.monotonic() + 120
            while len(archive_of(storage).segments) < 2:
                assert time.monotonic() < deadline and second.running(), second.output()
                time.sleep(0.2)
            proxy.part_delay_s = 300  # the next segment's part is held: killed mid-chain, mid-upload
            wait_for_a_held_part(proxy, second)
            second.kill()
            proxy.release_held()
            committed = archive_of(storage).segments
            assert len(committed) >= 2 and committed[-1].last < last_write(client)
            assert s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads"), "no upload was left open"

            third = archiver_process(direct)
            time.sleep(3)
            writer.stop()
            wait_archived(storage, last_write(client), third)
            assert third.terminate() == 0, third.output()
    for restarted in (second, third):
        assert "aborting an upload a killed archiver left open" in restarted.output()
    resumed = load_segment_manifest(storage, archive_of(storage).segments[len(committed)].location)
    assert resumed.prev_last == committed[-1].last, "the chain did not resume at the newest committed segment"
    assert_nothing_lost_or_doubled(pitr_mongo, storage, gpg_key, writer)


def test_s3_down_for_a_minute_is_waited_out_and_the_chain_resumes_without_loss(
    pitr_mongo, tmp_path, services, bucket, gpg_key, aws_env, storage, archiver_process
):
    with FaultyS3Proxy(services.url("moto")) as proxy:
        # Retries at most 4 s apart: the outage is still a minute long, and nothing waits long after it.
        plan = pitr_plan(
            tmp_path,
            mongo_uri=pitr_mongo,
            bucket=bucket,
            s3_endpoint=proxy.url,
            gpg_key=gpg_key,
            pitr={**PITR_SETTINGS, "retry_max_s": 4},
        )
        with Writer(pitr_mongo, unique("outage")) as writer, MongoClient(pitr_mongo) as client:
            archiver = archiver_process(plan)
            wait_archived(storage, last_write(client), archiver)
            proxy.down = True
            time.sleep(60)
            assert archiver.running(), archiver.output()
            proxy.down = False
            time.sleep(2)
            writer.stop()
            wait_archived(storage, last_write(client), archiver)
            assert archiver.terminate() == 0, archiver.output()
        assert proxy.failed_requests > 0
    assert "failed, retry in" in archiver.output()  # the failed stores were retried, not given up
    assert_nothing_lost_or_doubled(pitr_mongo, storage, gpg_key, writer)


@pytest.fixture(scope="session")
def small_oplog_mongo(services) -> str:
    """A SecantusDB whose oplog keeps 200 entries (pruned every 1,000 writes): it rolls over on demand."""
    services.start(["mongo-pitr-small"])
    return services.mongo_uri("mongo-pitr-small")


def test_an_oplog_rolled_over_while_stopped_is_a_reported_gap_and_a_new_chain(
    small_oplog_mongo, tmp_path: Path, services, bucket, gpg_key, aws_env, storage
):
    plan = pitr_plan(
        tmp_path,
        mongo_uri=small_oplog_mongo,
        bucket=bucket,
        s3_endpoint=services.url("moto"),
        gpg_key=gpg_key,
        notify={"influxdb": {"api": "v1", "url": services.url("influxdb"), "database": "backups"}},
    )
    started = time.time()
    database = unique("roll")
    with MongoClient(small_oplog_mongo) as client:
        try:
            with ThreadedArchiver(plan) as running:
                client[database].before.insert_many([{"_id": n} for n in range(20)])
                wait_archived(storage, last_write(client), running)
            head = archive_of(storage).newest.last
            for n in range(1200):  # more than the oplog keeps, and enough writes for the server to prune
                client[database].during.insert_one({"_id": n})
            oldest = client.local["oplog.rs"].find_one({}, sort=[("$natural", 1)])["ts"]
            assert oldest > head, "the oplog did not roll over"
            with ThreadedArchiver(plan) as running:
                client[database].after.insert_one({"_id": "after"})
                wait_archived(storage, last_write(client), running)
        finally:
            client.drop_database(database)
    assert any("GAP" in line for line in running.lines), running.lines
    archive = archive_of(storage)
    assert len(archive.gaps) == 1 and archive.gaps[0] > head
    before, after = archive.chains()
    assert before.last == head and after.first == archive.gaps[0]
    assert check_chain(storage, archive, before) == []  # the window before the gap stays whole
    assert check_chain(storage, archive, after) == []
    since = f"time >= {int(started)}s AND \"instance\" = '{INSTANCE}'"
    deadline = time.monotonic() + 20
    while not (points := influx_points(services, "instance_oplog_gap", since)) and time.monotonic() < deadline:
        time.sleep(0.5)
    # The seconds between the last archived entry and the first one still there: 0 when the writes that rolled
    # the oplog over all fell in one second (a fast machine), which is still a gap.
    assert points and points[-1]["gap_s"] == archive.gaps[0].time - head.time
    assert influx_points(services, "instance_oplog_archived", since)
    assert storage.open_uploads(instance_prefix("", INSTANCE)) == []


def test_a_mongodb_restart_under_the_archiver_resumes_the_chain_without_loss(
    pitr_mongo, services, plan_path, storage, gpg_key
):
    """The server goes away under the tailing cursor and comes back (same data folder, same port)."""
    database = unique("restart")
    with ThreadedArchiver(plan_path) as running:
        with MongoClient(pitr_mongo) as client:
            client[database].before.insert_many([{"_id": n} for n in range(50)])
            wait_archived(storage, last_write(client), running)
        services.stop(["mongo-pitr"])
        services.start(["mongo-pitr"])
        with MongoClient(pitr_mongo) as client:
            client[database].after.insert_many([{"_id": n} for n in range(50)])
            wait_archived(storage, last_write(client), running)
    assert any("reading the oplog failed" in line for line in running.lines), running.lines
    entries = archived_entries(storage, gpg_key)
    with MongoClient(pitr_mongo) as client:
        expected = server_entries(client, entries[0]["ts"], entries[-1]["ts"])
        client.drop_database(database)
    assert [e.raw for e in entries] == [e.raw for e in expected]
    ours = Counter((e["ns"], e["o"]["_id"]) for e in entries if e["ns"].startswith(f"{database}.") and e["op"] == "i")
    assert len(ours) == 100 and set(ours.values()) == {1}
    archive = archive_of(storage)
    assert archive.gaps == () and len(archive.chains()) == 1
