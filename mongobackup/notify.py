"""Event writers: InfluxDB 1.x over its HTTP line-protocol endpoint, InfluxDB 2.x through influxdb-client.

Both take `metrics.Event`s and write them synchronously: `write` returns only after the server accepted
every point, and raises `NotifyError` otherwise, so a failed notification is a failed notify task and never
a silent gap on the dashboard. A notification never touches a stored backup; the caller decides what a
failure means (the backup flow marks the notify task Failed and keeps the backup).

Credentials (v1 password, v2 token) are held by the sink and sent only in an Authorization header. They never
appear in an error message, a log line or the sink's repr: a Prefect run may log any of those.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import httpx

from mongobackup.errors import BackupError
from mongobackup.line_protocol import PRECISION, to_line_protocol_batch
from mongobackup.metrics import Event
from mongobackup.redact import redact_text

#: How much of a server's error reply goes into a NotifyError: enough for InfluxDB's one-line JSON errors.
REPLY_MAX_CHARS = 300


class NotifyError(BackupError):
    """NotifyError: an event write failed; the message names the server URL (without credentials), the
    database or bucket, and what the server or the network said.

    `transient` is True for what a retry may fix (connection refused, timeout, HTTP 5xx/429) and False
    for what it will not (unknown database, bad credentials, a rejected point), so Prefect retries only
    the former. A subclass of BackupError so that the tasks' retry condition reads `transient`.
    """

    def __init__(self, message: str, *, url: str, target: str, status: int | None = None, transient: bool = False):
        super().__init__(message)
        self.url = url
        self.target = target
        self.status = status
        self.transient = transient


@runtime_checkable
class EventSink(Protocol):
    """EventSink writes events somewhere, all or nothing from the caller's point of view."""

    def write(self, events: Sequence[Event]) -> None:
        """Writes every event, or raises NotifyError."""
        ...


