"""etcd snapshots: the v3 maintenance snapshot through etcd's gRPC gateway, checked as it streams past.

`POST /v3/maintenance/snapshot` answers with JSON lines, each `{"result": {"blob": "<base64>"}}` (or
`{"error": {...}}` when the server fails mid-stream); the blobs, concatenated, are exactly the file
`etcdctl snapshot save` writes: the member's bbolt database followed by the SHA-256 of everything before
it. `etcdctl snapshot restore` refuses a file whose trailing hash does not match; the check here is the
same one, streamed (a running hash and a 32-byte tail), plus bbolt's magic number in the first page.

The snapshot itself does not say its revision without opening the database, so the revision comes from
the API: the key count and revision are read just before and just after the snapshot; when they are equal
nothing was written in between and the snapshot holds exactly that revision and that many keys (`exact`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from mongobackup.errors import SnapshotError, SnapshotInvalid
from mongobackup.snapshots.http import api_errors, http_client, request_extensions, status_error
from mongobackup.snapshots.plan import EtcdSource, TlsPlan

HASH_SIZE = 32  # sha256, appended by the server
#: etcdctl's rule: a snapshot with its hash has a size of 512k + 32 (bbolt pages are multiples of 512).
_ALIGN = 512
BOLT_MAGIC = 0xED0CDAED
_BOLT_META_OFFSET = 16  # after the page header: id u64, flags u16, count u16, overflow u32
#: The whole key space in a range request: key "\0" with range_end "\0".
_ALL = base64.b64encode(b"\0").decode()


class EtcdSnapshotCheck:
    """Checks an etcd snapshot fed in chunks: bbolt magic, size, trailing SHA-256. `feed` never raises."""

    method = "etcd-sha256-trailer"

    def __init__(self, source: str):
        self.source = source
        self._hash = hashlib.sha256()
        self._tail = b""  # the last HASH_SIZE bytes seen: the hash, if the stream ends here
        self._head = bytearray()  # the first bytes, for the bbolt meta page
        self.size = 0

    def feed(self, chunk: bytes) -> None:
        if len(self._head) < 64:
            self._head += chunk[: 64 - len(self._head)]
        self.size += len(chunk)
        data = self._tail + chunk
        if len(data) > HASH_SIZE:
            self._hash.update(memoryview(data)[: len(data) - HASH_SIZE])
            self._tail = bytes(data[-HASH_SIZE:])
        else:
            self._tail = data

    def finish(self) -> dict[str, Any]:
        if self.size < 2 * _ALIGN + HASH_SIZE:
            self._refuse(f"truncated or empty: {self.size} bytes is not a bbolt database and its hash")
        magic, version, page_size = struct.unpack_from("<III", self._head, _BOLT_META_OFFSET)
        if magic != BOLT_MAGIC:
            self._refuse(f"not a bbolt database (magic {magic:#x}, expected {BOLT_MAGIC:#x})")
        if self.size % _ALIGN != HASH_SIZE:
            self._refuse(f"truncated: {self.size} bytes is not a whole database plus its 32-byte hash")
        if self._hash.digest() != self._tail:
            self._refuse("the trailing SHA-256 does not match the content (damaged or truncated snapshot)")
        return {"db_bytes": self.size - HASH_SIZE, "bolt_version": version, "page_size": page_size}

    def _refuse(self, problem: str) -> None:
        raise SnapshotInvalid(self.source, f"etcd snapshot refused: {problem}")


@dataclass(frozen=True)
class KeyCount:
    """The number of keys at a revision, and the member's Raft position then."""

    revision: int
    keys: int
    raft_term: int
    member_id: str
    cluster_id: str


