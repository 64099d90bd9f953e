"""The backup subjects of the comparative benchmark: one function per row, each measuring one run at one size
(in the benchmark's process where memory does not count, else in a child whose process tree is sampled)."""

from __future__ import annotations

import shlex
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument
from pymongo import MongoClient

from bench.backup_memory import BackupTarget
from bench.compare.children import child_argv
from bench.compare.profile import PipelineProfile, can_attach, profiled_argv, py_spy, stage_shares
from bench.compare.report import Measure, progress_line
from bench.compare.settings import ZSTD_LEVEL, ZSTD_THREADS
from bench.compare.workspace import Bench, SizeData, delete_prefix, s3cmd_config, tools_of
from bench.datasets import COLLECTION, Dataset
from bench.harness import (
    MB,
    MOTO_ENV,
    CommandTimer,
    DiskProbe,
    OplogTimer,
    checked,
    child_env,
    files_under,
    last_json_line,
    load1,
    sample_tree,
)

RAW = CodecOptions(document_class=RawBSONDocument)
BACKUP_SUBJECTS = ("floor", "dump_alone", "floor_instance", "mongodump", "old_pipeline", "ours_db", "ours_instance")


def measure_floor(bench: Bench, datasets: Sequence[Dataset], *, subject: str, size_mb: int, run: int) -> Measure:
    """A raw scan: every document of the datasets as RawBSONDocument, nothing done with it but its length."""
    client: MongoClient = MongoClient(bench.source_uri)
    try:
        client.admin.command("ping")  # the connection is made before the clock starts
        load = load1()
        started = time.perf_counter()
        documents = scanned = 0
        for dataset in datasets:
            for document in client.get_database(dataset.name, codec_options=RAW)[COLLECTION].find({}):
                documents += 1
                scanned += len(document.raw)
        wall = time.perf_counter() - started
        # What our dump's collStats costs on this server (MongoDB reads it from metadata; SecantusDB scans).
        stats_started = time.perf_counter()
        for dataset in datasets:
            client[dataset.name].command("collStats", COLLECTION)
        collstats = time.perf_counter() - stats_started
    finally:
        client.close()
    expected = sum(d.bson_bytes for d in datasets)
    if scanned != expected:
        raise RuntimeError(f"floor scan read {scanned} bytes of BSON, the datasets hold {expected}")
    return Measure(
        subject,
        size_mb,
        run,
        round(wall, 3),
        scanned,
        extra={"documents": documents, "collstats_s": round(collstats, 3), "load1": load},
    )


def measure_dump_alone(bench: Bench, dataset: Dataset, *, size_mb: int, run: int) -> Measure:
    """Our dump stage alone, in this process: DatabaseDump's archive stream drained and dropped, no zstd, gpg
    or S3. Between the floor and the whole backup, it says which side the time goes to."""
    from mongobackup.backup import tool_version
    from mongobackup.dump import DatabaseDump

    oplog, stats = OplogTimer(), CommandTimer("collStats")
    # Listeners on this client only: registered globally they would also slow every later floor scan.
    client: MongoClient = MongoClient(
        bench.source_uri, readPreference="primaryPreferred", event_listeners=[oplog, stats]
    )
    try:
        client.admin.command("ping")
        load = load1()
        started = time.perf_counter()
        archive = 0
        for chunk in DatabaseDump(client, "bench", dataset.name, tool_version=tool_version()).chunks():
            archive += len(chunk)
        wall = time.perf_counter() - started
    finally:
        client.close()
    return Measure(
        "dump_alone",
        size_mb,
        run,
        round(wall, 3),
        dataset.bson_bytes,
        extra={
            "archive_bytes": archive,
            "oplog_query_s": round(oplog.seconds, 3),
            "collstats_s": round(stats.seconds, 3),
            "load1": load,
        },
    )


