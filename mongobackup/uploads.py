"""Open multipart uploads of ours: found, summed up for status, and aborted once they are stale.

A backup's upload is completed or aborted by the process that started it. It stays open, its parts billed,
only when that process died (kill -9, an OOM kill, a lost node) or when S3 itself went away mid-upload and
the abort could not get through. The next backup run and the retention flow abort ours that are older than
`storage.abort_uploads_after_h` (24 h by default: no run lasts that long, so a younger upload may belong to
a run still going); the S3 lifecycle rule (7 days) is only the backstop for stores that enforce it.

"Ours" means: under one of the plan's tier prefixes (`<prefix>daily/`, ...) and with a key that parses as a
backup object key. Anything else open in the bucket belongs to someone else and is never touched.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from mongobackup.keys import parse_stored
from mongobackup.storage import OpenUpload, Storage
from mongobackup.tiers import Tier, prefix_for
from mongobackup.units import human_size


def our_open_uploads(storage: Storage, prefix: str) -> list[OpenUpload]:
    """The open uploads under the plan's tier prefixes whose keys are backup object keys, oldest first."""
    return sorted(_ours(storage, prefix), key=lambda upload: upload.initiated)


def _ours(storage: Storage, prefix: str) -> Iterator[OpenUpload]:
    for tier in Tier:
        for upload in storage.open_uploads(prefix + prefix_for(tier)):
            try:
                location = parse_stored(upload.key, prefix)
            except ValueError:
                continue
            if upload.key == location.object_key:  # a database's object or a key/value snapshot's
                yield upload


def stale(uploads: list[OpenUpload], now: datetime, older_than: timedelta) -> list[OpenUpload]:
    """The uploads started more than `older_than` before the aware time `now`."""
    if now.tzinfo is None:
        raise ValueError(f"needs an aware `now`, got naive {now.isoformat()}")
    return [upload for upload in uploads if now - upload.initiated > older_than]


def abort_stale_uploads(
    storage: Storage,
    prefix: str,
    now: datetime,
    older_than: timedelta,
    *,
    dry_run: bool = False,
    log: Callable[[str], None] = lambda line: None,
) -> list[OpenUpload]:
    """Aborts our open uploads older than `older_than` at `now` (a dry run only reports); returns them."""
    condemned = stale(our_open_uploads(storage, prefix), now, older_than)
    for upload in condemned:
        age_h = (now - upload.initiated).total_seconds() / 3600
        log(
            f"{'would abort' if dry_run else 'aborting'} open upload {storage.where(upload.key)} "
            f"({human_size(upload.size)} in parts, started {upload.initiated.isoformat()}, {age_h:.1f} h ago)"
        )
        if not dry_run:
            storage.abort_upload(upload)
    return condemned


@dataclass(frozen=True)
class UploadSummary:
    """UploadSummary is how many uploads of ours are open, the bytes their parts hold, and the oldest."""

    count: int
    bytes: int
    oldest: OpenUpload | None

    @classmethod
    def of(cls, uploads: list[OpenUpload]) -> UploadSummary:
        oldest = min(uploads, key=lambda upload: upload.initiated, default=None)
        return cls(len(uploads), sum(upload.size for upload in uploads), oldest)

    def warning(self, where: Callable[[str], str]) -> str | None:
        """One line for status, or None when no upload is open."""
        if not self.count or self.oldest is None:
            return None
        return (
            f"{self.count} open multipart uploads hold {human_size(self.bytes)} (oldest "
            f"{where(self.oldest.key)}, started {self.oldest.initiated.isoformat()}): a backup process died "
            "mid-upload or one is running now; the next backup or retention run aborts those older than "
            "storage.abort_uploads_after_h"
        )


def other_runs_uploading(
    uploads: list[OpenUpload],
    prefix: str,
    databases: set[tuple[str, str]],
    now: datetime,
    older_than: timedelta,
    run_id: str,
) -> list[str]:
    """One line per open upload younger than `older_than` (so possibly of a run still going) for one of
    `databases` ((instance, database) pairs) by a run other than `run_id`: two runs at once store every backup
    twice, and a command-line run is not held back by the deployment's concurrency limit."""
    lines = []
    for upload in uploads:
        if now - upload.initiated > older_than:
            continue  # stale: no run lasts that long; the sweep aborts it
        location = parse_stored(upload.key, prefix)
        if (location.instance, location.database) in databases and location.run_id != run_id:
            minutes = (now - upload.initiated).total_seconds() / 60
            lines.append(
                f"{location.instance}/{location.database}: another run ({location.run_id}) has an upload open, "
                f"started {minutes:.0f} min ago ({upload.key}); if it is still running, both store this backup"
            )
    return lines
