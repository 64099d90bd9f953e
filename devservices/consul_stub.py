"""A stand-in for a Consul agent's snapshot API, for tests and the demo: no Consul server can be installed here.

    python -m devservices.consul_stub --port 8500 --state DIR [--token TOKEN]

It serves what the backup reads, following Consul's documented HTTP API:

- `GET /v1/snapshot[?dc=DC][&stale]`: a snapshot built exactly in Consul's documented archive format: a
  gzip'd tar of `meta.json` (Raft's SnapshotMeta as Go's json.Encoder writes it: Version, ID, Index, Term,
  Peers, Configuration, ConfigurationIndex, Size), `state.bin` and `SHA256SUMS` (`<hex>  <name>` lines),
  in that order, with `X-Consul-Index` and `X-Consul-KnownLeader` headers and a chunked body. With
  `--token`, a request without that `X-Consul-Token` gets 403 "Permission denied", as with ACLs on.
  `state.bin` holds a header line and the stub's key/value entries as JSON lines (a real server writes its
  msgpack-encoded Raft FSM state there; the backup never looks inside, it only checks the hashes).
- Two datacenters that serve broken snapshots, so that the refusal paths run against a server too:
  `dc=corrupt` (state.bin changed after SHA256SUMS was computed: a hash mismatch inside a valid gzip and
  tar) and `dc=truncated` (the first half of a good snapshot, with a clean end of the HTTP body). Any other
  `dc` but the stub's own (`dc1`) answers 500 "No path to datacenter", as Consul does.
- `PUT /v1/kv/<key>` (body: the value) and `GET /v1/kv/<key>`, to put data into the snapshots, each write
  raising the Raft index by one; `GET /v1/status/leader` for the health check.

Every request is appended to `<state>/requests.log` (method, path, query, whether a token came), so a test
can check what the backup asked for.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import hashlib
import io
import json
import tarfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

DATACENTER = "dc1"
CORRUPT_DC = "corrupt"
TRUNCATED_DC = "truncated"
TERM = 2


class ConsulStub:
    """The stub's state: its key/value entries and the Raft index they reached."""

    def __init__(self, state_dir: Path, token: str | None):
        self.state_dir = state_dir
        self.token = token
        self.kv: dict[str, bytes] = {}
        self.index = 10  # a fresh cluster has some entries of its own
        self.lock = threading.Lock()

    def put(self, key: str, value: bytes) -> int:
        with self.lock:
            self.index += 1
            self.kv[key] = value
            return self.index

    def snapshot(self, *, corrupt: bool = False) -> tuple[bytes, int]:
        """The gzip'd tar of a snapshot of the current entries, and its index."""
        with self.lock:
            index = self.index
            # A header first, as Consul's FSM snapshot starts with one; then one line per entry.
            state = json.dumps({"LastIndex": index}).encode() + b"\n"
            state += b"".join(
                json.dumps({"Key": k, "Value": base64.b64encode(v).decode(), "ModifyIndex": index}).encode() + b"\n"
                for k, v in sorted(self.kv.items())
            )
        meta = {
            "Version": 1,
            "ID": f"{TERM}-{index}-{int(time.time() * 1000)}",
            "Index": index,
            "Term": TERM,
            "Peers": base64.b64encode(b"\x91\xae127.0.0.1:8300").decode(),
            "Configuration": {"Servers": [{"Suffrage": 0, "ID": "stub-server-1", "Address": "127.0.0.1:8300"}]},
            "ConfigurationIndex": 1,
            "Size": len(state),
        }
        meta_bytes = json.dumps(meta, separators=(",", ":")).encode() + b"\n"  # Go's json.Encoder adds the newline
        sums = (
            f"{hashlib.sha256(meta_bytes).hexdigest()}  meta.json\n{hashlib.sha256(state).hexdigest()}  state.bin\n"
        ).encode()
        if corrupt:
            state = bytes([state[0] ^ 0x20]) + state[1:]  # same size, other bytes: only the hash can tell
        archive = io.BytesIO()
        now = time.time()
        with tarfile.open(fileobj=archive, mode="w", format=tarfile.USTAR_FORMAT) as tar:
            for name, data in (("meta.json", meta_bytes), ("state.bin", state), ("SHA256SUMS", sums)):
                info = tarfile.TarInfo(name)
                info.size, info.mode, info.mtime = len(data), 0o600, int(now)
                tar.addfile(info, io.BytesIO(data))
        return gzip.compress(archive.getvalue(), mtime=0), index

    def log(self, entry: dict[str, object]) -> None:
        with self.lock, (self.state_dir / "requests.log").open("a") as log:
            log.write(json.dumps(entry) + "\n")


def handler_for(stub: ConsulStub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (http.server's name)
            pass  # requests.log records what matters

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            url = urlsplit(self.path)
            query = parse_qs(url.query, keep_blank_values=True)
            stub.log({"method": "GET", "path": url.path, "query": query, "token": "X-Consul-Token" in self.headers})
            if url.path == "/v1/status/leader":
                return self._send(200, b'"127.0.0.1:8300"', "application/json")
            if url.path.startswith("/v1/kv/"):
                value = stub.kv.get(url.path.removeprefix("/v1/kv/"))
                if value is None:
                    return self._send(404, b"", "text/plain")
                body = json.dumps([{"Key": url.path[7:], "Value": base64.b64encode(value).decode()}]).encode()
                return self._send(200, body, "application/json")
            if url.path == "/v1/snapshot":
                return self._snapshot(query)
            self._send(404, b"unknown path", "text/plain")

        def do_PUT(self) -> None:  # noqa: N802 (http.server's name)
            url = urlsplit(self.path)
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            stub.log({"method": "PUT", "path": url.path, "query": {}, "token": "X-Consul-Token" in self.headers})
            if not url.path.startswith("/v1/kv/"):
                return self._send(404, b"unknown path", "text/plain")
            if not self._authorised():
                return self._denied()
            stub.put(url.path.removeprefix("/v1/kv/"), body)
            self._send(200, b"true", "application/json")

        def _authorised(self) -> bool:
            return stub.token is None or self.headers.get("X-Consul-Token") == stub.token

        def _denied(self) -> None:
            self._send(403, b"Permission denied", "text/plain")

        def _snapshot(self, query: dict[str, list[str]]) -> None:
            if not self._authorised():
                return self._denied()
            dc = query.get("dc", [DATACENTER])[0] or DATACENTER
            if dc not in (DATACENTER, CORRUPT_DC, TRUNCATED_DC):
                return self._send(500, f"No path to datacenter {dc!r}".encode(), "text/plain")
            archive, index = stub.snapshot(corrupt=dc == CORRUPT_DC)
            if dc == TRUNCATED_DC:
                archive = archive[: len(archive) // 2]
            self.send_response(200)
            self.send_header("Content-Type", "application/x-gzip")
            self.send_header("X-Consul-Index", str(index))
            self.send_header("X-Consul-KnownLeader", "true")
            self.send_header("X-Consul-LastContact", "0")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for start in range(0, len(archive), 16 * 1024):
                piece = archive[start : start + 16 * 1024]
                self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")

        def _send(self, code: int, body: bytes, content_type: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devservices.consul_stub", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--state", type=Path, required=True, help="state folder (requests.log goes here)")
    parser.add_argument("--token", help="the ACL token every snapshot and write request must carry")
    args = parser.parse_args(argv)
    args.state.mkdir(parents=True, exist_ok=True)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), handler_for(ConsulStub(args.state, args.token)))
    server.serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