class EtcdGateway:
    """One etcd member's gateway, authenticated when the plan names a user. Use as a context manager."""

    def __init__(self, source: str, endpoint: str, tls: TlsPlan | None, timeout_s: float):
        self.source = source
        self.endpoint = endpoint.rstrip("/")
        self._tls = tls
        self._client = http_client(tls, timeout_s)
        self._headers: dict[str, str] = {}

    def __enter__(self) -> EtcdGateway:
        return self

    def __exit__(self, *exc: object) -> None:
        self._client.close()

    def call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST a JSON body to `/v3/<path>`; the JSON answer, or SnapshotError naming the call."""
        url = f"{self.endpoint}/v3/{path}"
        with api_errors(self.source, f"POST {url}"):
            response = self._client.post(
                url, json=body, headers=self._headers, extensions=request_extensions(self._tls)
            )
            response.raise_for_status()
            return response.json()

    def authenticate(self, username: str, password: str) -> None:
        token = self.call("auth/authenticate", {"name": username, "password": password}).get("token")
        if not token:
            raise SnapshotError(self.source, f"{self.endpoint}: authentication as {username} returned no token")
        self._headers["Authorization"] = token

    def status(self) -> dict[str, Any]:
        return self.call("maintenance/status", {})

    def count(self) -> KeyCount:
        reply = self.call("kv/range", {"key": _ALL, "range_end": _ALL, "count_only": True})
        header = reply.get("header", {})
        return KeyCount(
            int(header.get("revision", 0)),
            int(reply.get("count", 0)),
            int(header.get("raft_term", 0)),
            str(header.get("member_id", "")),
            str(header.get("cluster_id", "")),
        )

    def items(self, page: int = 1000) -> Iterator[tuple[bytes, bytes]]:
        """Every (key, value) in key order, `page` keys per request, all read at one revision."""
        key, revision = _ALL, 0
        while True:
            body: dict[str, Any] = {"key": key, "range_end": _ALL, "limit": page, "revision": revision}
            reply = self.call("kv/range", body)
            revision = revision or int(reply.get("header", {}).get("revision", 0))
            kvs = reply.get("kvs", [])
            for kv in kvs:
                yield base64.b64decode(kv["key"]), base64.b64decode(kv.get("value", ""))
            if not reply.get("more") or not kvs:
                return
            key = base64.b64encode(base64.b64decode(kvs[-1]["key"]) + b"\0").decode()

    @contextmanager
    def snapshot(self) -> Iterator[Iterator[bytes]]:
        """The snapshot's bytes as the member streams them (unchecked)."""
        url = f"{self.endpoint}/v3/maintenance/snapshot"
        what = f"POST {url}"
        with api_errors(self.source, what):
            request = self._client.build_request(
                "POST", url, json={}, headers=self._headers, extensions=request_extensions(self._tls)
            )
            response = self._client.send(request, stream=True)
        try:
            if response.status_code != 200:
                raise status_error(self.source, what, response)
            yield self._blobs(response, what)
        finally:
            response.close()

    def _blobs(self, response: httpx.Response, what: str) -> Iterator[bytes]:
        with api_errors(self.source, f"{what}: reading the stream"):
            for line in response.iter_lines():
                if not line.strip():
                    continue
                try:
                    message = json.loads(line)
                except ValueError:
                    raise SnapshotInvalid(self.source, f"{what}: not a JSON line: {line[:80]!r}") from None
                if "error" in message:
                    error = message["error"]
                    raise SnapshotError(
                        self.source,
                        f"{what}: the member failed mid-stream: {error.get('message', error)}",
                        transient=True,
                    )
                blob = message.get("result", {}).get("blob")
                if blob:
                    yield base64.b64decode(blob)


@contextmanager
def etcd_gateway(source: EtcdSource, password: str | None) -> Iterator[EtcdGateway]:
    """The first of the source's endpoints that answers, authenticated; SnapshotError naming each that did not."""
    problems: list[str] = []
    for endpoint in source.endpoints:
        gateway = EtcdGateway(source.name, endpoint, source.tls, source.connect_timeout_s)
        try:
            gateway.status()
            if source.username:
                gateway.authenticate(source.username, password or "")
        except SnapshotError as exc:
            gateway.__exit__()
            if not exc.transient:
                raise  # refused credentials or certificate: another member would refuse them too
            problems.append(str(exc).split(": ", 1)[-1])
            continue
        with gateway:
            yield gateway
        return
    raise SnapshotError(source.name, "no endpoint answered: " + "; ".join(problems), transient=True)