def measure_mongodump(bench: Bench, dataset: Dataset, *, size_mb: int, run: int) -> Measure:
    """Stock `mongodump --archive=FILE --gzip` of one database under wine; the wall includes wine's start-up."""
    tools = tools_of(bench)
    out = bench.scratch("mongodump") / "dump.archive.gz"
    argv = tools.argv("mongodump", f"--uri={bench.source_uri}", f"--db={dataset.name}", f"--archive={out}", "--gzip")
    load = load1()
    done = checked(sample_tree(argv, env=tools.env(), what=f"mongodump of {dataset.name}"), "mongodump")
    stored = out.stat().st_size
    shutil.rmtree(out.parent)
    return Measure(
        "mongodump",
        size_mb,
        run,
        round(done.wall_s, 3),
        dataset.bson_bytes,
        peak_rss_mb=round(done.peak_tree / MB, 1),
        stored_bytes=stored,
        extra={"samples": done.samples, "load1": load},
    )


def measure_old_pipeline(bench: Bench, dataset: Dataset, *, size_mb: int, run: int) -> Measure:
    """The team's old backup: mongodump to a folder, then gpg over each file (gpg's defaults, so zlib
    compression), then s3cmd uploads the .gpg files; the folder is removed at the end. One bash script, so
    the process tree (bash, wine's mongodump, gpg, s3cmd) and the folder are sampled as one."""
    tools = tools_of(bench)
    work = bench.scratch("old-pipeline")
    config = s3cmd_config(bench)
    dump_dir = work / "dump"
    prefix = f"old/{size_mb}mb/{run}-{uuid.uuid4().hex[:6]}/"
    mongodump = shlex.join(
        tools.argv("mongodump", f"--uri={bench.source_uri}", f"--db={dataset.name}", f"--out={dump_dir}")
    )
    gpg = shlex.join(
        [
            "gpg",
            "--homedir",
            str(bench.key.home),
            "--batch",
            "--yes",
            "--quiet",
            "--trust-model",
            "always",
            "--recipient",
            bench.key.fingerprint,
            "--encrypt",
        ]
    )
    s3cmd = shlex.join([str(Path(sys.executable).parent / "s3cmd"), "-c", str(config), "--no-progress", "--quiet"])
    folder = shlex.quote(str(dump_dir / dataset.name))
    script = "\n".join(
        [
            "set -euo pipefail",
            mongodump,
            f'for f in {folder}/*; do {gpg} --output "$f.gpg" "$f"; done',
            f"{s3cmd} put {folder}/*.gpg s3://{bench.bucket}/{prefix}",
            f"rm -rf {shlex.quote(str(dump_dir))}",
        ]
    )
    probe = DiskProbe([work], ignore=[bench.key.home])
    load = load1()
    done = checked(
        sample_tree(["bash", "-c", script], env=tools.env(), what="the old pipeline", on_sample=probe),
        "the old pipeline",
    )
    stored = delete_prefix(bench, prefix)
    shutil.rmtree(work)
    return Measure(
        "old_pipeline",
        size_mb,
        run,
        round(done.wall_s, 3),
        dataset.bson_bytes,
        peak_rss_mb=round(done.peak_tree / MB, 1),
        temp_disk_bytes=probe.peak,
        stored_bytes=stored,
        extra={"samples": done.samples, "load1": load},
    )


