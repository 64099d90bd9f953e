"""CRC-64 as the mongodump archive stores it.

mongo-tools hashes every document of a namespace with Go's `hash/crc64` and its ECMA table: the ECMA-182
polynomial, reflected, all-ones initial value and final xor. Those are the CRC-64/XZ parameters, whose
check value for b"123456789" is 0x995dc9bbdf1939fa. The EOF header carries the result as a BSON int64, so
the archive holds the unsigned sum reinterpreted as a signed 64-bit integer.

The arithmetic is done by `fastcrc` (compiled): a pure-Python table loop runs at a few MB/s and would be
the slowest stage of a backup. `fastcrc.crc64.xz(data, initial=previous)` continues a running CRC, which
is what lets us hash a namespace document by document without holding it.
"""

from __future__ import annotations

from fastcrc import crc64 as _crc64

_MASK = (1 << 64) - 1
_SIGN = 1 << 63


def to_signed(value: int) -> int:
    """The unsigned 64-bit `value` as the archive's signed int64 (same bits)."""
    value &= _MASK
    return value - (1 << 64) if value & _SIGN else value


def to_unsigned(value: int) -> int:
    """A signed int64 read from an archive as the unsigned CRC it encodes (same bits)."""
    return value & _MASK


class Crc64:
    """A running CRC-64/XZ (Go's crc64 ECMA) over bytes fed in any number of pieces."""

    __slots__ = ("_value",)

    def __init__(self) -> None:
        self._value = 0  # the CRC of no bytes; fastcrc continues from a previous *final* value

    def update(self, data: bytes | bytearray | memoryview) -> None:
        """Extend the CRC with `data`: hashing a+b in two calls equals hashing a+b at once."""
        if data:
            self._value = _crc64.xz(data, initial=self._value)

    @property
    def value(self) -> int:
        """The CRC so far, unsigned (what Go's `Sum64()` returns)."""
        return self._value

    @property
    def signed(self) -> int:
        """The CRC so far as the archive stores it: a signed int64."""
        return to_signed(self._value)

    def __repr__(self) -> str:
        return f"Crc64(0x{self._value:016x})"
