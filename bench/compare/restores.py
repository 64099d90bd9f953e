"""The restore subjects of the comparative benchmark: ours (verification on and off) and the stock mongorestore,
from one committed backup per size."""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench.compare.children import child_argv
from bench.compare.report import Measure, progress_line
from bench.compare.settings import ZSTD_LEVEL, ZSTD_THREADS
from bench.compare.workspace import Bench, check_restored, drop_restored, restore_uri, tools_of
from bench.datasets import Dataset
from bench.harness import MB, DiskProbe, checked, child_env, last_json_line, load1, sample_tree


@dataclass(frozen=True)
class RestoreSource:
    """A committed backup of one size's database, restored by both restorers."""

    size_mb: int
    dataset: Dataset
    key: str
    manifest_key: str
    stored_bytes: int


def prepare_restore_source(bench: Bench, dataset: Dataset, size_mb: int) -> RestoreSource:
    """Backs the dataset up once with the core (transfer, verify, commit), here: it is not what is measured."""
    from mongobackup.backup import (
        Compression,
        back_up_database,
        tool_version,
    )
    from mongobackup.crypto import EncryptionKeys, Gpg
    from mongobackup.dump import DatabaseDump, open_client
    from mongobackup.keys import BackupLocation
    from mongobackup.tiers import Tier

    storage = bench.storage()
    client = open_client(bench.source_uri)
    try:
        when = datetime.now(UTC)
        location = BackupLocation(
            prefix="restore-source/",
            tier=Tier.DAILY,
            instance="bench",
            database=dataset.name,
            taken_at=when,
            run_id=uuid.uuid4().hex[:8],
        )
        manifest = back_up_database(
            dump=DatabaseDump(client, "bench", dataset.name, tool_version=tool_version()),
            location=location,
            storage=storage,
            gpg=Gpg(str(bench.key.home)),
            keys=EncryptionKeys((bench.key.fingerprint,)),
            compression=Compression(level=ZSTD_LEVEL, threads=ZSTD_THREADS),
        )
    finally:
        client.close()
    return RestoreSource(size_mb, dataset, manifest.object_key, location.manifest_key, manifest.sizes.encrypted_bytes)


def measure_restore_ours(
    bench: Bench, source: RestoreSource, *, run: int, verify: bool, read_back: bool = False
) -> Measure:
    """restore_backup (S3 -> gpg -> zstd -> archive reader -> insert threads) into a fresh database; `read_back`:
    verified by reading everything back (the drills' way) instead of the default verification."""
    target = f"restored_{source.size_mb}mb_{'r' if read_back else 'v' if verify else 'n'}{run}_{uuid.uuid4().hex[:4]}"
    tmpdir = bench.scratch("restore-tmp")
    params = {
        "uri": restore_uri(bench),
        "bucket": bench.bucket,
        "endpoint": bench.endpoint,
        "gnupghome": str(bench.key.home),
        "key": source.key,
        "manifest_key": source.manifest_key,
        "target_database": target,
        "verify": verify,
        "read_back": read_back,
    }
    probe = DiskProbe([tmpdir], ignore=[bench.key.home])
    load = load1()
    try:
        done = checked(
            sample_tree(
                child_argv("restore", params), env=child_env(tmpdir), what=f"restore into {target}", on_sample=probe
            ),
            "restore child",
        )
        report = last_json_line(done.stdout, target)
        check_restored(bench, target, source.dataset)
    finally:
        drop_restored(bench, target)
        shutil.rmtree(tmpdir)
    subject = "restore_ours_readback" if read_back else "restore_ours" if verify else "restore_ours_noverify"
    return Measure(
        subject,
        source.size_mb,
        run,
        report["restore_s"],
        source.dataset.bson_bytes,
        peak_rss_mb=round(done.peak_tree / MB, 1),
        temp_disk_bytes=probe.peak,
        extra={
            "process_wall_s": round(done.wall_s, 3),
            "archive_bytes": report["archive_bytes"],
            "swap_s": report["swap_s"],
            "verdict": report["verdict"],
            "peak_rss_python_mb": round(done.peak_root / MB, 1),
            "peak_rss_gpg_mb": round(done.peak_descendants / MB, 1),
            "load1": load,
        },
    )


def measure_mongorestore_prep(bench: Bench, source: RestoreSource, *, run: int) -> tuple[Measure, Path]:
    """What mongorestore needs first: the stored object decrypted and decompressed to an archive file
    (S3 -> gpg -> zstd -> file, streamed by our own stages). Returns the measure and the file."""
    from mongobackup.crypto import Gpg
    from mongobackup.streams import CHUNK_SIZE, zstd_decompressing_reader

    out = bench.scratch("mongorestore-archive") / "restore.archive"
    storage = bench.storage()
    load = load1()
    started = time.perf_counter()
    body = storage.open_read(source.key)
    decrypted = Gpg(str(bench.key.home)).decrypting_reader(body, name=storage.where(source.key))
    try:
        plain = zstd_decompressing_reader(decrypted)  # type: ignore[arg-type]
        with out.open("wb") as sink:
            while chunk := plain.read(CHUNK_SIZE):
                sink.write(chunk)
    finally:
        decrypted.close()
    wall = time.perf_counter() - started
    size = out.stat().st_size
    return Measure(
        "mongorestore_prep",
        source.size_mb,
        run,
        round(wall, 3),
        source.dataset.bson_bytes,
        temp_disk_bytes=size,
        extra={"archive_bytes": size, "load1": load},
    ), out


def measure_mongorestore(bench: Bench, source: RestoreSource, archive: Path, *, run: int) -> Measure:
    """Stock `mongorestore --archive=FILE` under wine into a fresh database (--nsFrom/--nsTo)."""
    tools = tools_of(bench)
    target = f"mongorestored_{source.size_mb}mb_{run}_{uuid.uuid4().hex[:4]}"
    argv = tools.argv(
        "mongorestore",
        f"--uri={restore_uri(bench)}",
        f"--archive={archive}",
        f"--nsFrom={source.dataset.name}.*",
        f"--nsTo={target}.*",
    )
    load = load1()
    try:
        done = checked(sample_tree(argv, env=tools.env(), what=f"mongorestore into {target}"), "mongorestore")
        check_restored(bench, target, source.dataset)
    finally:
        drop_restored(bench, target)
    return Measure(
        "mongorestore",
        source.size_mb,
        run,
        round(done.wall_s, 3),
        source.dataset.bson_bytes,
        peak_rss_mb=round(done.peak_tree / MB, 1),
        extra={"samples": done.samples, "load1": load},
    )


def measure_restores(
    bench: Bench,
    source: RestoreSource,
    *,
    run: int,
    wine: bool = True,
    read_back: bool = False,
    progress: Callable[[str], None] = print,
) -> list[Measure]:
    """One run of each restore subject at one size; `read_back` adds ours verified by reading back."""
    measures = [
        measure_restore_ours(bench, source, run=run, verify=True),
        measure_restore_ours(bench, source, run=run, verify=False),
    ]
    if read_back:
        measures.append(measure_restore_ours(bench, source, run=run, verify=True, read_back=True))
    if wine:
        prep, archive = measure_mongorestore_prep(bench, source, run=run)
        try:
            measures += [prep, measure_mongorestore(bench, source, archive, run=run)]
        finally:
            shutil.rmtree(archive.parent)
    for measure in measures:
        progress(progress_line(measure))
    return measures