def measure_ours_db(bench: Bench, dataset: Dataset, *, size_mb: int, run: int) -> Measure:
    """Our core path on one database, in backup_memory's child (transfer_database + verify_upload)."""
    tmpdir = bench.scratch("ours-tmp")
    target = BackupTarget(
        uri=bench.source_uri,
        database=dataset.name,
        bucket=bench.bucket,
        endpoint=bench.endpoint,
        gnupghome=str(bench.key.home),
        fingerprint=bench.key.fingerprint,
    )
    probe = DiskProbe([tmpdir], ignore=[bench.key.home])
    load = load1()
    done = checked(
        sample_tree(target.argv(), env=child_env(tmpdir), what=f"backup of {dataset.name}", on_sample=probe),
        f"backup child for {dataset.name}",
    )
    report = last_json_line(done.stdout, dataset.name)
    shutil.rmtree(tmpdir)
    return Measure(
        "ours_db",
        size_mb,
        run,
        report["backup_s"],
        dataset.bson_bytes,
        peak_rss_mb=round(done.peak_tree / MB, 1),
        temp_disk_bytes=probe.peak,
        stored_bytes=report["stored_bytes"],
        extra={
            "process_wall_s": round(done.wall_s, 3),
            "raw_bytes": report["raw_bytes"],
            "stage_seconds": report["stage_seconds"],
            "oplog_query_s": report.get("oplog_query_s"),
            "peak_rss_python_mb": round(done.peak_root / MB, 1),
            "peak_rss_gpg_mb": round(done.peak_descendants / MB, 1),
            "files_written": probe.written,
            "samples": done.samples,
            "load1": load,
        },
    )


def measure_ours_instance(bench: Bench, data: SizeData, *, run: int) -> Measure:
    """Our core path over the instance's databases, in this module's `instance` child."""
    tmpdir = bench.scratch("instance-tmp")
    prefix = f"instance/{data.size_mb}mb/{run}-{uuid.uuid4().hex[:6]}/"
    params = {
        "uri": bench.source_uri,
        "databases": [d.name for d in data.parts],
        "bucket": bench.bucket,
        "endpoint": bench.endpoint,
        "gnupghome": str(bench.key.home),
        "fingerprint": bench.key.fingerprint,
        "prefix": prefix,
    }
    probe = DiskProbe([tmpdir], ignore=[bench.key.home])
    load = load1()
    done = checked(
        sample_tree(
            child_argv("instance", params),
            env=child_env(tmpdir),
            what=f"instance backup at {data.size_mb} MB",
            on_sample=probe,
        ),
        "instance child",
    )
    report = last_json_line(done.stdout, f"instance at {data.size_mb} MB")
    delete_prefix(bench, prefix)
    shutil.rmtree(tmpdir)
    return Measure(
        "ours_instance",
        data.size_mb,
        run,
        report["backup_s"],
        data.instance_bytes,
        peak_rss_mb=round(done.peak_tree / MB, 1),
        temp_disk_bytes=probe.peak,
        stored_bytes=report["stored_bytes"],
        extra={
            "process_wall_s": round(done.wall_s, 3),
            "raw_bytes": report["raw_bytes"],
            "stage_seconds": report["stage_seconds"],
            "oplog_query_s": report["oplog_query_s"],
            "collstats_s": report["collstats_s"],
            "files_written": probe.written,
            "samples": done.samples,
            "load1": load,
        },
    )


