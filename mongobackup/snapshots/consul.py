"""Consul snapshots: `GET /v1/snapshot` streamed, and checked as it streams past, as `consul snapshot inspect`
and `consul snapshot restore` check it.

A Consul snapshot is a gzip'd tar holding `meta.json` (Raft's snapshot metadata: index, term, size),
`state.bin` (the server state) and `SHA256SUMS` (`<hex>  <name>` lines covering the other two). The check
here is a push parser: it is fed the gzip bytes chunk by chunk, inflates them with a bounded output, walks
the tar headers, hashes the two files and compares them with SHA256SUMS at the end. Nothing is buffered
but meta.json and SHA256SUMS (a few hundred bytes), so memory does not grow with the snapshot.

Like Consul's own reader it refuses any other file in the archive, a missing or unlisted file, a hash
mismatch, a bad tar header checksum, and a stream that ends before the gzip trailer (truncated).
"""

from __future__ import annotations

import hashlib
import json
import re
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from mongobackup.errors import SnapshotInvalid
from mongobackup.snapshots.http import READ_SIZE, api_errors, http_client, request_extensions, status_error
from mongobackup.snapshots.plan import ConsulSource

META, STATE, SUMS = "meta.json", "state.bin", "SHA256SUMS"
#: Consul's own ceiling would be far above this; a meta.json or SHA256SUMS this large is not one.
_SMALL_FILE_MAX = 1 << 20
_BLOCK = 512
_SUM_LINE = re.compile(r"^([0-9a-f]{64})  (\S+)$")


@dataclass(frozen=True)
class ConsulSnapshotInfo:
    """What a checked Consul snapshot says about itself (meta.json), for the manifest."""

    index: int
    term: int
    version: int
    snapshot_id: str
    state_bytes: int

    def details(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "term": self.term,
            "version": self.version,
            "id": self.snapshot_id,
            "state_bytes": self.state_bytes,
        }


