"""Redaction: passwords and tokens never reach logs, artifacts, errors or manifests.

`redact_uri` masks the password of one URI (MongoDB, HTTP or any `scheme://user:password@host` form) and the
values of query options that carry secrets; `redact_text` does that for every URI inside a free text (an
exception message, a log line) and also masks known secret values wherever they appear.

Where a URI is ambiguous (a password with an unescaped `@`, `/` or `?`), the rules below mask more rather than
less: a garbled host in a log line is harmless, a leaked password is not.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import quote, quote_plus, unquote

MASK = "***"

#: Query option names whose value is a secret whatever the scheme (MongoDB TLS key passwords, InfluxDB 1.x
#: `p=`, signed S3 URLs, OAuth tokens). Any name containing one of _SECRET_WORDS is masked as well.
_SECRET_OPTIONS = frozenset(
    {
        "p",
        "pw",
        "pwd",
        "pass",
        "sig",
        "signature",
        "x-amz-signature",
        "x-amz-credential",
        "x-amz-security-token",
        "apikey",
        "api_key",
        "auth",
        "authorization",
    }
)
_SECRET_WORDS = ("password", "passwd", "secret", "token")

#: Inside MongoDB's authMechanismProperties (KEY:value,KEY:value), the properties that are secrets.
_SECRET_MECHANISM_PROPERTIES = frozenset({"aws_session_token"})

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
#: A URI inside free text: a scheme, then everything up to whitespace. Quotes and commas are kept in the token
#: on purpose: a password may contain them, and cutting there could leave part of it behind.
_URI_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://\S+")
#: host[:port] items separated by commas, IPv6 literals in brackets: an authority without userinfo.
_HOST = r"(?:\[[0-9A-Za-z:.%]*\]|[^@:,/?#\[\]]+)(?::\d*)?"
_HOST_LIST = re.compile(rf"(?:{_HOST}(?:,{_HOST})*)?")


def redact_uri(uri: str) -> str:
    """`uri` with its password replaced by `***` (the user is kept) and secret query options masked.

    mongodb://app:s3cr%40t@h1:27017,h2:27017/db?replicaSet=rs  ->  mongodb://app:***@h1:27017,h2:27017/db?replicaSet=rs
    """
    match = _SCHEME.match(uri)
    scheme = match.group(0) if match else ""
    rest = uri[len(scheme) :]
    end = _userinfo_end(rest)
    if end is not None:
        user, colon, _password = rest[:end].partition(":")
        if colon:
            rest = f"{user}:{MASK}{rest[end:]}"
    return scheme + _redact_query(rest)


def redact_text(text: str, secrets: Iterable[str | None] = ()) -> str:
    """`text` with every URI redacted (see `redact_uri`) and each known secret value replaced by `***`.

    Secrets are matched verbatim and in their percent-encoded forms (as they appear inside a URI); the
    longest first, so that a secret containing another is masked whole.
    """
    redacted = _URI_IN_TEXT.sub(lambda m: redact_uri(m.group(0)), text)
    forms: set[str] = set()
    for secret in secrets:
        if secret:
            forms.update({secret, quote(secret, safe=""), quote_plus(secret, safe="")})
    for form in sorted(forms, key=len, reverse=True):
        redacted = redacted.replace(form, MASK)
    return redacted


def _userinfo_end(rest: str) -> int | None:
    """Index of the `@` that ends the userinfo of `rest` (a URI without its scheme), or None if it has none.

    A well-formed URI has its userinfo before the first `/`, `?` or `#`. A password with unescaped `@`, `/`
    or `?` breaks that, so: the last `@` before the query; or, when the part before the first `/` is not a
    plain host list (`h1:27017,[::1]:27018`), the last `@` at all.
    """
    query_at = rest.find("?")
    head = rest if query_at < 0 else rest[:query_at]
    if "@" in head:
        return head.rfind("@")
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    if "@" in rest and not _HOST_LIST.fullmatch(authority):
        return rest.rfind("@")
    return None


def _redact_query(rest: str) -> str:
    """Masks the values of secret query options (`?a=1&tlsCertificateKeyFilePassword=...`)."""
    base, question, query = rest.partition("?")
    if not question:
        return rest
    fragment = ""
    if "#" in query:
        query, fragment = query.split("#", 1)
        fragment = "#" + fragment
    # MongoDB URIs also allow `;` between options.
    parts = re.split(r"([&;])", query)
    for i in range(0, len(parts), 2):
        name, equals, value = parts[i].partition("=")
        if not equals:
            continue
        key = unquote(name).lower()
        if key in _SECRET_OPTIONS or any(word in key for word in _SECRET_WORDS):
            parts[i] = f"{name}={MASK}"
        elif key == "authmechanismproperties":
            parts[i] = f"{name}={_redact_mechanism_properties(value)}"
    return f"{base}?{''.join(parts)}{fragment}"


def _redact_mechanism_properties(value: str) -> str:
    """`SERVICE_NAME:mongodb,AWS_SESSION_TOKEN:abc` -> `SERVICE_NAME:mongodb,AWS_SESSION_TOKEN:***`."""
    decoded = unquote(value)
    items = []
    for item in decoded.split(","):
        name, colon, _ = item.partition(":")
        items.append(f"{name}:{MASK}" if colon and name.strip().lower() in _SECRET_MECHANISM_PROPERTIES else item)
    joined = ",".join(items)
    return joined if joined != decoded else value  # untouched options keep their original spelling
