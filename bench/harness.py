"""What both benchmarks measure with: a child process run while its process tree is sampled (RSS, and the
files it writes), the child's environment, the JSON line a child reports with, and the command timers that
say where a dump's time went on SecantusDB.

A benchmark runs what it measures in a child process, so that its own allocations (data generation, the
report) never count; the child prints one JSON line at its end (`last_json_line`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
from pymongo import monitoring

from devservices import S3_TEST_CREDENTIALS, S3_TEST_REGION

MB = 1 << 20
PROJECT_ROOT = Path(__file__).resolve().parent.parent
#: The dummy moto credentials as a child's environment: the machine's own are never looked up.
MOTO_ENV = {
    "AWS_ACCESS_KEY_ID": S3_TEST_CREDENTIALS["aws_access_key_id"],
    "AWS_SECRET_ACCESS_KEY": S3_TEST_CREDENTIALS["aws_secret_access_key"],
    "AWS_DEFAULT_REGION": S3_TEST_REGION,
}
SAMPLE_INTERVAL_S = 0.02
CHILD_TIMEOUT_S = 3600.0
#: Sizes must span at least this factor: flatness between 16 and 24 MB would prove little.
MIN_SIZE_RATIO = 8

_WRITE_MODES = frozenset({"w", "a", "r+", "a+", "w+"})


# --- a child and its environment -------------------------------------------------------------------------------


def child_env(tmpdir: Path | None = None, **extra: str) -> dict[str, str]:
    """Our environment for a child: the dummy moto credentials only (never a profile of the machine), the
    project importable, and with `tmpdir` a TMPDIR of its own (so any temp file it makes lands where a
    DiskProbe looks)."""
    env = {**os.environ, **MOTO_ENV, **({"TMPDIR": str(tmpdir)} if tmpdir is not None else {}), **extra}
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        env.pop(name, None)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p)
    return env


@dataclass(frozen=True)
class TreeRun:
    """A child process run to its end while the RSS of its process tree was sampled (bytes, seconds)."""

    returncode: int
    wall_s: float  # the whole child process, start-up included
    peak_tree: int  # the largest root + descendants seen in one sample
    peak_root: int
    peak_descendants: int
    samples: int
    stdout: str
    stderr: str


def sample_tree(
    argv: Sequence[str],
    *,
    env: dict[str, str],
    what: str,
    cwd: Path = PROJECT_ROOT,
    interval_s: float = SAMPLE_INTERVAL_S,
    timeout_s: float = CHILD_TIMEOUT_S,
    on_sample: Callable[[psutil.Process], None] | None = None,
) -> TreeRun:
    """Runs `argv` to its end, sampling the RSS of its process tree every `interval_s`.

    `on_sample` gets the root process at every sample, for a caller that watches more than memory (the
    comparative benchmark probes disk use there). `what` names the child in a timeout error.
    """
    peak_tree = peak_root = peak_other = 0
    samples = 0
    # Files, not pipes: nothing reads them while sampling, and a chatty child must never block on a full pipe.
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(list(argv), cwd=cwd, env=env, stdout=out, stderr=err)
        try:
            root = psutil.Process(proc.pid)
            # Popen returns once the child has exec'd: this is its own program (for a python child, what
            # sys.executable resolves to), which a descendant shows only between its fork and its exec.
            root_exe = _exe_of(root)
            next_tick = started
            while proc.poll() is None:
                if time.perf_counter() - started > timeout_s:
                    raise TimeoutError(f"{what} still running after {timeout_s:.0f} s")
                root_rss, other_rss = _tree_rss(root, root_exe)
                if root_rss:
                    samples += 1
                    peak_root = max(peak_root, root_rss)
                    peak_other = max(peak_other, other_rss)
                    peak_tree = max(peak_tree, root_rss + other_rss)
                    if on_sample is not None:
                        on_sample(root)
                next_tick += interval_s
                time.sleep(max(0.0, next_tick - time.perf_counter()))
        finally:
            if proc.poll() is None:  # our own child, by its PID: a timeout or Ctrl-C must not orphan it
                proc.kill()
                proc.wait()
        wall = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    return TreeRun(proc.returncode, wall, peak_tree, peak_root, peak_other, samples, stdout, stderr)


def _exe_of(proc: psutil.Process) -> str:
    try:
        return proc.exe()
    except psutil.Error:  # already gone: the sampling loop will not run
        return ""


def _tree_rss(root: psutil.Process, root_exe: str) -> tuple[int, int]:
    """(RSS of the root, summed RSS of its descendants) in bytes; (0, 0) once the root is gone."""
    try:
        python_rss = root.memory_info().rss
        descendants = root.children(recursive=True)
    except psutil.Error:  # exited (or a zombie) between poll() and here
        return 0, 0
    other = 0
    for proc in descendants:
        with contextlib.suppress(psutil.Error):  # gpg finished between listing and reading it
            # Between fork and exec a child still shows python's pages (shared, not new memory): counting
            # them would double the tree for one sample. Such a child still has python's executable.
            if proc.exe() != root_exe:
                other += proc.memory_info().rss
    return python_rss, other


def checked(done: TreeRun, what: str) -> TreeRun:
    """`done`, or RuntimeError naming `what` with the tail of its output when it exited non-zero."""
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).splitlines()[-25:])
        raise RuntimeError(f"{what} exited with {done.returncode}:\n{tail}")
    return done


def last_json_line(stdout: str, what: str) -> dict[str, Any]:
    """The report a child printed last, as one JSON line; RuntimeError naming `what` when there is none."""
    for line in reversed(stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"{what} printed no JSON report; its stdout:\n{stdout[-2000:]}")


def load1() -> float:
    """The 1-minute load average: what else ran while a row was measured."""
    return round(os.getloadavg()[0], 2)


# --- disk use of a child's process tree ----------------------------------------------------------------------


class DiskProbe:
    """The peak bytes on disk a process tree is responsible for, sampled with its RSS (sample_tree's hook).

    Counted: every file under the watched folders (the child's TMPDIR, the old pipeline's work folder) and
    any other regular file a process of the tree holds open for writing. Not counted: its stdout/stderr
    (the harness's capture files), `ignore`d folders (the GnuPG home: gpg's own state, not backup data)
    and byte-code caches.
    """

    def __init__(self, watch: Sequence[Path] = (), ignore: Sequence[Path] = ()):
        self.watch = [Path(p).resolve() for p in watch]
        self.ignore = [Path(p).resolve() for p in ignore]
        self.peak = 0
        self.written: dict[str, int] = {}  # every file seen, with its largest size

    def __call__(self, root: psutil.Process) -> None:
        sizes: dict[str, int] = {}
        for folder in self.watch:
            sizes.update(files_under(folder))
        try:
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            procs = [root]
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                for opened in proc.open_files():
                    if opened.fd in (1, 2) or opened.mode not in _WRITE_MODES or self._skipped(opened.path):
                        continue
                    with contextlib.suppress(OSError):  # /proc/<pid>/fd/<n> still sizes a deleted file
                        sizes[opened.path] = os.stat(f"/proc/{proc.pid}/fd/{opened.fd}").st_size
        for path, size in sizes.items():
            self.written[path] = max(self.written.get(path, 0), size)
        self.peak = max(self.peak, sum(sizes.values()))

    def _skipped(self, path: str) -> bool:
        if "__pycache__" in path:
            return True
        resolved = Path(path)
        return any(resolved.is_relative_to(p) for p in (*self.watch, *self.ignore))


def files_under(folder: Path) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for parent, _dirs, files in os.walk(folder):
        for name in files:
            path = os.path.join(parent, name)
            with contextlib.suppress(OSError):  # removed between listing and stat
                sizes[path] = os.stat(path).st_size
    return sizes


# --- where a dump's time goes ------------------------------------------------------------------------------


class OplogTimer(monitoring.CommandListener):
    """Sums the time of commands on local.oplog.rs: SecantusDB answers them by scanning its whole oplog
    (seconds each), which says why the dump stage of a small database can take as long as a large one's."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._pending: set[int] = set()

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        # find names the collection under its own key, getMore under "collection".
        collection = event.command.get("collection" if event.command_name == "getMore" else event.command_name)
        if event.database_name == "local" and collection == "oplog.rs":
            self._pending.add(event.request_id)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        if event.request_id in self._pending:
            self._pending.discard(event.request_id)
            self.seconds += event.duration_micros / 1e6

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        self._pending.discard(event.request_id)


class CommandTimer(monitoring.CommandListener):
    """Sums the time of one command (collStats): SecantusDB answers it with a scan of the collection."""

    def __init__(self, command: str) -> None:
        self.command = command
        self.seconds = 0.0

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        pass

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        if event.command_name == self.command:
            self.seconds += event.duration_micros / 1e6

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


# --- command lines and results ----------------------------------------------------------------------------


def parse_sizes(text: str, *, at_least: int = 2, span: bool = True) -> list[int]:
    """`--sizes` of the benchmarks: comma-separated whole MB, at least `at_least` of them, spanning 8x unless
    `span` is False (a partial run, e.g. `bench.compare --only`, may measure a single size)."""
    try:
        sizes = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"--sizes: comma-separated whole MB, got {text!r}") from None
    spread = not span or (bool(sizes) and sizes[-1] >= MIN_SIZE_RATIO * sizes[0])
    if len(sizes) < max(1, at_least) or sizes[0] < 1 or not spread:
        wanted = f", the largest at least {MIN_SIZE_RATIO}x the smallest" if span else ""
        raise argparse.ArgumentTypeError(f"--sizes: at least {max(1, at_least)} sizes >= 1 MB{wanted}, got {text!r}")
    return sizes


def write_json(path: Path, document: dict[str, Any]) -> None:
    """Writes a benchmark's results document as indented JSON, creating bench/results/ when needed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")
