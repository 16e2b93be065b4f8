"""The note cache's file format: one rendered note per file, versioned and checksummed.

A note file is a 20-byte header, ``<8sIII``: the magic ``SINGNOTE``, the format version, the
sample count and the CRC-32 of the sample bytes; then the samples, float32 little-endian. A
reader refuses a file whose magic, version or size does not match its header, or whose samples
do not match the checksum (CRC-32: fast enough to check a warm start's hundreds of megabytes,
and enough to catch a corrupt or truncated file). Writers write a temporary file beside the
note and rename it over the note's name, so a reader never sees half a file.
"""

from __future__ import annotations

import os
import sys
import threading
import zlib
from pathlib import Path
from struct import Struct

import numpy as np

HEADER = Struct("<8sIII")  # magic, format version, samples, CRC-32 of the sample bytes
MAGIC, VERSION = b"SINGNOTE", 1


def read_header(f) -> tuple[int, int] | None:
    """``(samples, crc)`` from the header of the open binary file ``f`` (left at the first
    sample), or None when ``f`` is not a note file of this version or its size does not match."""
    head = f.read(HEADER.size)
    if len(head) != HEADER.size:
        return None
    magic, version, n, crc = HEADER.unpack(head)
    if magic != MAGIC or version != VERSION or n <= 0:
        return None
    if os.fstat(f.fileno()).st_size != HEADER.size + 4 * n:
        return None
    return n, crc


def read_samples(f, row: np.ndarray, crc: int) -> bool:
    """Read the samples straight into the contiguous float32 array ``row`` (as long as the note,
    no intermediate buffer); False when they are short or do not match ``crc``."""
    if f.readinto(memoryview(row).cast("B")) != 4 * len(row) or zlib.crc32(row) != crc:
        return False
    if sys.byteorder == "big":
        row.byteswap(inplace=True)  # the files are little-endian
    return True


def write(path: str | os.PathLike, wav: np.ndarray) -> None:
    """Write a note file atomically (creating its directory); on an error or a stop nothing is left behind."""
    path = Path(path)
    body = memoryview(np.ascontiguousarray(wav, dtype="<f4").reshape(-1)).cast("B")  # no copy when it is one
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")  # one per writer
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            f.write(HEADER.pack(MAGIC, VERSION, len(body) // 4, zlib.crc32(body)))
            f.write(body)
        os.replace(tmp, path)
    except BaseException:  # an OSError, or a signal's KeyboardInterrupt: nothing left behind
        tmp.unlink(missing_ok=True)
        raise
