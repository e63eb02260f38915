"""Cover images: small, real baseline JPEGs (a vertical two-colour gradient), the same for the same id.

The mock hands out `imageUrl` / `image_url` values as the real services do, and a client may download and
decode them. Each cover is 64 x 64 pixels, YCbCr 4:4:4, one 8 x 8 block per colour component and MCU;
every block is flat (its DC coefficient only), so encoding needs no DCT: a few hundred bytes in
microseconds. The colours derive from the id, so two tracks get two different covers.

    {base}/files/{created_ms}-0-{id}/{name}.jpeg
"""

from __future__ import annotations

import functools
import hashlib
import re
import struct

CONTENT_TYPE = "image/jpeg"
SIZE = 64  # pixels, each side
_UNSAFE_NAME = re.compile(r"[^0-9A-Za-z_.-]")

# The standard luminance DC table (ITU T.81 Annex K.3): code lengths and values for categories 0..11.
_DC_BITS = (0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0)
_DC_VALUES = tuple(range(12))
# Flat blocks have no AC coefficient: a table with one symbol, end-of-block (0x00), coded "0".
_AC_BITS = (1,) + (0,) * 15
_AC_VALUES = (0x00,)


def _codes(bits: tuple[int, ...], values: tuple[int, ...]) -> dict[int, tuple[int, int]]:
    """Canonical Huffman codes (value -> (code, length)) from a DHT's counts per length."""
    table, code, index = {}, 0, 0
    for length, count in enumerate(bits, start=1):
        for _ in range(count):
            table[values[index]] = (code, length)
            code, index = code + 1, index + 1
        code <<= 1
    return table


_DC_CODES = _codes(_DC_BITS, _DC_VALUES)
_EOB = _codes(_AC_BITS, _AC_VALUES)[0x00]


def file_path(file_id: str, name: str, created_ms: int) -> str:
    """The path (under the mock's origin) of the cover of `file_id`, handed out at `created_ms`."""
    return f"/files/{created_ms}-0-{file_id}/{_UNSAFE_NAME.sub('_', name)}.jpeg"


def _colours(seed: str) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    digest = hashlib.sha256(seed.encode()).digest()
    return (digest[0], digest[1], digest[2]), (digest[3], digest[4], digest[5])


def _ycbcr(rgb: tuple[float, float, float]) -> tuple[int, int, int]:
    r, g, b = rgb
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = 128 - 0.168736 * r - 0.331264 * g + 0.5 * b
    cr = 128 + 0.5 * r - 0.418688 * g - 0.081312 * b
    return tuple(min(255, max(0, round(v))) for v in (y, cb, cr))  # type: ignore[return-value]


class _Bits:
    """An entropy-coded segment: bits packed MSB first, each 0xFF byte followed by a stuffed 0x00."""

    def __init__(self) -> None:
        self.out = bytearray()
        self.acc = 0
        self.count = 0

    def put(self, code: int, length: int) -> None:
        self.acc = (self.acc << length) | code
        self.count += length
        while self.count >= 8:
            self.count -= 8
            byte = (self.acc >> self.count) & 0xFF
            self.out.append(byte)
            if byte == 0xFF:
                self.out.append(0x00)
        self.acc &= (1 << self.count) - 1

    def close(self) -> bytes:
        if self.count:  # pad the last byte with 1 bits, as T.81 F.1.2.3 asks
            self.put((1 << (8 - self.count)) - 1, 8 - self.count)
        return bytes(self.out)


def _segment(marker: int, payload: bytes) -> bytes:
    return struct.pack(">HH", marker, len(payload) + 2) + payload


@functools.lru_cache(maxsize=256)
def jpeg_bytes(seed: str) -> bytes:
    """The cover for `seed`: a 64 x 64 baseline JPEG fading from one colour to another, top to bottom."""
    top, bottom = _colours(seed)
    rows = SIZE // 8
    bits = _Bits()
    previous = [0, 0, 0]
    for row in range(rows):
        mix = row / (rows - 1)
        colour = _ycbcr(tuple(a + (b - a) * mix for a, b in zip(top, bottom)))  # type: ignore[arg-type]
        for _column in range(SIZE // 8):
            for component in range(3):
                dc = 8 * (colour[component] - 128)  # a flat block's DC coefficient (quantiser 1)
                diff, previous[component] = dc - previous[component], dc
                category = abs(diff).bit_length()
                bits.put(*_DC_CODES[category])
                if category:
                    bits.put(diff if diff > 0 else diff + (1 << category) - 1, category)
                bits.put(*_EOB)
    quant = _segment(0xFFDB, b"\x00" + bytes([1] * 64))
    frame = _segment(0xFFC0, struct.pack(">BHHB", 8, SIZE, SIZE, 3) + b"\x01\x11\x00\x02\x11\x00\x03\x11\x00")
    dc_table = _segment(0xFFC4, b"\x00" + bytes(_DC_BITS) + bytes(_DC_VALUES))
    ac_table = _segment(0xFFC4, b"\x10" + bytes(_AC_BITS) + bytes(_AC_VALUES))
    scan = _segment(0xFFDA, b"\x03\x01\x00\x02\x00\x03\x00\x00\x3f\x00")
    jfif = _segment(0xFFE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00")
    return b"\xff\xd8" + jfif + quant + frame + dc_table + ac_table + scan + bits.close() + b"\xff\xd9"
