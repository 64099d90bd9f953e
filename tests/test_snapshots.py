"""Key/value snapshots end to end: a real etcd 3.4 and the project's Consul snapshot-API stand-in, moto, real gpg,
InfluxDB 1.6 and a Prefect server.

etcd's snapshots are judged by the stock tools: `etcdctl snapshot restore` builds a data folder from the
restored file, a scratch etcd runs on it and every key and value is compared with the live store. Consul's
are judged by the stock `tar` and `sha256sum -c SHA256SUMS`. The Consul server is the project's own stand-in
(devservices/consul_stub.py): it follows Consul's documented snapshot API and archive format, and this is
the test that stands in for a run against a real Consul, which cannot be installed here.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from devservices import CONSUL_TEST_TOKEN
from flows.firedrill import firedrill
from flows.restore import main as restore_main
from flows.snapshot import main as snapshot_main
from flows.snapshot import snapshot
from mongobackup.crypto import EncryptionKeys, Gpg
from mongobackup.errors import PipelineError
from mongobackup.inventory import build_inventory
from mongobackup.keys import STORED_KINDS, BackupLocation, parse_stored
from mongobackup.plan import BackupPlan, Compression, PlanError, load_plan
from mongobackup.prune import Verdict, decide, keys_to_delete
from mongobackup.snapshots.etcd import EtcdSnapshotCheck, etcd_gateway
from mongobackup.snapshots.plan import ConsulSource, EtcdSource
from mongobackup.snapshots.scratch_etcd import scratch_etcd
from mongobackup.snapshots.store import store_snapshot
from mongobackup.snapshots.take import back_up_snapshot
from mongobackup.status import Health, expected_pairs, read_status, stale_events
from mongobackup.storage import ObjectInfo
from mongobackup.tiers import Tier
from tests.helpers import influx_points, run_artifact_rows, storage_on, stored_keys, unique
from tests.planfiles import write_plan

pytestmark = pytest.mark.usefixtures("aws_env")  # the flows build their S3 client from the default chain


def etcdctl(endpoint: str, *args: str) -> str:
    return subprocess.run(
        ["etcdctl", "--endpoints", endpoint, *args],
        env={**os.environ, "ETCDCTL_API": "3"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def etcd_put(endpoint: str, key: bytes, value: bytes) -> None:
    body = {"key": base64.b64encode(key).decode(), "value": base64.b64encode(value).decode()}
    httpx.post(f"{endpoint}/v3/kv/put", json=body, trust_env=False).raise_for_status()


def etcd_items(endpoint: str) -> dict[bytes, bytes]:
    """Every key and value of an etcd, read with the stock etcdctl (JSON output, base64 keys and values)."""
    reply = json.loads(etcdctl(endpoint, "get", "", "--prefix", "-w", "json"))
    return {base64.b64decode(kv["key"]): base64.b64decode(kv.get("value", "")) for kv in reply.get("kvs", [])}


def consul_put(endpoint: str, key: str, value: bytes) -> None:
    reply = httpx.put(f"{endpoint}/v1/kv/{key}", content=value, headers={"X-Consul-Token": CONSUL_TEST_TOKEN})
    reply.raise_for_status()


def snapshot_plan(tmp_path: Path, services, bucket: str, gpg_key, sources: list[dict], **extra) -> Path:
    return write_plan(
        tmp_path / "plan.yaml",
        instances=[],
        bucket=bucket,
        s3_endpoint=services.url("moto"),
        public_key_file=gpg_key.public_key_file,
        gnupghome=tmp_path / "encrypt-home",
        influx_url=services.url("influxdb"),
        snapshots=sources,
        **extra,
    )


def test_the_snapshots_section_names_the_field_at_fault(tmp_path):
    base = "storage: {bucket: abc}\nencryption: {passphrase_env: X}\ntiers: {timezone: UTC}\n"
    etcd = "{name: e, kind: etcd, endpoints: ['http://e:2379']"
    consul = "{name: c, kind: consul, address: 'http://c:8500'"
    cases = {
        f"instances: [{{name: e, uri: 'mongodb://h'}}]\nsnapshots: [{etcd}}}]": (
            "plan.yaml: snapshots.0.name 'e' is also an instance name"
        ),
        "snapshots: [{name: c, kind: consul, adress: 'http://c:8500'}]": (
            "snapshots.0.adress: unknown field (did you mean address?)"
        ),
        f"snapshots: [{consul}, token_env: A, token_secret: b}}]": (
            "snapshots.0: set one of token_env and token_secret, not both"
        ),
        f"snapshots: [{etcd}, password_env: P}}]": "snapshots.0: password_env is set but username is not",
        "snapshots: [{name: e, kind: etcd, endpoints: ['ftp://e']}]": "snapshots.0.endpoints: 'ftp://e' is not an",
        "snapshots: [{name: z, kind: zookeeper}]": "snapshots.0.kind: unknown value 'zookeeper' (expected one of",
        f"snapshots: [{etcd}, tls: {{cert_file: c.pem}}}}]": "snapshots.0.tls: cert_file and key_file go together",
        "instances: [{name: rs, uri: 'mongodb://h'}]\ndrill: {max_age_h: 26}": (
            "plan.yaml: drill: exactly one of scratch_uri, scratch_uri_env, scratch_uri_secret must be set (got none)"
        ),
        "instances: []": "plan.yaml: instances: List should have at least 1 item, not 0 (or name a source under",
        "snapshots: []": "plan.yaml: the plan backs up nothing: give instances, snapshots or both",
    }
    # A plan of snapshot sources only needs no instances, and its drill no scratch MongoDB.
    path = tmp_path / "plan.yaml"
    path.write_text(f"snapshots: [{etcd}}}]\ndrill: {{max_age_h: 26}}\n" + base)
    assert load_plan(path).drill.scratch_uri is None
    for text, message in cases.items():
        path = tmp_path / "plan.yaml"
        path.write_text(text + "\n" + base)
        with pytest.raises(PlanError) as caught:
            load_plan(path)
        assert message in str(caught.value), (text, str(caught.value))


def test_snapshot_keys_are_listed_judged_and_pruned_like_backups():
    plan = BackupPlan.model_validate(
        {
            "instances": [
                {"name": "rs", "uri": "mongodb://h", "databases": ["snapshot"]}
            ],  # a database may be so named
            "snapshots": [{"name": "kv", "kind": "etcd", "endpoints": ["http://e:2379"]}],
            "storage": {"bucket": "abc"},
            "encryption": {"passphrase_env": "X"},
            "tiers": {"timezone": "UTC"},
        }
    )
    old, new = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 6, 1, tzinfo=UTC)
    kv_old = BackupLocation.snapshot("", Tier.DAILY, "kv", old, "aaaa")
    kv_new = BackupLocation.snapshot("", Tier.DAILY, "kv", new, "bbbb")
    db = BackupLocation("", Tier.DAILY, "rs", "snapshot", new, "cccc")
    assert kv_new.object_key == "daily/kv/snapshot/20260601T000000Z-bbbb.snap.gpg"
    assert kv_new.manifest_key == "daily/kv/snapshot/20260601T000000Z-bbbb.snap.manifest.json"
    for location in (kv_old, kv_new, db):
        assert parse_stored(location.object_key) == parse_stored(location.manifest_key) == location
    listing = [
        ObjectInfo(key, 10, "e", {}) for loc in (kv_old, kv_new, db) for key in (loc.object_key, loc.manifest_key)
    ]
    inventory = build_inventory(listing, "", STORED_KINDS)
    assert all(b.committed and b.object_size == 10 for b in inventory.backups) and not inventory.foreign
    assert expected_pairs(plan, inventory) == [("rs", "snapshot"), ("kv", "snapshot")]
    verdicts = {d.backup.location: d.verdict for d in decide(inventory, plan.tiers, datetime(2027, 1, 1, tzinfo=UTC))}
    assert verdicts == {kv_old: Verdict.DELETE, kv_new: Verdict.KEEP_NEWEST, db: Verdict.KEEP_NEWEST}
    doomed = next(b for b in inventory.backups if b.location == kv_old)
    assert keys_to_delete(doomed) == [kv_old.manifest_key, kv_old.object_key]  # the commit marker first


def test_etcd_and_consul_snapshots_end_to_end(
    kv_stores, services, s3_client, bucket, gpg_key, prefect, tmp_path, monkeypatch
):
    etcd_url, consul_url = kv_stores.url("etcd"), kv_stores.url("consul")
    etcd_name, consul_name = unique("etcd-k8s"), unique("consul-dc1")
    prefix = unique("/registry").encode()
    wanted = {prefix + f"/pods/p{i:03d}".encode(): os.urandom(i * 7) for i in range(150)}
    wanted[prefix + b"/big"] = b"x" * 300_000
    wanted[prefix + "/unicode-\u00e9\u4e2d".encode()] = "caf\u00e9".encode()
    for key, value in wanted.items():
        etcd_put(etcd_url, key, value)
    consul_keys = {f"{consul_name}/service/{i}": f"value-{i}".encode() for i in range(20)}
    for key, value in consul_keys.items():
        consul_put(consul_url, key, value)
    monkeypatch.setenv("CONSUL_TOKEN_FOR_TEST", CONSUL_TEST_TOKEN)
    plan_path = snapshot_plan(
        tmp_path,
        services,
        bucket,
        gpg_key,
        [
            {"name": etcd_name, "kind": "etcd", "endpoints": ["http://127.0.0.1:1", etcd_url]},  # first is down
            {
                "name": consul_name,
                "kind": "consul",
                "address": consul_url,
                "datacenter": "dc1",
                "stale": True,
                "token_env": "CONSUL_TOKEN_FOR_TEST",
            },
        ],
        drill={"gnupghome": str(gpg_key.home)},  # snapshot sources only: no scratch MongoDB needed
    )
    plan = load_plan(plan_path)

    state = snapshot(plan_path=str(plan_path), return_state=True)
    assert state.is_completed(), state.message
    assert state.message == "2 snapshots stored and committed"
    keys = stored_keys(s3_client, bucket)
    assert len(keys) == 4, keys
    for name in (etcd_name, consul_name):
        mine = [k for k in keys if k.split("/")[1] == name]
        assert sorted(k.split("/", 3)[2] for k in mine) == ["snapshot", "snapshot"]
        assert sorted(k.rsplit("-", 1)[-1].split(".", 1)[-1] for k in mine) == ["snap.gpg", "snap.manifest.json"]
    rows = {r["source"]: r for r in run_artifact_rows(state.state_details.flow_run_id)}
    assert {r["state"] for r in rows.values()} == {"Completed"}

    manifests = {
        m["source"]: m
        for m in (
            json.loads(s3_client.get_object(Bucket=bucket, Key=k)["Body"].read()) for k in keys if k.endswith(".json")
        )
    }
    etcd_manifest, consul_manifest = manifests[etcd_name], manifests[consul_name]
    assert etcd_manifest["kind"] == "etcd" and etcd_manifest["compression"] == "zstd-3"
    assert etcd_manifest["check"] == {
        "method": "etcd-sha256-trailer",
        "passed": True,
        "details": {"db_bytes": etcd_manifest["sizes"]["raw_bytes"] - 32, "bolt_version": 2, "page_size": 4096},
    }
    assert etcd_manifest["etcd"]["endpoint"] == etcd_url and etcd_manifest["etcd"]["exact"] is True
    assert etcd_manifest["etcd"]["key_count"] >= len(wanted) and etcd_manifest["etcd"]["raft_term"] >= 1
    assert consul_manifest["kind"] == "consul" and consul_manifest["compression"] == "none"  # gzip already
    assert consul_manifest["check"]["method"] == "consul-sha256sums"
    assert consul_manifest["consul"]["term"] == 2 and consul_manifest["consul"]["index"] >= len(consul_keys)
    assert consul_manifest["sizes"]["raw_bytes"] == consul_manifest["sizes"]["compressed_bytes"]
    # What the Consul stand-in was asked: the plan's datacenter, a stale read, the token in its header.
    asked = [json.loads(line) for line in (kv_stores.state_dir("consul") / "requests.log").read_text().splitlines()]
    snapshot_requests = [r for r in asked if r["path"] == "/v1/snapshot" and r["query"].get("dc") == ["dc1"]]
    assert snapshot_requests and all(r["token"] and r["query"]["stale"] == [""] for r in snapshot_requests)

    for kind, name, manifest in (("etcd", etcd_name, etcd_manifest), ("consul", consul_name, consul_manifest)):
        (event,) = influx_points(services, f"{kind}_snapshot_completed", f"\"source\"='{name}'")
        assert event["value"] is True and event["tier"] == manifest["tier"]
        assert event["bytes"] == manifest["sizes"]["encrypted_bytes"]
        assert event["snapshot_bytes"] == manifest["sizes"]["raw_bytes"]
        assert event["index"] == (manifest["etcd"]["revision"] if kind == "etcd" else manifest["consul"]["index"])

    # Status from the bucket: GREEN now, RED 30 hours later.
    storage = storage_on(services.url("moto"), bucket)
    now = datetime.now(UTC)
    for when, health in ((now, Health.GREEN), (now + timedelta(hours=30), Health.RED)):
        report = read_status(storage, plan, when)
        rows_by_source = {(r.instance, r.database): r for r in report.rows}
        assert set(rows_by_source) == {(etcd_name, "snapshot"), (consul_name, "snapshot")}
        assert {r.health for r in rows_by_source.values()} == {health}, report.table()
    # The watchdog's stale events for the RED rows: the source as instance, `snapshot` as database.
    stale = {(e.tags["instance"], e.tags["database"]) for e in stale_events(report)}
    assert stale == {(etcd_name, "snapshot"), (consul_name, "snapshot")}

    # etcd: restore to a file, then the stock etcdctl restores it, a scratch etcd runs on it, every key compared.
    out = tmp_path / "etcd.snapshot.db"
    assert restore_main(["--plan", str(plan_path), "--snapshot", etcd_name, "--out", str(out), "--quiet"]) == 0
    status = json.loads(etcdctl(etcd_url, "snapshot", "status", str(out), "-w", "json"))
    assert status["revision"] == etcd_manifest["etcd"]["revision"]
    live = etcd_items(etcd_url)
    with scratch_etcd(out, tmp_path / "scratch") as restored_url:
        restored = etcd_items(restored_url)
    assert {k: v for k, v in restored.items() if k.startswith(prefix)} == wanted
    assert len(restored) == etcd_manifest["etcd"]["key_count"]
    assert {k: v for k, v in live.items() if k in restored} == restored  # nothing else wrote these keys since
    # An existing file is never replaced.
    assert restore_main(["--plan", str(plan_path), "--snapshot", etcd_name, "--out", str(out), "--quiet"]) == 1
    # --key (the manifest's key names the same snapshot) and --at pick the same one; before it there is none.
    etcd_key = next(k for k in keys if k.split("/")[1] == etcd_name and k.endswith(".snap.manifest.json"))
    by_key = tmp_path / "by-key.db"
    assert (
        restore_main(["--plan", str(plan_path), "--snapshot", etcd_name, "--key", etcd_key, "--out", str(by_key)]) == 0
    )
    assert by_key.read_bytes() == out.read_bytes()
    at = (now + timedelta(minutes=5)).isoformat()
    by_at = tmp_path / "by-at.db"
    assert restore_main(["--plan", str(plan_path), "--snapshot", etcd_name, "--at", at, "--out", str(by_at)]) == 0
    assert by_at.read_bytes() == out.read_bytes()
    too_early = tmp_path / "too-early.db"
    args = ["--plan", str(plan_path), "--snapshot", etcd_name, "--at", "2020-01-01T00:00:00Z", "--out", str(too_early)]
    assert restore_main(args) == 1 and not too_early.exists() and not Path(f"{too_early}.part").exists()

    # Consul: the restored file is what `consul snapshot restore` takes; the stock tar and sha256sum judge it.
    out = tmp_path / "consul.snap"
    assert restore_main(["--plan", str(plan_path), "--snapshot", consul_name, "--out", str(out), "--quiet"]) == 0
    unpacked = tmp_path / "consul-unpacked"
    unpacked.mkdir()
    subprocess.run(["tar", "-xzf", str(out), "-C", str(unpacked)], check=True)
    assert sorted(p.name for p in unpacked.iterdir()) == ["SHA256SUMS", "meta.json", "state.bin"]
    subprocess.run(["sha256sum", "--strict", "-c", "SHA256SUMS"], cwd=unpacked, check=True, capture_output=True)
    entries = [json.loads(line) for line in (unpacked / "state.bin").read_text().splitlines()]
    assert entries[0] == {"LastIndex": consul_manifest["consul"]["index"]}
    served = {e["Key"]: base64.b64decode(e["Value"]) for e in entries[1:] if e["Key"].startswith(consul_name)}
    assert served == consul_keys
    assert json.loads((unpacked / "meta.json").read_text())["Index"] == consul_manifest["consul"]["index"]

    # The monthly drill: etcd into a scratch etcd with its keys read back; Consul restored and checked.
    state = firedrill(plan_path=str(plan_path), return_state=True)
    assert state.is_completed(), state.message
    drilled = {r["instance"]: r for r in run_artifact_rows(state.state_details.flow_run_id)}
    assert drilled[etcd_name]["state"] == "Passed" and drilled[etcd_name]["docs"] == etcd_manifest["etcd"]["key_count"]
    assert "restored into a scratch etcd" in drilled[etcd_name]["verdict"]
    assert drilled[consul_name]["state"] == "Passed" and "no scratch Consul" in drilled[consul_name]["verdict"]
    (event,) = influx_points(services, "instance_restore_drill", f"\"instance\"='{etcd_name}'")
    assert event["value"] is True and event["database"] == "snapshot" and event["docs"] == len(restored)


def test_corrupted_and_truncated_snapshots_are_refused_before_commit(kv_stores, services, bucket, gpg_key, tmp_path):
    storage = storage_on(services.url("moto"), bucket)
    gpg = Gpg(tmp_path / "encrypt-home")
    keys = EncryptionKeys(tuple(gpg.import_key_files([gpg_key.public_key_file])))
    when = datetime.now(UTC)
    consul_put(kv_stores.url("consul"), "refused/key", b"value")

    # Consul: the stand-in's "corrupt" datacenter changes state.bin after hashing, "truncated" sends half.
    for dc, problem in (("corrupt", "hash check failed for state.bin"), ("truncated", "truncated")):
        source = ConsulSource(name=f"c-{dc}", kind="consul", address=kv_stores.url("consul"), datacenter=dc)
        location = BackupLocation.snapshot("", Tier.DAILY, source.name, when, "run1")
        with pytest.raises(PipelineError) as caught:
            back_up_snapshot(
                source,
                CONSUL_TEST_TOKEN,
                location=location,
                storage=storage,
                gpg=gpg,
                keys=keys,
                compression=Compression(),
            )
        assert caught.value.stage == "check" and problem in str(caught.value)
        assert f"snapshot source c-{dc}" in str(caught.value)

    # etcd: a real snapshot, then one byte flipped, and the same cut short; the store's stages see a stream.
    source = EtcdSource(name="e-bad", kind="etcd", endpoints=[kv_stores.url("etcd")])
    with etcd_gateway(source, None) as gateway, gateway.snapshot() as chunks:
        good = b"".join(chunks)
    check = EtcdSnapshotCheck("e-bad")
    check.feed(good)
    assert check.finish()["db_bytes"] == len(good) - 32
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0x01
    broken = {"damaged": bytes(flipped), "truncated": good[: len(good) - 4096], "no hash": good[:-32]}
    for what, data in broken.items():
        location = BackupLocation.snapshot("", Tier.DAILY, f"e-{what.replace(' ', '-')}", when, "run1")
        with pytest.raises(PipelineError) as caught:
            store_snapshot(
                chunks=iter([data[i : i + 65536] for i in range(0, len(data), 65536)]),
                check=EtcdSnapshotCheck(location.instance),
                location=location,
                storage=storage,
                gpg=gpg,
                keys=keys,
                compression=Compression(),
            )
        assert caught.value.stage == "check", what
    assert stored_keys(storage.client, bucket) == []  # no object, no manifest
    assert storage.open_uploads() == []  # and no multipart upload left open


def test_a_refused_snapshot_fails_the_run_with_a_failure_event(
    kv_stores, services, bucket, gpg_key, prefect, tmp_path, monkeypatch
):
    name = unique("consul-broken")
    monkeypatch.setenv("CONSUL_TOKEN_FOR_TEST", CONSUL_TEST_TOKEN)
    source = {"name": name, "kind": "consul", "address": kv_stores.url("consul"), "datacenter": "corrupt"}
    plan_path = snapshot_plan(tmp_path, services, bucket, gpg_key, [{**source, "token_env": "CONSUL_TOKEN_FOR_TEST"}])
    state = snapshot(plan_path=str(plan_path), return_state=True)
    assert state.is_failed() and f"1 of 1 snapshots failed: {name}" in state.message
    assert stored_keys(storage_on(services.url("moto"), bucket).client, bucket) == []
    (event,) = influx_points(services, "consul_snapshot_failed", f"\"source\"='{name}'")
    assert event["stage"] == "check" and "hash check failed for state.bin" in event["error"]
    assert snapshot_main(["--plan", str(plan_path), "--dry-run"]) == 0
