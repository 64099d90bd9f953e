"""The naming rules: what MongoDB, S3 and GnuPG accept as a database, instance, bucket and key id.

One place for each rule, shared by the plan (which refuses a bad name before any run), the dump and status
(which leave out the system databases) and the restore (which builds scratch and staging names that must fit
MongoDB's length limit). Each `check_*` returns the name or raises ValueError saying which rule it breaks.
"""

from __future__ import annotations

import ipaddress
import re

#: Databases that `databases: all` leaves out: server internals, restored only by hand.
SYSTEM_DATABASES = frozenset({"admin", "local", "config"})

#: MongoDB's limit on a database name, in UTF-8 bytes.
DATABASE_NAME_MAX_BYTES = 63
#: Characters MongoDB refuses in a database name (the Windows set, so a plan is valid on every server).
_DB_NAME_FORBIDDEN = frozenset('/\\. "$*<>:|?\0')

#: An instance name is a path segment of every object key and an InfluxDB tag value.
_INSTANCE_NAME = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

#: A long key id (16 hex digits) or a v4 (40) / v5 (64) fingerprint.
_KEY_ID = re.compile(r"^(?:[0-9A-F]{16}|[0-9A-F]{40}|[0-9A-F]{64})$")

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_BUCKET_RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_BUCKET_RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")


def check_database_name(name: object) -> str:
    """`name` if MongoDB accepts it as a database name; ValueError saying why not."""
    if not isinstance(name, str):
        # YAML reads `2024` or `on` as a number or a boolean.
        raise ValueError(f"database name {name!r} is not a string (quote it in YAML)")
    if not name:
        raise ValueError("a database name is empty")
    bad = sorted({c for c in name if c in _DB_NAME_FORBIDDEN})
    if bad:
        shown = " ".join("space" if c == " " else "NUL" if c == "\0" else c for c in bad)
        raise ValueError(f"database name {name!r} contains characters MongoDB forbids: {shown}")
    if not fits_database_name(name):
        raise ValueError(f"database name {name!r} is longer than {DATABASE_NAME_MAX_BYTES} bytes")
    return name


def fits_database_name(name: str) -> bool:
    """Whether `name` is within MongoDB's length limit for a database name."""
    return len(name.encode()) <= DATABASE_NAME_MAX_BYTES


def is_system_database(name: str) -> bool:
    return name in SYSTEM_DATABASES


def check_instance_name(name: str) -> str:
    if not _INSTANCE_NAME.match(name) or set(name) == {"."}:
        raise ValueError(f"instance name {name!r}: use 1-64 of A-Z a-z 0-9 . _ - (not only dots)")
    return name


def check_key_id(recipient: str) -> str:
    """The recipient as an upper-case long key id or fingerprint (spaces and a 0x prefix removed)."""
    key = recipient.replace(" ", "").upper().removeprefix("0X")
    if not _KEY_ID.match(key):
        raise ValueError(
            f"recipient {recipient!r}: give a full fingerprint (40 or 64 hex digits) or a "
            "long key id (16); short ids and e-mail addresses can match the wrong key"
        )
    return key


def check_bucket_name(name: str) -> str:
    rule = _bucket_rule_broken(name)
    if rule:
        raise ValueError(f"{name!r} is not a valid S3 bucket name: {rule}")
    return name


def _bucket_rule_broken(name: str) -> str | None:
    """The S3 general-purpose bucket naming rule `name` breaks, or None."""
    if not 3 <= len(name) <= 63:
        return "3 to 63 characters"
    if not _BUCKET.match(name):
        return "lowercase letters, digits, dots and hyphens, starting and ending with a letter or digit"
    if ".." in name or ".-" in name or "-." in name:
        return "no dot next to another dot or a hyphen"
    try:
        ipaddress.IPv4Address(name)
        return "not an IP address"
    except ValueError:
        pass
    if name.startswith(_BUCKET_RESERVED_PREFIXES) or name.endswith(_BUCKET_RESERVED_SUFFIXES):
        return "a reserved prefix or suffix"
    return None
