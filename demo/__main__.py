"""The demo: local services, a sample dataset, the backup flow, and a restore drill of what it stored.

    .venv/bin/python -m demo [--run-dir .run/demo] [--keep-running]

Starts SecantusDB x3, moto (S3), InfluxDB 1.6 and a Prefect server on the demo ports of
deployments/plans/local.yaml, loads sample databases into the two "replica sets", runs the `backup` flow
against that plan, prints the stored objects, the InfluxDB events and the status read from the bucket, runs
the `firedrill` flow (our streamed restorer into the scratch instance, verified against each manifest), and
finally restores one backup with the stock gpg, zstd and mongorestore (under wine) as an independent check.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import boto3
import httpx
from pymongo import ASCENDING, MongoClient

from devservices import (
    DEMO_PORTS,
    S3_TEST_CREDENTIALS,
    S3_TEST_REGION,
    LocalServices,
    MongoTools,
    create_gpg_key,
    remove_gpg_home,
)

ROOT = Path(__file__).resolve().parent.parent
PLAN = ROOT / "deployments" / "plans" / "local.yaml"
KEY_FILE = ROOT / "demo" / "keys" / "demo-backup.pub.asc"
SERVICES = ["mongo-a", "mongo-b", "mongo-scratch", "moto", "influxdb", "prefect"]


def load_sample_data(services: LocalServices) -> None:
    """Two small "replica sets": rs-a with a shop and an analytics database, rs-b with accounts."""
    with MongoClient(services.mongo_uri("mongo-a")) as a:
        a.drop_database("shop")
        a.shop.customers.insert_many(
            [{"_id": n, "name": f"customer {n}", "email": f"c{n}@example.com"} for n in range(2_000)]
        )
        a.shop.customers.create_index([("email", ASCENDING)], unique=True)
        a.shop.orders.insert_many(
            [{"customer": n % 2_000, "total": n * 1.25, "items": [{"sku": n % 97}]} for n in range(20_000)]
        )
        a.shop.command({"create": "big_orders", "viewOn": "orders", "pipeline": [{"$match": {"total": {"$gt": 100}}}]})
        a.drop_database("analytics-2026")
        a["analytics-2026"].events.insert_many([{"kind": "click", "n": n} for n in range(5_000)])
    with MongoClient(services.mongo_uri("mongo-b")) as b:
        b.drop_database("accounts")
        b.accounts.users.insert_many([{"_id": f"user-{n}", "plan": "pro" if n % 3 else "free"} for n in range(3_000)])
        b.drop_database("scratch_cache")  # excluded by the plan's `exclude: ["scratch_*"]`
        b.scratch_cache.tmp.insert_one({"x": 1})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-dir", default=str(ROOT / ".run" / "demo"))
    parser.add_argument(
        "--keep-running",
        action="store_true",
        help="leave the services up (stop: python -m devservices stop --run-dir RUN_DIR)",
    )
    args = parser.parse_args(argv)
    services = LocalServices(Path(args.run_dir), DEMO_PORTS)
    if not any(status.healthy for status in services.status()):
        shutil.rmtree(args.run_dir, ignore_errors=True)  # a fresh start: no events or data of earlier demos
        services = LocalServices(Path(args.run_dir), DEMO_PORTS)
    gpg_home = Path(tempfile.mkdtemp(prefix="gpg-demo-", dir="/tmp"))
    try:
        step("starting local services in " + args.run_dir)
        services.start(SERVICES)
        key = create_gpg_key("Demo Backup Key <backup@demo.invalid>", home=gpg_home)
        KEY_FILE.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(key.public_key_file, KEY_FILE)
        os.environ.update(
            {
                "GNUPGHOME": str(gpg_home),
                "PREFECT_API_URL": services.url("prefect"),
                "AWS_ACCESS_KEY_ID": S3_TEST_CREDENTIALS["aws_access_key_id"],
                "AWS_SECRET_ACCESS_KEY": S3_TEST_CREDENTIALS["aws_secret_access_key"],
                "AWS_DEFAULT_REGION": S3_TEST_REGION,
            }
        )
        step("loading sample data")
        load_sample_data(services)
        s3 = boto3.client("s3", endpoint_url=services.url("moto"), region_name=S3_TEST_REGION)
        bucket = "demo-mongo-backups"
        if bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
            s3.create_bucket(Bucket=bucket)

        from flows.backup import main as backup_main

        step(f"planned backups (python -m flows.backup --plan {PLAN.relative_to(ROOT)} --dry-run)")
        backup_main(["--plan", str(PLAN), "--dry-run"])
        step("running the backup flow (Prefect UI: " + services.url("prefect").removesuffix("/api") + ")")
        if backup_main(["--plan", str(PLAN)]) != 0:
            print("demo: the backup flow failed; see the log above", file=sys.stderr)
            return 1

        step("stored in s3://" + bucket)
        keys = [o for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
        for obj in keys:
            print(f"  {obj['Size']:>10}  {obj['Key']}")
        step("events in InfluxDB (database backups)")
        print_events(services.url("influxdb"), ("instance_backup_completed", "instance_backup_failed"))
        from flows.firedrill import main as firedrill_main
        from flows.status import main as status_main

        step(f"status from the bucket (python -m flows.status --plan {PLAN.relative_to(ROOT)})")
        status_main(["--plan", str(PLAN)])
        step(
            "fire drill: newest backup of every database restored into the scratch instance, verified against "
            "its manifest, dropped"
        )
        if firedrill_main(["--plan", str(PLAN)]) != 0:
            print("demo: the fire drill failed; see the log above", file=sys.stderr)
            return 1
        print_events(services.url("influxdb"), ("instance_restore_drill",))
        step("independent check: newest rs-a/shop backup -> stock gpg -> zstd -> real mongorestore -> scratch")
        newest = max(o["Key"] for o in keys if "/rs-a/shop/" in o["Key"] and o["Key"].endswith(".archive.zst.gpg"))
        restore_with_mongorestore(s3, bucket, newest, services, Path(args.run_dir) / "wine")
        compare_counts(services.mongo_uri("mongo-a"), services.mongo_uri("mongo-scratch"), "shop")
        return 0
    finally:
        if not args.keep_running:
            services.stop()
        remove_gpg_home(gpg_home)  # and its gpg-agent, which the drill's decryption started


def step(message: str) -> None:
    print(f"\n== {message}", flush=True)


def print_events(influx_url: str, measurements: tuple[str, ...]) -> None:
    for measurement in measurements:
        reply = httpx.get(
            f"{influx_url}/query", params={"db": "backups", "q": f'SELECT * FROM "{measurement}"'}, timeout=10
        ).json()
        for series in reply["results"][0].get("series", []):
            columns = series["columns"]
            for values in series["values"]:
                row = dict(zip(columns, values, strict=True))
                fields = ", ".join(f"{k}={v}" for k, v in row.items() if v is not None and k != "time")
                print(f"  {measurement} {row['time']} {fields}")


def restore_with_mongorestore(s3, bucket: str, key: str, services: LocalServices, wine_prefix: Path) -> None:
    """Decrypts and decompresses with the stock gpg and zstd CLIs, restores with the stock mongorestore."""
    tools = MongoTools(wine_prefix)
    body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    gpg = subprocess.Popen(["gpg", "--batch", "--quiet", "--decrypt"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    zstd = subprocess.Popen(["zstd", "-d", "-c", "-q"], stdin=gpg.stdout, stdout=subprocess.PIPE)
    restore = tools.popen(
        "mongorestore", f"--uri={services.mongo_uri('mongo-scratch')}", "--archive", "--drop", stdin=zstd.stdout
    )
    assert gpg.stdin is not None
    for chunk in iter(lambda: body.read(1 << 20), b""):
        gpg.stdin.write(chunk)
    gpg.stdin.close()
    codes = [gpg.wait(), zstd.wait(), restore.wait()]
    print(f"  {key}: gpg, zstd, mongorestore exit codes {codes}")
    if any(codes):
        raise SystemExit("demo: restore drill failed")


def compare_counts(source_uri: str, restored_uri: str, database: str) -> None:
    with MongoClient(source_uri) as source, MongoClient(restored_uri) as restored:
        for name in sorted(source[database].list_collection_names()):
            a = source[database][name].count_documents({})
            b = restored[database][name].count_documents({})
            print(f"  {database}.{name}: source {a}, restored {b} {'OK' if a == b else 'MISMATCH'}")
            if a != b:
                raise SystemExit("demo: restored data differs from the source")


if __name__ == "__main__":
    sys.exit(main())
