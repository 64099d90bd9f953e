"""glibc's malloc set for a long streamed run: MiB-sized buffers go back to the system when they are freed.

glibc serves each thread from an arena of its own (up to 8 per core) and keeps what is freed there, and it
raises its mmap threshold up to 32 MiB once a large block has been freed. A backup run passes MiB-sized buffers
(cursor replies, zstd jobs, 8 MiB parts) through tasks that Prefect runs in new threads, so every arena ends up
holding its own high-water mark and the process grows with each database backed up: measured, a flow run of
three 12 MB databases peaked at 236 MB, and at 181 MB with these settings (one tiny database: 144 MB either way).
"""

from __future__ import annotations

import ctypes
import sys

#: mallopt parameters (glibc's malloc.h).
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
#: Blocks of this size and more are mmap'ed, and unmapped when freed; fixed, so glibc no longer raises it.
MMAP_THRESHOLD = 1 << 20
#: Arenas the threads share: enough that two busy threads seldom wait on each other's lock.
MAX_ARENAS = 2


def return_large_buffers(*, mmap_threshold: int = MMAP_THRESHOLD, max_arenas: int = MAX_ARENAS) -> bool:
    """Applies the settings to this process (glibc only); True when glibc took them, False elsewhere.

    Call it early, before the threads that allocate start: arenas already made stay, later ones are capped.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # a libc without mallopt (musl)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt(M_MMAP_THRESHOLD, mmap_threshold) == 1 and mallopt(M_ARENA_MAX, max_arenas) == 1