def measure_flow(bench: Bench, data: SizeData) -> Measure:
    """One run of the Prefect `backup` flow (`python -m flows.backup --plan`) over the instance's databases,
    reporting to the benchmark's Prefect server. The wall is the whole process: Prefect's start-up included."""
    if bench.prefect_url is None:
        raise RuntimeError("the flow row needs a Prefect server (Bench.prefect_url)")
    import yaml

    tmpdir = bench.scratch("flow-tmp")
    prefect_home = bench.scratch("flow-prefect-home")
    prefix = f"flow/{data.size_mb}mb-{uuid.uuid4().hex[:6]}/"
    plan = {
        "instances": [{"name": "bench", "uri": bench.source_uri, "databases": [d.name for d in data.parts]}],
        "storage": {
            "bucket": bench.bucket,
            "prefix": prefix,
            "endpoint_url": bench.endpoint,
            "region": MOTO_ENV["AWS_DEFAULT_REGION"],
        },
        "encryption": {"recipients": [bench.key.fingerprint], "gnupghome": str(bench.key.home)},
        "compression": {"level": ZSTD_LEVEL, "threads": ZSTD_THREADS},
        "tiers": {"timezone": "UTC"},
        "retries": {"attempts": 0, "backoff_s": 0},
    }
    plan_path = bench.scratch("flow-plan") / "plan.yaml"
    plan_path.write_text(yaml.safe_dump(plan, sort_keys=False))
    env = child_env(tmpdir, PREFECT_API_URL=bench.prefect_url, PREFECT_HOME=str(prefect_home))
    # PREFECT_HOME is Prefect's own state (profiles, logs), reported apart from temp disk below.
    probe = DiskProbe([tmpdir], ignore=[bench.key.home, prefect_home])
    load = load1()
    done = checked(
        sample_tree(
            [sys.executable, "-m", "flows.backup", "--plan", str(plan_path)],
            env=env,
            what=f"backup flow at {data.size_mb} MB",
            on_sample=probe,
        ),
        "backup flow",
    )
    storage = bench.storage()
    manifests = [storage.get_json(o.key) for o in storage.list_keys(prefix) if o.key.endswith(".manifest.json")]
    transfer_s = sum(
        (datetime.fromisoformat(m["finished_at"]) - datetime.fromisoformat(m["started_at"])).total_seconds()
        for m in manifests
    )
    stored = sum(m["sizes"]["encrypted_bytes"] for m in manifests)
    if len(manifests) != len(data.parts):
        raise RuntimeError(
            f"the flow committed {len(manifests)} backups, expected {len(data.parts)}:\n{done.stdout[-2000:]}"
        )
    delete_prefix(bench, prefix)
    prefect_state = sum(files_under(prefect_home).values())
    for folder in (tmpdir, prefect_home, plan_path.parent):
        shutil.rmtree(folder, ignore_errors=True)
    return Measure(
        "ours_flow",
        data.size_mb,
        1,
        round(done.wall_s, 3),
        data.instance_bytes,
        peak_rss_mb=round(done.peak_tree / MB, 1),
        temp_disk_bytes=probe.peak,
        stored_bytes=stored,
        extra={
            "transfer_s_from_manifests": round(transfer_s, 3),
            "files_written": probe.written,
            "prefect_home_bytes": prefect_state,
            "samples": done.samples,
            "load1": load,
        },
    )


def pipeline_params(bench: Bench, size_mb: int, *, runs: int) -> dict[str, object]:
    """The pipeline child's parameters: `runs` runs of ours, then as many of the command-line pipe."""
    return {
        "size_bytes": size_mb * MB,
        "runs": runs,
        "bucket": bench.bucket,
        "endpoint": bench.endpoint,
        "gnupghome": str(bench.key.home),
        "fingerprint": bench.key.fingerprint,
        "prefix": f"pipeline/{size_mb}mb/",
        "s3cmd_config": str(s3cmd_config(bench)),
        "server_pid": bench.server_pid,
    }


def measure_pipeline_alone(bench: Bench, size_mb: int, *, runs: int) -> list[Measure]:
    """zstd -> gpg -> S3 on `size_mb` of generated BSON, `runs` times in one child (data generated once)."""
    tmpdir = bench.scratch("pipeline-tmp")
    params = pipeline_params(bench, size_mb, runs=runs)
    load = load1()
    done = checked(
        sample_tree(child_argv("pipeline", params), env=child_env(tmpdir), what=f"pipeline alone at {size_mb} MB"),
        "pipeline child",
    )
    report = last_json_line(done.stdout, f"pipeline at {size_mb} MB")
    shutil.rmtree(tmpdir)
    return [
        Measure(
            "pipeline_alone",
            size_mb,
            n,
            r["seconds"],
            r["raw_bytes"],
            stored_bytes=r["stored_bytes"],
            # The child holds the generated documents in memory: its RSS says nothing about the pipeline.
            extra={
                "stage_seconds": r["stage_seconds"],
                "child_peak_rss_mb": round(done.peak_tree / MB, 1),
                "s3_store": bench.s3_store,
                "load1": load,
                **_cpu(r),
            },
        )
        for n, r in enumerate(report["runs"], start=1)
    ] + [
        Measure(
            "pipe_cli",
            size_mb,
            n,
            r["seconds"],
            r["raw_bytes"],
            stored_bytes=r["stored_bytes"],
            extra={"s3_store": bench.s3_store, "load1": load, **_cpu(r)},
        )
        for n, r in enumerate(report.get("pipe_runs", []), start=1)
    ]


