"""The live note cache: memory within its budget, the disk layer, the stand-in rule (no thread here)."""

import numpy as np
import pytest
from engine_fixtures import tiny_preset  # noqa: F401

from sing_synth.cache import NoteCache


def test_standin_is_the_nearest_rendered_pitch_re_pitched(tiny_preset, tmp_path):  # noqa: F811
    cache = NoteCache(tiny_preset, 22050, cache_dir=tmp_path)
    a, b = np.ones(10, np.float32), np.full(10, 2.0, np.float32)
    cache.store((0, 60, 3), a)
    cache.store((0, 65, 1), b)
    slot, ratio = cache.standin(0, 62, 3)
    assert cache.bank.note(slot)[0] == 1.0 and ratio == pytest.approx(2 ** (2 / 12))
    slot, ratio = cache.standin(0, 64, 3)  # nearest pitch wins over the same velocity class
    assert cache.bank.note(slot)[0] == 2.0 and ratio == pytest.approx(2 ** (-1 / 12))
    assert cache.standin(1, 60, 3) is None  # never another instrument


def test_memory_stays_within_its_budget_and_keeps_played_notes(tiny_preset, tmp_path):  # noqa: F811
    note = np.zeros(1000, np.float32)  # 4000 bytes
    cache = NoteCache(tiny_preset, 22050, cache_dir=tmp_path, memory_bytes=3 * note.nbytes)
    for p in range(60, 63):
        cache.store((0, p, 3), note)
    assert cache.get(0, 60, 3) is not None  # played: the audio thread marks it used
    for p in range(63, 66):
        cache.store((0, p, 3), note + p)
    assert cache.memory_used <= cache.memory_bytes and len(cache.slots) <= 3
    assert cache.get(0, 60, 3) is not None and cache.get(0, 61, 3) is None  # the unplayed, oldest went first


def test_stored_notes_load_back_and_damaged_files_are_deleted(tiny_preset, tmp_path):  # noqa: F811
    wav = np.linspace(-1, 1, 4000, dtype=np.float32)
    NoteCache(tiny_preset, 22050, cache_dir=tmp_path).store((2, 40, 0), wav)
    cache = NoteCache(tiny_preset, 22050, cache_dir=tmp_path)
    assert cache.load((2, 40, 0)) and cache.loaded == 1
    np.testing.assert_array_equal(cache.get(2, 40, 0), wav)
    assert not cache.load((2, 41, 0)) and cache.corrupt == 0  # not on disk: to be rendered
    path = cache.path((2, 40, 0))
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01  # a flipped bit in the samples: the checksum differs
    path.write_bytes(bytes(data))
    fresh = NoteCache(tiny_preset, 22050, cache_dir=tmp_path)
    assert not fresh.load((2, 40, 0)) and fresh.corrupt == 1 and not path.exists()
    assert fresh.bank.free_slots == fresh.bank.capacity and not fresh.slots  # its slot is free again
    path.write_bytes(b"SINGNOTE" + bytes(16))  # a header of no version this reader knows
    assert not fresh.load((2, 40, 0)) and fresh.corrupt == 2 and not path.exists()


def test_requests_reach_the_filler_without_blocking(tiny_preset, tmp_path):  # noqa: F811
    cache = NoteCache(tiny_preset, 22050, cache_dir=tmp_path)
    for k in range(2000):  # more than the queue holds: the oldest requests give way
        cache.request(0, k % 128, 3)
    assert cache.wake.is_set() and len(cache.requests) == cache.requests.maxlen
    assert cache.requests[-1] == (0, 1999 % 128, 3)
