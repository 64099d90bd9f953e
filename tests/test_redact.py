"""Redaction: no password or token survives into a log line, an error or an artifact."""

from __future__ import annotations

import pytest

from mongobackup.redact import redact_text, redact_uri


@pytest.mark.parametrize(
    ("uri", "redacted"),
    [
        # Plain, SRV, several hosts, options.
        ("mongodb://app:hunter2@db1:27017/admin", "mongodb://app:***@db1:27017/admin"),
        (
            "mongodb+srv://app:hunter2@cluster0.ab1cd.mongodb.net/?retryWrites=true&w=majority",
            "mongodb+srv://app:***@cluster0.ab1cd.mongodb.net/?retryWrites=true&w=majority",
        ),
        (
            "mongodb://backup:pw@h1:27017,h2:27018,h3/shop?replicaSet=rs0&readPreference=secondary",
            "mongodb://backup:***@h1:27017,h2:27018,h3/shop?replicaSet=rs0&readPreference=secondary",
        ),
        (
            "mongodb://backup:pw@[::1]:27017,[fe80::1%25eth0]:27018/",
            "mongodb://backup:***@[::1]:27017,[fe80::1%25eth0]:27018/",
        ),
        # Percent-encoded specials, and the same specials left unescaped (invalid, but it reaches error messages).
        ("mongodb://app:p%40ss%3Aw%2Frd%3F@h/", "mongodb://app:***@h/"),
        ("mongodb://us%40er:pw@h/", "mongodb://us%40er:***@h/"),
        ("mongodb://app:p@ss@h/db", "mongodb://app:***@h/db"),
        ("mongodb://app:pa/ss@h/db", "mongodb://app:***@h/db"),
        ("mongodb://app:pa?ss@h/db", "mongodb://app:***@h/db"),
        ("mongodb://app:1234/5@h/db", "mongodb://app:***@h/db"),
        ("mongodb://app:p:w:d@h/", "mongodb://app:***@h/"),
        ("mongodb://app:@h/", "mongodb://app:***@h/"),
        # Secrets in options.
        (
            "mongodb://h/?tls=true&tlsCertificateKeyFilePassword=k3y;w=1",
            "mongodb://h/?tls=true&tlsCertificateKeyFilePassword=***;w=1",
        ),
        (
            "mongodb://h/?authMechanism=MONGODB-AWS&authMechanismProperties=AWS_SESSION_TOKEN:tok,SERVICE_NAME:m",
            "mongodb://h/?authMechanism=MONGODB-AWS&authMechanismProperties=AWS_SESSION_TOKEN:***,SERVICE_NAME:m",
        ),
        (
            "mongodb://h/?authMechanismProperties=AWS_SESSION_TOKEN%3Atok",
            "mongodb://h/?authMechanismProperties=AWS_SESSION_TOKEN:***",
        ),
        # HTTP(S): InfluxDB 1.x passes u/p as query options; signed URLs carry signatures.
        (
            "https://admin:s3cret@influx.example.com:8086/write?db=backups",
            "https://admin:***@influx.example.com:8086/write?db=backups",
        ),
        ("http://influx:8086/write?db=backups&u=writer&p=s3cret", "http://influx:8086/write?db=backups&u=writer&p=***"),
        (
            "https://s3.example.com/b/k?X-Amz-Credential=AKIA&X-Amz-Signature=abc&x=1",
            "https://s3.example.com/b/k?X-Amz-Credential=***&X-Amz-Signature=***&x=1",
        ),
        ("https://h/api?access_token=abc#frag", "https://h/api?access_token=***#frag"),
        # Nothing secret: unchanged.
        ("mongodb://127.0.0.1:27101/?directConnection=true", "mongodb://127.0.0.1:27101/?directConnection=true"),
        ("mongodb://reader@h1,h2/?authSource=admin", "mongodb://reader@h1,h2/?authSource=admin"),
        ("https://host:8443/search?mail=a@b", "https://host:8443/search?mail=a@b"),
        ("mongodb://h1:1,h2:2/?appname=me@home", "mongodb://h1:1,h2:2/?appname=me@home"),
        # No scheme: still userinfo.
        ("app:hunter2@db1:27017", "app:***@db1:27017"),
    ],
)
def test_redact_uri(uri, redacted):
    assert redact_uri(uri) == redacted


@pytest.mark.parametrize("password", ["hunter2", "p@ss", "a/b?c#d", "x:y", "100%", "sp ace"])
def test_no_encoded_password_survives(password):
    from urllib.parse import quote

    uri = f"mongodb://app:{quote(password, safe='')}@h1,h2/db?replicaSet=rs"
    out = redact_uri(uri)
    assert out == "mongodb://app:***@h1,h2/db?replicaSet=rs"
    assert quote(password, safe="") not in out


def test_redact_text_finds_uris_anywhere():
    text = (
        "ServerSelectionTimeoutError: 'mongodb://app:hunter2@db1:27017/?replicaSet=rs', "
        "then (https://u:pw@influx:8086/write?db=b&p=pw2)\nand mongodb+srv://x:y@c.net"
    )
    out = redact_text(text)
    for secret in ("hunter2", ":pw@", "pw2", ":y@"):
        assert secret not in out
    assert "'mongodb://app:***@db1:27017/?replicaSet=rs'," in out
    assert "mongodb+srv://x:***@c.net" in out
    assert out.startswith("ServerSelectionTimeoutError: ")


def test_redact_text_replaces_known_secrets_raw_and_encoded():
    secrets = ["t0k/en+1", "short", ""]
    text = "token t0k/en+1 in a header, t0k%2Fen%2B1 in a URL, t0k%2Fen%2B1 again, and short"
    assert redact_text(text, secrets) == "token *** in a header, *** in a URL, *** again, and ***"


def test_longer_secret_masked_whole():
    assert redact_text("abcdef abc", ["abc", "abcdef"]) == "*** ***"


def test_text_without_secrets_is_unchanged():
    text = "instance rs-a, database shop: 12 documents in 0.3 s (mongodb://127.0.0.1:27101/)"
    assert redact_text(text, ()) == text
