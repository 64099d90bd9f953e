"""A fault-injecting HTTP proxy in front of the real S3 server, for "S3 fails mid-upload" tests.

Requests are forwarded byte for byte to moto over a real socket; from the Nth UploadPart on, the proxy fails
the request instead, in the way `fault` says:
- "503": answers 503 SlowDown, as an overloaded S3 would;
- "timeout": holds the request `hold_s` seconds without a word, then closes the connection (a client with a
  shorter read timeout gives up first);
- "drop": reads the request and closes the connection without an answer (a connection reset mid-upload).
Everything else (abort, list, head) passes, so the test can check what the failed upload left behind on the
real server, unless `dead_after_failure` is set: then once a part has failed, every request fails the same way
(S3 gone for good: even the abort cannot get through).
`down`: every request is answered 503, as by a store that is down for a while.

Glacier: moto finishes a RestoreObject at once. With `thaw_in_progress` the proxy shows every finished thaw
as still under way (`x-amz-restore: ongoing-request="true"`), as S3 does for hours; `restore_requests` counts
the RestoreObject requests that passed.
"""

from __future__ import annotations

import http.client
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_ERROR_BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
    b"<Message>injected by the test proxy</Message></Error>"
)


class FaultyS3Proxy:
    """Forwards to `upstream`; fails UploadPart requests whose part number is >= `fail_from_part`, and holds
    each UploadPart for `part_delay_s` first (backpressure that keeps a transfer under way for a while)."""

    def __init__(self, upstream: str):
        parsed = urllib.parse.urlsplit(upstream)
        self.upstream_host, self.upstream_port = parsed.hostname or "127.0.0.1", parsed.port or 80
        self.fail_from_part: int | None = None
        self.part_delay_s = 0.0
        self.fail_budget: int | None = None  # stop failing after this many refusals (None: fail on and on)
        self.fault = "503"
        self.hold_s = 5.0
        self.dead_after_failure = False
        self.down = False  # every request answered 503, as by a store that is down
        self.failed_requests = 0
        self.parts_held = 0  # UploadPart requests being held by `part_delay_s` right now
        self._release = threading.Event()  # set by `release_held`: the parts held now go on at once
        self.thaw_in_progress = False
        self.restore_requests: list[str] = []  # paths of the RestoreObject requests forwarded
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query, keep_blank_values=True)
                part = int(query.get("partNumber", ["0"])[0])
                if part and proxy.part_delay_s:
                    with proxy._lock:
                        proxy.parts_held += 1
                        release = proxy._release
                    release.wait(proxy.part_delay_s)
                    with proxy._lock:
                        proxy.parts_held -= 1
                dead = proxy.dead_after_failure and proxy.failed_requests > 0
                if proxy.down or dead or (self.command == "PUT" and proxy.should_fail(part)):
                    proxy.failed_requests += 1
                    self._fail()
                    return
                if self.command == "POST" and "restore" in query:
                    proxy.restore_requests.append(urllib.parse.urlsplit(self.path).path)
                upstream = http.client.HTTPConnection(proxy.upstream_host, proxy.upstream_port, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
                upstream.request(self.command, self.path, body=body, headers=headers)
                reply = upstream.getresponse()
                data = reply.read()
                self.send_response(reply.status)
                for name, value in reply.getheaders():
                    if name.lower() == "x-amz-restore" and proxy.thaw_in_progress:
                        value = 'ongoing-request="true"'
                    if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(name, value)
                # A HEAD reply has no body but announces the object's length: pass that on as it is.
                length = reply.getheader("Content-Length", "0") if self.command == "HEAD" else str(len(data))
                self.send_header("Content-Length", length)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                upstream.close()

            def _fail(self) -> None:
                self.close_connection = True
                if proxy.fault == "drop":
                    return  # no status line at all: the client sees the connection closed
                if proxy.fault == "timeout":
                    time.sleep(proxy.hold_s)
                    return
                self.send_response(503)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(_ERROR_BODY)))
                self.end_headers()
                self.wfile.write(_ERROR_BODY)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def release_held(self) -> None:
        """Lets every part held now go on without waiting out `part_delay_s` (later ones are held again)."""
        with self._lock:
            release, self._release = self._release, threading.Event()
        release.set()

    def should_fail(self, part: int) -> bool:
        if self.fail_from_part is None or part < self.fail_from_part:
            return False
        return self.fail_budget is None or self.failed_requests < self.fail_budget

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FaultyS3Proxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.part_delay_s = 0
        self.release_held()  # no handler left sleeping: closing the server waits for every one
        self._server.shutdown()
        self._server.server_close()
