"""HTTP(S) towards a key/value store's API: one httpx client per source, TLS from the plan, errors naming it.

Both stores speak plain HTTP/1.1 with JSON or a streamed body, so one small client covers them; the only
thing that differs per store is the path and the authentication header.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Iterator
from typing import Any

import httpx

from mongobackup.errors import SnapshotError
from mongobackup.snapshots.plan import TlsPlan

#: Bytes per read of a streamed snapshot body.
READ_SIZE = 1 << 20


def http_client(tls: TlsPlan | None, timeout_s: float) -> httpx.Client:
    """A client that trusts the plan's CA (or the system's), presents its client certificate, uses no proxy.

    The connect timeout is the plan's; reads wait longer, since a server writes a large snapshot to a
    temporary file before it sends the first byte.
    """
    verify: ssl.SSLContext | bool = True
    if tls is not None:
        context = ssl.create_default_context(cafile=str(tls.ca_file) if tls.ca_file else None)
        if tls.cert_file is not None and tls.key_file is not None:
            context.load_cert_chain(str(tls.cert_file), str(tls.key_file))
        verify = context
    timeout = httpx.Timeout(max(timeout_s * 30, 300.0), connect=timeout_s)
    return httpx.Client(verify=verify, timeout=timeout, trust_env=False)


def request_extensions(tls: TlsPlan | None) -> dict[str, Any]:
    """Per-request options: the server name to check the certificate against, when the plan gives one."""
    return {"sni_hostname": tls.server_name} if tls is not None and tls.server_name else {}


@contextlib.contextmanager
def api_errors(source: str, what: str) -> Iterator[None]:
    """Turns httpx failures into SnapshotError naming the source and the call; network faults are transient."""
    try:
        yield
    except httpx.HTTPStatusError as exc:
        raise status_error(source, what, exc.response) from exc
    except httpx.TransportError as exc:
        certificate = isinstance(exc.__cause__ or exc.__context__, ssl.SSLCertVerificationError) or (
            "CERTIFICATE_VERIFY_FAILED" in str(exc)
        )
        raise SnapshotError(source, f"{what}: {type(exc).__name__}: {exc}", transient=not certificate) from exc


def status_error(source: str, what: str, response: httpx.Response) -> SnapshotError:
    """An error for a non-2xx answer: 5xx and 429 are worth a retry, 4xx (auth, bad request) are not."""
    try:
        body = response.read()[:300].decode(errors="replace").strip()
    except (httpx.HTTPError, RuntimeError):
        body = ""
    code = response.status_code
    hint = " (the token or credentials were refused)" if code in (401, 403) else ""
    return SnapshotError(
        source, f"{what}: HTTP {code}{hint}: {body or response.reason_phrase}", transient=code >= 500 or code == 429
    )
