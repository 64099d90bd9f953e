"""The benchmarks' data: databases of generated documents that look like application data.

`ensure_dataset` fills a database with S bytes of BSON made by `make_document` (mixed 0.5-4 KB documents,
about a third of their bytes random, so zstd has real work and the stored object is not tiny) and records it
in `bench_meta.datasets`, so that `--keep-data` can reuse it. The documents are the same for the same name
and generator version: the generator is seeded.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import bson
from bson import Binary, ObjectId
from bson.raw_bson import RawBSONDocument
from pymongo import MongoClient

from bench.harness import MB

COLLECTION = "documents"
#: Where a finished dataset is recorded, outside the benchmarked database so the backup does not see it.
META_DATABASE = "bench_meta"
#: Bump when the document shape changes, so --keep-data regenerates instead of reusing stale data.
GENERATOR_VERSION = 1
SEED = 20240601
#: insert_many batch: SecantusDB takes about 5 MB/s, so ~2 MB batches give steady progress lines.
BATCH_DOCUMENTS = 1000
PROGRESS_EVERY_S = 5.0

#: Words for names, tags and notes: text that zstd shrinks several times, as it would real application data.
_WORD_TEXT = (
    "order invoice shipment customer warehouse pallet express standard refund credit debit account "
    "balance ledger north south east west central priority delayed delivered pending cancelled returned "
    "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa "
    "quebec romeo sierra tango uniform victor whiskey xray yankee zulu the and with for from please note "
    "contact support regarding package damaged replacement"
)
_WORDS = tuple(_WORD_TEXT.split())
_CITIES = ("Lisbon", "Oslo", "Quito", "Osaka", "Lagos", "Perth", "Austin", "Graz", "Turku", "Cork", "Lyon")
_KINDS = ("order", "refund", "shipment", "invoice", "ticket")
_EPOCH = datetime(2024, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Dataset:
    """A benchmark database as it was generated (or found, with --keep-data)."""

    name: str
    target_bytes: int
    documents: int
    bson_bytes: int
    reused: bool
    seconds: float


def make_document(rng: random.Random, seq: int) -> bytes:
    """One encoded document of 512-4096 bytes: scalars, a nested customer, line items, text, random bytes.

    A third of the target size is random bytes (incompressible); the rest is words and numbers, which zstd
    shrinks several times, as it would real application data.
    """
    target = rng.randint(512, 4096)
    doc: dict[str, Any] = {
        "_id": ObjectId(),
        "seq": seq,
        "kind": rng.choice(_KINDS),
        "amount": round(rng.uniform(0, 10_000), 2),
        "quantity": rng.randint(1, 500),
        "active": rng.random() < 0.5,
        "created": _EPOCH + timedelta(seconds=seq * 37),
        "customer": {
            "name": f"{rng.choice(_WORDS).title()} {rng.choice(_WORDS).title()}",
            "score": rng.random(),
            "address": {
                "street": f"{rng.randint(1, 999)} {rng.choice(_WORDS)} street",
                "city": rng.choice(_CITIES),
                "zip": f"{rng.randint(10_000, 99_999)}",
            },
        },
        "tags": rng.sample(_WORDS, k=rng.randint(1, 6)),
        "lines": [
            {
                "sku": f"SKU-{rng.randint(0, 99_999):05d}",
                "qty": rng.randint(1, 9),
                "price": round(rng.uniform(1, 500), 2),
            }
            for _ in range(rng.randint(1, 5))
        ],
        "payload": Binary(rng.randbytes(target // 3)),
    }
    # The "notes" element costs 12 bytes besides its text: type, "notes\0", int32 length, trailing NUL.
    room = target - len(bson.encode(doc)) - 12
    if room > 0:
        words = " ".join(rng.choices(_WORDS, k=room // 5 + 1))
        while len(words) < room:  # short words: top up rather than overshoot the size range
            words += " " + " ".join(rng.choices(_WORDS, k=room // 5 + 1))
        doc["notes"] = words[:room]
    return bson.encode(doc)


def ensure_dataset(
    client: MongoClient, name: str, target_bytes: int, *, reuse: bool, progress: Callable[[str], None] = print
) -> Dataset:
    """The database `name` holding `target_bytes` of BSON: reused when `reuse` and a finished one is there."""
    meta = client[META_DATABASE]["datasets"]
    if reuse:
        found = meta.find_one({"_id": name})
        if (
            found is not None
            and found.get("generator") == GENERATOR_VERSION
            and found.get("target_bytes") == target_bytes
            and client[name][COLLECTION].estimated_document_count() == found.get("documents")
        ):
            progress(f"{name}: reusing {found['documents']} documents, {found['bson_bytes'] / MB:.1f} MB")
            return Dataset(name, target_bytes, found["documents"], found["bson_bytes"], True, 0.0)
    # The marker goes first: an interrupted generation must never look finished to a later --keep-data run.
    meta.delete_one({"_id": name})
    client.drop_database(name)
    collection = client[name][COLLECTION]
    rng = random.Random(f"{SEED}-{name}")
    started = last_report = time.perf_counter()
    documents = total = 0
    while total < target_bytes:
        batch: list[RawBSONDocument] = []
        while len(batch) < BATCH_DOCUMENTS and total < target_bytes:
            raw = make_document(rng, documents)
            batch.append(RawBSONDocument(raw))  # inserted as the very bytes we counted
            documents += 1
            total += len(raw)
        collection.insert_many(batch, ordered=True)
        now = time.perf_counter()
        if now - last_report >= PROGRESS_EVERY_S or total >= target_bytes:
            last_report = now
            progress(
                f"{name}: {total / MB:6.1f}/{target_bytes / MB:.0f} MB, {documents} documents, "
                f"{total / MB / (now - started):.1f} MB/s"
            )
    seconds = time.perf_counter() - started
    meta.replace_one(
        {"_id": name},
        {
            "_id": name,
            "generator": GENERATOR_VERSION,
            "target_bytes": target_bytes,
            "documents": documents,
            "bson_bytes": total,
        },
        upsert=True,
    )
    return Dataset(name, target_bytes, documents, total, False, round(seconds, 1))
