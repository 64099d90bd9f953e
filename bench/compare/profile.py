"""Where the pipeline's time goes: the pipeline child run once under py-spy (a sampling profiler), its samples
put into stage buckets by the functions on each stack, and the CPU time the S3 server (moto, on the same
machine) spent meanwhile.

py-spy samples Python threads that are running (idle threads, waiting on a socket, a pipe or a lock, are
left out), so the shares say where our process spends its CPU, by stage. Work done outside Python is booked
to the Python frame that waits for it: zstd's compression to the read of the zstd stream, gpg's to the pipe
copy that feeds it, an upload to botocore. gpg and moto are processes of their own and are not sampled.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

#: Samples of the child's set-up, left out of the shares.
SETUP = "setup"
#: The buckets, in the order they are reported.
STAGES = ("zstd", "gpg pipe I/O", "hashing", "upload", "archive framing", "source", "other")

#: (stage, text in the frame's file, function names or None for any): the innermost frame that matches a rule
#: decides a sample's stage; the rules are tried in this order on each frame.
RULES: tuple[tuple[str, str, frozenset[str] | None], ...] = (
    ("hashing", "hashlib", None),
    ("hashing", "mongobackup/s3_upload.py", frozenset({"part_md5", "MultipartUpload._digest"})),
    # Filling parts (one copy of each byte), handing them to the workers, and the workers' requests.
    ("upload", "mongobackup/s3_upload.py", None),
    ("upload", "mongobackup/s3.py", None),
    ("upload", "concurrent/futures/", None),
    ("upload", "botocore/", None),
    ("upload", "boto3/", None),
    ("upload", "urllib3/", None),
    ("upload", "http/client.py", None),
    ("upload", "ssl.py", None),
    ("upload", "socket.py", None),
    ("archive framing", "mongobackup/archive/", None),
    ("archive framing", "bson/", None),
    ("source", "bench/compare/children.py", frozenset({"_GeneratedArchive.chunks"})),
    ("source", "mongobackup/streams.py", frozenset({"IteratorReader.readinto", "IteratorReader._next_chunk"})),
    # The Python frame that waits while zstd (a C library, with its own worker threads) compresses.
    ("zstd", "mongobackup/streams.py", frozenset({"CountingReader.readinto"})),
    ("zstd", "zstandard", None),
    ("gpg pipe I/O", "gnupg", None),
    ("gpg pipe I/O", "subprocess.py", None),
    # The child's own loop that generates its documents before the clock starts.
    (SETUP, "bench/compare/children.py", frozenset({"_child_pipeline"})),
)

#: (text in the file, function or None for any): a stack through any of these frames is the child's set-up,
#: not the pipeline: generating its documents before the clock starts, imports, making the S3 client and
#: the GnuPG wrapper.
SETUP_FRAMES: tuple[tuple[str, str | None], ...] = (
    ("bench/datasets.py", None),
    ("importlib", None),
    ("mongobackup/s3.py", "s3_client"),
    ("mongobackup/crypto.py", "Gpg.__init__"),
)


def parse_frame(frame: str) -> tuple[str, str]:
    """(function, file) of one py-spy frame, `function (path/file.py:123)`; the file is '' when absent."""
    name, sep, rest = frame.rpartition(" (")
    if not sep:
        return frame, ""
    return name, rest.rstrip(")").rsplit(":", 1)[0]


def stage_of(frames: Sequence[str]) -> str:
    """The stage of one sampled stack (frames root first, as py-spy writes them), or SETUP."""
    parsed = [parse_frame(frame) for frame in frames]
    for function, path in parsed:
        if any(where in path and name in (None, function) for where, name in SETUP_FRAMES):
            return SETUP
    for function, path in reversed(parsed):
        for stage, where, functions in RULES:
            if where in path and (functions is None or function in functions):
                return stage
    return "other"


def stage_shares(collapsed: str) -> tuple[dict[str, float], int]:
    """Share of samples per stage (0..1, every STAGES key) and the number of samples they are of, from
    py-spy's raw (collapsed stacks) output: one `frame;frame;... count` line per distinct stack. Samples of
    the child's set-up (generating its data, imports) are left out."""
    counts = dict.fromkeys((*STAGES, SETUP), 0)
    for line in collapsed.splitlines():
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [f for f in stack.split(";") if not f.startswith(("process ", "thread "))]
        if not frames:  # a process sampled between Python frames (starting, exiting)
            continue
        counts[stage_of(frames)] += int(count)
    total = sum(n for stage, n in counts.items() if stage != SETUP)
    return {stage: (counts[stage] / total if total else 0.0) for stage in STAGES}, total


@dataclass
class PipelineProfile:
    """The profile of one pipeline child run: shares by stage, or why there is none."""

    shares: dict[str, float] = field(default_factory=dict)
    samples: int = 0
    seconds: float = 0.0
    server_cpu_s: float | None = None  # the S3 server's CPU time (user + system) during the run
    our_cpu_s: float | None = None  # the child's process tree's, gpg included
    unavailable: str | None = None
    store: str = "moto"  # the S3 server the run stored to

    def line(self) -> str:
        if self.unavailable:
            return f"pipeline profile: not taken ({self.unavailable})"
        parts = ", ".join(f"{stage} {share:.0%}" for stage, share in self.shares.items() if share >= 0.005)
        text = f"pipeline profile (py-spy, {self.samples} samples of our Python threads): {parts}"
        if self.server_cpu_s is not None:
            text += f"; CPU of the S3 server ({self.store}) over the run: {self.server_cpu_s:.1f} s"
            if self.our_cpu_s:
                text += f" vs ours (child + gpg) {self.our_cpu_s:.1f} s"
            text += f" in {self.seconds:.1f} s of wall on this machine's cores"
        return text


def py_spy() -> str | None:
    """The py-spy binary beside our Python, or on PATH; None when it is not installed."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


def profiled_argv(argv: Sequence[str], output: Path, *, binary: str, rate: int = 200) -> list[str]:
    """`argv` run under py-spy, writing collapsed stacks to `output` (non-blocking: the child is not paused)."""
    return [binary, "record", "--format", "raw", "--rate", str(rate), "--subprocesses", "--nonblocking"] + [
        "-o",
        str(output),
        "--",
        *argv,
    ]


#: What `can_attach` samples: an interpreter that runs for a second.
PROBE_CHILD = "import time; time.sleep(1)"


def can_attach(binary: str) -> str | None:
    """None when py-spy can sample a child here, else why not (e.g. ptrace is not permitted)."""
    try:
        done = subprocess.run(
            # A child that lives long enough to be found: py-spy fails on one that exits before it attaches,
            # which under load `-c pass` did one time in two.
            [binary, "record", "--format", "raw", "-o", "/dev/null", "--", sys.executable, "-c", PROBE_CHILD],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"py-spy did not run: {exc}"
    if done.returncode != 0:
        return "py-spy cannot sample here: " + (done.stderr.strip().splitlines() or ["no reason given"])[-1]
    return None