def public_url(url: str) -> str:
    """public_url is `url` without user, password, query or fragment: the part safe to print."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 literal loses its brackets in .hostname
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


def _check_url(url: str, what: str) -> None:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{what}: URL {public_url(url)!r} must be http(s)://host[:port][/path]")


def _reply_text(body: bytes | str | None) -> str:
    """The useful part of a server's error reply: InfluxDB's {"error"|"message": ...} or the text itself."""
    if body is None:
        return ""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        for key in ("error", "message"):
            if isinstance(parsed.get(key), str):
                text = parsed[key]
                break
    text = " ".join(text.split())
    return text if len(text) <= REPLY_MAX_CHARS else text[: REPLY_MAX_CHARS - 1] + "\u2026"


def _transient_status(status: int) -> bool:
    # 408/429/5xx: the server is busy or restarting. Any other 4xx (404 unknown database, 401/403 bad
    # credentials, 400 a rejected point) will answer the same way on every retry.
    return status in (408, 429) or status >= 500


class InfluxV1Sink:
    """InfluxV1Sink posts line protocol to InfluxDB 1.x's `/write?db=<database>&precision=ns`.

    Plain HTTP (httpx) because InfluxDB before 1.8 has no v2 API for influxdb-client to talk to. Credentials
    may be given as arguments or in the URL (`http://user:pass@host:8086`); either way they travel as HTTP
    Basic auth, never in the query string, where proxies and access logs would keep them.
    """

    def __init__(
        self, url: str, database: str, username: str | None = None, password: str | None = None, timeout: float = 10
    ) -> None:
        _check_url(url, "InfluxDB v1 sink")
        if not database:
            raise ValueError(f"InfluxDB v1 sink for {public_url(url)}: database is empty")
        parts = urllib.parse.urlsplit(url)
        self.url = public_url(url)
        self.database = database
        self._username = username if username is not None else _unquote(parts.username)
        self._password = password if password is not None else _unquote(parts.password)
        self._timeout = timeout

    def __repr__(self) -> str:
        return f"InfluxV1Sink(url={self.url!r}, database={self.database!r})"

    @property
    def _where(self) -> str:
        # The user name is no secret and is what an operator checks first on "authorization failed".
        user = f", user {self._username!r}" if self._username else ""
        return f"InfluxDB v1 write to {self.url} (database {self.database!r}{user})"

    def write(self, events: Sequence[Event]) -> None:
        if not events:
            return
        body = to_line_protocol_batch(events).encode("utf-8")
        auth = (self._username, self._password or "") if self._username else None
        try:
            with httpx.Client(timeout=self._timeout) as client:
                response = client.post(
                    f"{self.url}/write",
                    params={"db": self.database, "precision": PRECISION},
                    content=body,
                    auth=auth,
                    headers={"Content-Type": "text/plain; charset=utf-8"},
                )
        except httpx.HTTPError as exc:
            # Connection refused, DNS, TLS, timeouts: the server never answered. `from None` (here and
            # below): the message carries the cause's text, and a chained traceback would print the
            # library's request objects into the run log for no gain.
            reason = redact_text(f"{type(exc).__name__}: {exc}", (self._password,))
            raise NotifyError(
                f"{self._where} failed: no answer: {reason}", url=self.url, target=self.database, transient=True
            ) from None
        if not response.is_success:
            reply = redact_text(_reply_text(response.content), (self._password,))
            raise NotifyError(
                f"{self._where} failed: HTTP {response.status_code}: {reply}",
                url=self.url,
                target=self.database,
                status=response.status_code,
                transient=_transient_status(response.status_code),
            )


class InfluxV2Sink:
    """InfluxV2Sink writes through the official influxdb-client's synchronous write API (InfluxDB 2.x, 1.8+).

    SYNCHRONOUS, not the client's default batching mode: batching writes from a background thread, logs
    errors there and retries for minutes, so `write` would "succeed" while the points are lost.
    """

    def __init__(self, url: str, org: str | None, bucket: str, token: str | None, timeout: float = 10) -> None:
        _check_url(url, "InfluxDB v2 sink")
        if not bucket:
            raise ValueError(f"InfluxDB v2 sink for {public_url(url)}: bucket is empty")
        self.url = public_url(url)
        self.org = org
        self.bucket = bucket
        self._token = token
        self._timeout = timeout

    def __repr__(self) -> str:
        return f"InfluxV2Sink(url={self.url!r}, org={self.org!r}, bucket={self.bucket!r})"

    @property
    def _where(self) -> str:
        org = f", org {self.org!r}" if self.org else ""
        return f"InfluxDB v2 write to {self.url} (bucket {self.bucket!r}{org})"

    def write(self, events: Sequence[Event]) -> None:
        # Imported here: the client pulls in reactivex and friends, which v1-only setups never need.
        from influxdb_client import InfluxDBClient, WritePrecision
        from influxdb_client.client.write_api import SYNCHRONOUS
        from influxdb_client.rest import ApiException
        from urllib3.exceptions import HTTPError as Urllib3Error

        if not events:
            return
        body = to_line_protocol_batch(events)
        # retries=False: one attempt per call. Retrying is the Prefect task's job, where it is visible.
        options: dict[str, Any] = {
            "url": self.url,
            "token": self._token or "",
            "org": self.org or "",
            "timeout": int(self._timeout * 1000),
            "retries": False,
        }
        try:
            with InfluxDBClient(**options) as client, client.write_api(write_options=SYNCHRONOUS) as api:
                api.write(
                    bucket=self.bucket,
                    org=self.org or "",
                    record=body,
                    write_precision=getattr(WritePrecision, PRECISION.upper()),
                )
        except ApiException as exc:
            status = int(exc.status or 0)
            reply = redact_text(_reply_text(exc.body) or str(exc.reason or ""), (self._token,))
            raise NotifyError(
                f"{self._where} failed: HTTP {status}: {reply}",
                url=self.url,
                target=self.bucket,
                status=status,
                transient=_transient_status(status),
            ) from None
        except (Urllib3Error, OSError) as exc:
            reason = redact_text(f"{type(exc).__name__}: {exc}", (self._token,))
            raise NotifyError(
                f"{self._where} failed: no answer: {reason}", url=self.url, target=self.bucket, transient=True
            ) from None


def _unquote(value: str | None) -> str | None:
    return urllib.parse.unquote(value) if value is not None else None


def make_sink(api: str, **settings: Any) -> EventSink:
    """make_sink builds the writer for `api` ("v1" or "v2") from keyword settings.

    v1: url, database, username=None, password=None, timeout=10 (InfluxDB 1.x `/write`).
    v2: url, org, bucket, token, timeout=10 (InfluxDB 2.x and 1.8+ `/api/v2/write`, VictoriaMetrics).
    """
    kinds: dict[str, type[InfluxV1Sink] | type[InfluxV2Sink]] = {"v1": InfluxV1Sink, "v2": InfluxV2Sink}
    kind = kinds.get(api.strip().lower())
    if kind is None:
        raise ValueError(f"notify api {api!r}: expected one of {', '.join(kinds)}")
    try:
        return kind(**settings)
    except TypeError as exc:
        # A missing or misspelled setting; name it, but never echo the values (one may be a secret).
        raise ValueError(f"notify api {api!r}: bad settings {sorted(settings)}: {exc}") from None