class ConsulArchiveCheck:
    """Checks a Consul snapshot archive fed in chunks; `finish()` returns its info or raises SnapshotInvalid.

    `feed` never raises: the first problem is kept and reported by `finish`, so that a caller feeding from
    another thread (gpg's copy thread) never loses it.
    """

    method = "consul-sha256sums"

    def __init__(self, source: str):
        self.source = source
        self._inflate = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # gzip wrapper: checks CRC-32 and size
        self._pending = bytearray()  # tar bytes not yet parsed (less than one block, or a small file)
        self._member: str | None = None  # the file whose data is being read
        self._remaining = 0  # data bytes left of the current member
        self._padding = 0  # bytes to skip after it
        self._pax_size: int | None = None
        self._ended = False  # the end-of-archive block was seen
        self._hashes = {META: hashlib.sha256(), STATE: hashlib.sha256()}
        self._seen: list[str] = []
        self._small: dict[str, bytearray] = {META: bytearray(), SUMS: bytearray()}
        self._state_bytes = 0
        self._problem: str | None = None

    def feed(self, chunk: bytes) -> None:
        if self._problem is not None:
            return
        try:
            data = chunk
            while data and not self._inflate.eof:
                self._parse(self._inflate.decompress(data, READ_SIZE))
                data = self._inflate.unconsumed_tail
            if self._inflate.eof and (self._inflate.unused_data or (chunk and data)):
                self._problem = "bytes after the end of the gzip stream"
        except zlib.error as exc:
            self._problem = f"not a valid gzip stream ({exc})"
        except SnapshotInvalid as exc:
            self._problem = str(exc).split(": ", 1)[-1]

    def finish(self) -> ConsulSnapshotInfo:
        if self._problem is None and not self._inflate.eof:
            self._problem = "truncated: the gzip stream ends before its trailer"
        if self._problem is None:
            self._problem = self._tar_incomplete()
        if self._problem is not None:
            raise SnapshotInvalid(self.source, f"Consul snapshot refused: {self._problem}")
        return self._verify()

    # --- tar -----------------------------------------------------------------------------------------

    def _parse(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            if self._remaining:
                n = min(len(view), self._remaining)
                self._member_data(view[:n])
                self._remaining -= n
                view = view[n:]
                if not self._remaining:
                    self._member_end()
                continue
            if self._padding:
                n = min(len(view), self._padding)
                self._padding -= n
                view = view[n:]
                continue
            if self._ended:
                if any(view):
                    self._fail("data after the end of the tar archive")
                return
            need = _BLOCK - len(self._pending)
            self._pending += view[:need]
            view = view[need:]
            if len(self._pending) == _BLOCK:
                block, self._pending = bytes(self._pending), bytearray()
                self._header(block)

    def _header(self, block: bytes) -> None:
        if not any(block):
            self._ended = True
            return
        stored = _number(block[148:156])
        computed = sum(block[:148]) + 8 * 32 + sum(block[156:])
        if stored != computed:
            self._fail("a tar header's checksum does not match (damaged archive)")
        name = block[:100].split(b"\0", 1)[0].decode(errors="replace")
        prefix = block[345:500].split(b"\0", 1)[0].decode(errors="replace") if block[257:262] == b"ustar" else ""
        name = f"{prefix}/{name}" if prefix else name
        size = _number(block[124:136])
        kind = block[156:157]
        if self._pax_size is not None:
            size, self._pax_size = self._pax_size, None
        if kind in (b"x", b"g"):  # PAX extended header: read its records like a small file
            self._start("\0pax", size)
            return
        if kind not in (b"0", b"\0"):
            self._fail(f"unexpected entry {name!r} of type {kind!r} in the archive")
        if name not in (META, STATE, SUMS):
            self._fail(f"unexpected file {name!r} in snapshot")
        if name in self._seen:
            self._fail(f"{name} appears twice in the archive")
        self._seen.append(name)
        self._start(name, size)

    def _start(self, name: str, size: int) -> None:
        self._member = name
        self._remaining = size
        self._padding = -size % _BLOCK
        if name in self._small or name == "\0pax":
            if size > _SMALL_FILE_MAX:
                self._fail(f"{name.strip(chr(0)) or 'a PAX header'} is {size} bytes: not a Consul snapshot")
            self._small.setdefault(name, bytearray())
        if not size:
            self._member_end()

    def _member_data(self, data: memoryview) -> None:
        name = self._member
        assert name is not None
        if name in self._hashes:
            self._hashes[name].update(data)
        if name == STATE:
            self._state_bytes += len(data)
        else:
            self._small[name] += data

    def _member_end(self) -> None:
        if self._member == "\0pax":
            records = bytes(self._small.pop("\0pax")).decode(errors="replace")
            match = re.search(r"\d+ size=(\d+)\n", records)
            self._pax_size = int(match.group(1)) if match else None
        self._member = None

    def _tar_incomplete(self) -> str | None:
        if self._remaining or self._pending:
            return "truncated: the tar archive ends inside a file"
        missing = [name for name in (META, STATE, SUMS) if name not in self._seen]
        return f"truncated or incomplete: {', '.join(missing)} missing from the archive" if missing else None

    def _fail(self, problem: str) -> None:
        raise SnapshotInvalid(self.source, problem)

    # --- SHA256SUMS and meta.json -----------------------------------------------------------------------

    def _verify(self) -> ConsulSnapshotInfo:
        listed: dict[str, str] = {}
        for line in bytes(self._small[SUMS]).decode(errors="replace").splitlines():
            match = _SUM_LINE.match(line.strip())
            if match is None:
                raise SnapshotInvalid(self.source, f"Consul snapshot refused: SHA256SUMS line {line!r} is malformed")
            listed[match.group(2)] = match.group(1)
        for name, digest in self._hashes.items():
            if name not in listed:
                raise SnapshotInvalid(self.source, f"Consul snapshot refused: SHA256SUMS lists no hash for {name}")
            if listed[name] != digest.hexdigest():
                raise SnapshotInvalid(
                    self.source, f"Consul snapshot refused: hash check failed for {name} (damaged snapshot)"
                )
        unknown = sorted(set(listed) - set(self._hashes))
        if unknown:
            raise SnapshotInvalid(self.source, f"Consul snapshot refused: SHA256SUMS lists unknown {unknown}")
        try:
            meta = json.loads(bytes(self._small[META]))
            info = ConsulSnapshotInfo(
                int(meta["Index"]), int(meta["Term"]), int(meta["Version"]), str(meta["ID"]), self._state_bytes
            )
            size = int(meta["Size"])
        except (ValueError, KeyError, TypeError) as exc:
            raise SnapshotInvalid(
                self.source, f"Consul snapshot refused: meta.json is not Raft metadata ({exc})"
            ) from None
        if size != self._state_bytes:
            raise SnapshotInvalid(
                self.source,
                f"Consul snapshot refused: meta.json says {size} state bytes, state.bin has {self._state_bytes}",
            )
        return info


def _number(field: bytes) -> int:
    """A tar numeric field: octal text, or base-256 when the first byte has its high bit set."""
    if field[:1] and field[0] & 0x80:
        return int.from_bytes(bytes([field[0] & 0x7F]) + field[1:], "big")
    text = field.split(b"\0", 1)[0].strip()
    try:
        return int(text, 8) if text else 0
    except ValueError:
        raise SnapshotInvalid("?", f"tar numeric field {field!r} is not a number (damaged archive)") from None


@contextmanager
def consul_snapshot(source: ConsulSource, token: str | None) -> Iterator[Iterator[bytes]]:
    """The raw bytes of `GET /v1/snapshot` from the source's agent, as they arrive (gzip'd tar, unchecked).

    Query: `dc` when the plan names a datacenter, `stale` when it allows any server to answer. The token
    goes in the `X-Consul-Token` header, never in the URL (which may be logged).
    """
    params: dict[str, str] = {}
    if source.datacenter:
        params["dc"] = source.datacenter
    if source.stale:
        params["stale"] = ""
    headers = {"X-Consul-Token": token} if token else {}
    url = f"{source.address.rstrip('/')}/v1/snapshot"
    what = f"GET {url}"
    with http_client(source.tls, source.connect_timeout_s) as client:
        with api_errors(source.name, what):
            request = client.build_request(
                "GET", url, params=params, headers=headers, extensions=request_extensions(source.tls)
            )
            response = client.send(request, stream=True)
        try:
            if response.status_code != 200:
                raise status_error(source.name, what, response)

            def chunks() -> Iterator[bytes]:
                with api_errors(source.name, f"{what}: reading the body"):
                    yield from response.iter_raw(READ_SIZE)

            yield chunks()
        finally:
            response.close()
