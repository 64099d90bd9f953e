"""CRC-64 as mongo-tools computes it (Go hash/crc64, ECMA table) and as the archive stores it."""

from __future__ import annotations

import random

import pytest

from mongobackup.archive import Crc64, to_signed, to_unsigned

CHECK_INPUT = b"123456789"
CHECK_VALUE = 0x995DC9BBDF1939FA  # CRC-64/XZ == Go crc64.Checksum(data, crc64.MakeTable(crc64.ECMA))


def test_check_value() -> None:
    crc = Crc64()
    crc.update(CHECK_INPUT)
    assert crc.value == CHECK_VALUE
    assert crc.signed == CHECK_VALUE - (1 << 64)  # the top bit is set: stored as a negative int64


def test_no_bytes_is_zero() -> None:
    crc = Crc64()
    crc.update(b"")
    assert crc.value == 0 and crc.signed == 0


def test_incremental_equals_one_shot() -> None:
    rng = random.Random(7)
    data = rng.randbytes(200_000)
    whole = Crc64()
    whole.update(data)
    for _ in range(20):
        cuts = sorted(rng.sample(range(1, len(data)), rng.randint(1, 30)))
        pieces = Crc64()
        for start, end in zip([0, *cuts], [*cuts, len(data)], strict=True):
            pieces.update(data[start:end])
        assert pieces.value == whole.value


def test_accepts_memoryview_and_bytearray() -> None:
    a, b = Crc64(), Crc64()
    a.update(memoryview(b"xx" + CHECK_INPUT)[2:])
    b.update(bytearray(CHECK_INPUT))
    assert a.value == b.value == CHECK_VALUE


@pytest.mark.parametrize("unsigned", [0, 1, (1 << 63) - 1, 1 << 63, CHECK_VALUE, (1 << 64) - 1])
def test_signed_unsigned_round_trip(unsigned: int) -> None:
    signed = to_signed(unsigned)
    assert -(1 << 63) <= signed < (1 << 63)
    assert to_unsigned(signed) == unsigned
    assert signed.to_bytes(8, "little", signed=True) == unsigned.to_bytes(8, "little")
