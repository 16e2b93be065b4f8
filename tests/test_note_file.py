"""The note cache's file format: header layout, versions, sizes and checksums, atomic writes."""

import struct
import zlib

import numpy as np
import pytest

from sing_synth import note_file


def read(path, length=None):
    with open(path, "rb") as f:
        header = note_file.read_header(f)
        if header is None:
            return None
        n, crc = header
        row = np.zeros(length or n, np.float32)
        return row if note_file.read_samples(f, row, crc) else False


def test_layout_and_round_trip(tmp_path):
    wav = np.linspace(-1, 1, 1000, dtype=np.float32)
    path = tmp_path / "7" / "60-3.note"  # its directory is made
    note_file.write(path, wav)
    data = path.read_bytes()
    assert len(data) == 20 + 4 * 1000
    assert struct.unpack("<8sIII", data[:20]) == (b"SINGNOTE", 1, 1000, zlib.crc32(data[20:]))
    assert np.frombuffer(data[20:], "<f4").tolist() == wav.tolist()
    np.testing.assert_array_equal(read(path), wav)
    assert list(tmp_path.rglob("*.tmp")) == []


@pytest.mark.parametrize("damage", ["version", "magic", "short", "long", "bit", "empty"])
def test_damaged_or_foreign_files_are_refused(tmp_path, damage):
    path = tmp_path / "n.note"
    note_file.write(path, np.ones(100, np.float32))
    data = bytearray(path.read_bytes())
    if damage == "version":
        data[8:12] = struct.pack("<I", 2)
    elif damage == "magic":
        data[:8] = b"RIFFWAVE"
    elif damage == "short":
        data = data[:-4]
    elif damage == "long":
        data += b"\0\0\0\0"
    elif damage == "bit":
        data[30] ^= 0x10
    else:
        data = b""
    path.write_bytes(bytes(data))
    assert read(path) is (False if damage == "bit" else None)  # a bad header never reads samples


def test_a_failed_write_leaves_nothing(tmp_path):
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(OSError):
        note_file.write(tmp_path / "file" / "60-3.note", np.ones(10, np.float32))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]
