"""With `engine: mongodump` the MongoDB URI (and its password) never reaches a command line: every local user
can read /proc/<pid>/cmdline (`ps`). It goes to mongodump through a `--config` file, mode 0600, in a private
temporary folder that is gone after the run, whether the dump succeeded or failed.

The local server runs without authentication, so an `appName` marker stands in for the password: what is
checked is that no part of the URI is on any command line while the real mongodump (under wine) runs.
"""

from __future__ import annotations

import os
import shlex
import stat
import uuid
from pathlib import Path

import pytest
from pymongo import MongoClient

from mongobackup.errors import SourceError
from mongobackup.mongodump import MongodumpDump
from tests.helpers import stock_mongodump_script


def command_lines() -> dict[int, str]:
    """Every readable process's command line, by PID."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue  # gone meanwhile
    return found


def marked_uri(uri: str, marker: str) -> str:
    return f"{uri}{'&' if '?' in uri else '/?'}appName={marker}"


def config_path_in(line: str) -> Path:
    arg = next(a for a in line.split() if a.startswith("--config="))
    return Path(arg.removeprefix("--config="))


@pytest.fixture
def stock_mongodump(mongo_tools, tmp_path) -> Path:
    """The real mongodump (under wine) behind a script, as a user who has it installed would run it."""
    return stock_mongodump_script(mongo_tools, tmp_path / "bin")


def test_the_uri_is_in_a_private_config_file_not_on_the_command_line(services, stock_mongodump):
    database = f"secret_{uuid.uuid4().hex[:8]}"
    marker = f"pw-{uuid.uuid4().hex}"
    with MongoClient(services.mongo_uri("mongo-b")) as client:
        # Enough data that mongodump is still writing (blocked on its pipe) while we look.
        client[database].c.insert_many([{"n": n, "pad": "x" * 1000} for n in range(4000)])
    dump = MongodumpDump(
        marked_uri(services.mongo_uri("mongo-b"), marker), "rs-b", database, command=(str(stock_mongodump),)
    )
    chunks = dump.chunks()
    first = next(chunks)  # the archive's header: mongodump is connected and running
    assert first
    leaking = [line for line in command_lines().values() if marker in line]
    assert leaking == [], leaking
    running = {pid: line for pid, line in command_lines().items() if "mongodump" in line and "--config=" in line}
    assert running, "mongodump is not running with --config"
    config = config_path_in(next(iter(running.values())))
    assert stat.S_IMODE(config.stat().st_mode) == 0o600 and config.stat().st_uid == os.getuid()
    assert stat.S_IMODE(config.parent.stat().st_mode) == 0o700
    assert marker in config.read_text()
    rest = sum(len(chunk) for chunk in chunks)
    assert rest > 4000 * 1000 and dump.summary.complete
    assert dump.summary.namespaces[0].documents == 4000
    assert not config.parent.exists()


def test_the_config_file_is_removed_when_mongodump_fails(services, tmp_path):
    marker = f"pw-{uuid.uuid4().hex}"
    seen = tmp_path / "argv"
    failing = tmp_path / "mongodump"
    failing.write_text(f'#!/bin/sh\necho "$@" > {shlex.quote(str(seen))}\necho "Failed: no" >&2\nexit 1\n')
    failing.chmod(0o755)
    dump = MongodumpDump(marked_uri(services.mongo_uri("mongo-b"), marker), "rs-b", "db", command=(str(failing),))
    with pytest.raises(SourceError, match="instance rs-b, database db: .* exited with 1"):
        list(dump.chunks())
    argv = seen.read_text()
    assert marker not in argv
    assert not config_path_in(argv).parent.exists()


def test_the_config_file_is_removed_when_the_pipeline_stops_early(services, stock_mongodump):
    database = f"secret_{uuid.uuid4().hex[:8]}"
    with MongoClient(services.mongo_uri("mongo-b")) as client:
        client[database].c.insert_many([{"n": n, "pad": "x" * 1000} for n in range(4000)])
    dump = MongodumpDump(services.mongo_uri("mongo-b"), "rs-b", database, command=(str(stock_mongodump),))
    chunks = dump.chunks()
    next(chunks)
    line = next(line for line in command_lines().values() if "mongodump" in line and "--config=" in line)
    config = config_path_in(line)
    assert config.exists()
    chunks.close()  # an upload failed: the transfer stops reading
    assert not config.parent.exists()
