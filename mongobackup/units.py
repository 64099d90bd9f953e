"""Byte sizes: the binary units the code sizes buffers in, and one way to show a size to a person."""

from __future__ import annotations

KIB = 1 << 10
MIB = 1 << 20


def human_size(size: float | None) -> str:
    """`812 B`, `1.5 KiB`, `12.0 MiB`, `3.2 GiB` (GiB is the largest unit); `-` for an unknown size."""
    if size is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")