def _cpu(run: dict[str, Any]) -> dict[str, float]:
    """CPU seconds of one pipeline run: ours (process + gpg / the tools) and the S3 server's, as measured."""
    return {name: run[name] for name in ("cpu_s", "server_cpu_s", "runqueue_wait_s") if name in run}


def profile_pipeline(bench: Bench, size_mb: int) -> PipelineProfile:
    """One more run of ours alone (not timed for the table) under py-spy: where its time goes by stage.
    Never fails the benchmark: when py-spy is missing, cannot attach or its run fails, the profile says why."""
    binary = py_spy()
    if binary is None:
        return PipelineProfile(unavailable="py-spy is not installed (pip install py-spy; it is in the dev extra)")
    why = can_attach(binary)
    if why is not None:
        return PipelineProfile(unavailable=why)
    tmpdir = bench.scratch("pipeline-profile")
    output = tmpdir / "stacks.txt"
    params = pipeline_params(bench, size_mb, runs=1) | {"s3cmd_config": None}
    try:
        done = sample_tree(
            profiled_argv(child_argv("pipeline", params), output, binary=binary),
            env=child_env(tmpdir),
            what=f"pipeline profile at {size_mb} MB",
        )
        if done.returncode != 0 or not output.exists():
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            return PipelineProfile(unavailable=f"py-spy exited with {done.returncode}: {tail[0]}")
        run = last_json_line(done.stdout, f"pipeline profile at {size_mb} MB")["runs"][0]
        shares, samples = stage_shares(output.read_text())
    except (OSError, RuntimeError, ValueError, KeyError, IndexError) as exc:  # the table stands without it
        return PipelineProfile(unavailable=f"the profiled run failed: {exc}")
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    return PipelineProfile(
        {stage: round(share, 3) for stage, share in shares.items()},
        samples,
        run["seconds"],
        run.get("server_cpu_s"),
        run.get("cpu_s"),
        store=bench.s3_store,
    )


# --- one benchmark --------------------------------------------------------------------------------------------


def measure_backups(
    bench: Bench,
    data: SizeData,
    *,
    run: int,
    subjects: Sequence[str] = BACKUP_SUBJECTS,
    progress: Callable[[str], None] = print,
) -> list[Measure]:
    """One run of each backup subject at one size."""
    measures: list[Measure] = []
    for subject in subjects:
        if subject == "floor":
            measure = measure_floor(bench, [data.single], subject="floor", size_mb=data.size_mb, run=run)
        elif subject == "floor_instance":
            measure = measure_floor(bench, data.parts, subject="floor_instance", size_mb=data.size_mb, run=run)
        elif subject == "dump_alone":
            measure = measure_dump_alone(bench, data.single, size_mb=data.size_mb, run=run)
        elif subject == "mongodump":
            measure = measure_mongodump(bench, data.single, size_mb=data.size_mb, run=run)
        elif subject == "old_pipeline":
            measure = measure_old_pipeline(bench, data.single, size_mb=data.size_mb, run=run)
        elif subject == "ours_db":
            measure = measure_ours_db(bench, data.single, size_mb=data.size_mb, run=run)
        elif subject == "ours_instance":
            measure = measure_ours_instance(bench, data, run=run)
        else:
            raise ValueError(f"not a backup subject: {subject!r}")
        progress(progress_line(measure))
        measures.append(measure)
    return measures
