"""The note cache on disk: keys, sizes, least-recently-used eviction, damage, clearing, many processes."""

import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from engine_fixtures import tiny_preset  # noqa: F401

from sing_synth import disk_cache
from sing_synth.disk_cache import DiskCache, parse_size
from sing_synth.errors import ConfigError

NOTE = 1000  # samples: 4020 bytes a file


def read(store, key):
    row = np.zeros(NOTE, np.float32)
    return store.read(key, lambda n: row if n == NOTE else row[:0]), row


def test_sizes_parse_in_binary_units(monkeypatch):
    assert parse_size("4G") == 4 << 30 and parse_size("500M") == 500 << 20 and parse_size("1.5GiB") == 3 << 29
    assert parse_size("800MB") == 800 << 20 and parse_size("4096") == 4096 and parse_size(0) == 0
    for bad in ("lots", "-1G", "4X"):
        with pytest.raises(ConfigError, match="cache size"):
            parse_size(bad)
    monkeypatch.setenv("SING_SYNTH_CACHE_SIZE", "2G")
    assert DiskCache().max_bytes == 2 << 30 and DiskCache(max_bytes="1M").max_bytes == 1 << 20
    monkeypatch.delenv("SING_SYNTH_CACHE_SIZE")
    assert DiskCache().max_bytes == disk_cache.DEFAULT_SIZE


def test_notes_are_keyed_by_preset_rate_and_precision(tiny_preset, tmp_path):  # noqa: F811
    cache = DiskCache(tmp_path)
    a, b = cache.notes(tiny_preset, 44100), cache.notes(tiny_preset, 48000)
    c = cache.notes(tiny_preset, 44100, "bfloat16")
    assert len({a.dir, b.dir, c.dir}) == 3 and a.dir.name == f"{tiny_preset.sha256[:16]}-44100"
    assert a.path((2, 60, 3)) == tmp_path / a.dir.name / "2" / "60-3.note"
    a.write((2, 60, 3), np.ones(NOTE, np.float32))
    assert (2, 60, 3) in a and (2, 60, 3) not in b and (2, 60, 3) not in c
    assert read(b, (2, 60, 3))[0] == disk_cache.MISSING
    found, row = read(a, (2, 60, 3))
    assert found == disk_cache.LOADED and (row == 1).all()
    from sing_synth.preset import Preset

    assert cache.notes(Preset(tmp_path, "unsaved", None, []), 44100) is None  # no hash: not cached


def test_least_recently_used_notes_go_first(tiny_preset, tmp_path):  # noqa: F811
    size = 4 * NOTE + 20
    store = DiskCache(tmp_path).notes(tiny_preset, 22050)
    cache = DiskCache(tmp_path, max_bytes=3 * size)
    for p in range(5):
        store.write((0, 60 + p, 3), np.full(NOTE, p, np.float32))
        t = time.time_ns() - (10 - p) * 10**9  # written in order, a second apart
        os.utime(store.path((0, 60 + p, 3)), ns=(t, t))
    assert read(store, (0, 60, 3))[0] == disk_cache.LOADED  # reading a note is a use: the oldest is now 61
    assert cache.size == 5 * size
    assert cache.trim() == 2 * size and cache.size == 3 * size
    assert [(0, p, 3) in store for p in range(60, 65)] == [True, False, False, True, True]
    other = DiskCache(tmp_path).notes(tiny_preset, 48000)  # one bound for every preset and rate
    other.write((1, 40, 0), np.zeros(NOTE, np.float32))
    cache.trim()
    assert cache.size == 3 * size and (1, 40, 0) in other and (0, 63, 3) not in store
    assert cache.usage() == {store.dir.name: (2, 2 * size), other.dir.name: (1, size)}


def test_the_bound_holds_while_writing(tiny_preset, tmp_path):  # noqa: F811
    size = 4 * NOTE + 20
    cache = DiskCache(tmp_path, max_bytes=8 * size)
    store = cache.notes(tiny_preset, 22050)
    for p in range(40):  # checked every eighth of the bound written
        store.write((0, p, 3), np.zeros(NOTE, np.float32))
        assert cache.size <= 9 * size
    assert all((0, p, 3) in store for p in range(39, 32, -1))  # the newest stay
    assert not DiskCache(tmp_path, max_bytes=0).notes(tiny_preset, 22050).write((0, 100, 3), np.zeros(NOTE, np.float32))


@pytest.mark.parametrize("damage", ["truncated", "bit", "foreign", "empty"])
def test_a_damaged_note_is_reported_and_deleted(tiny_preset, tmp_path, damage):  # noqa: F811
    store = DiskCache(tmp_path).notes(tiny_preset, 22050)
    key = (0, 60, 3)
    store.write(key, np.linspace(-1, 1, NOTE, dtype=np.float32))
    path = store.path(key)
    data = bytearray(path.read_bytes())
    if damage == "truncated":
        data = data[: len(data) // 2]
    elif damage == "bit":
        data[-10] ^= 0x04
    elif damage == "foreign":
        data = b"RIFF" + data[4:]
    else:
        data = b""
    path.write_bytes(bytes(data))
    assert read(store, key)[0] == disk_cache.DAMAGED and not path.exists() and store.damaged == 1
    assert read(store, key)[0] == disk_cache.MISSING


def test_clear_and_trim_delete_only_the_caches_own_files(tiny_preset, tmp_path):  # noqa: F811
    cache = DiskCache(tmp_path)
    store = cache.notes(tiny_preset, 22050)
    store.write((0, 60, 3), np.zeros(NOTE, np.float32))
    (tmp_path / "notes.txt").write_text("mine")  # a cache directory pointed at a folder of other things
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "60-3.note").write_text("not ours either")
    (store.dir / "0" / "readme").write_text("nor this")
    stale = store.dir / "0" / ".61-3.note.1.2.tmp"  # a crashed writer's leftover
    stale.write_bytes(b"x" * 10)
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    cache.trim()
    assert not stale.exists() and (0, 60, 3) in store
    assert cache.clear() == 4 * NOTE + 20
    assert not store.dir.exists() and cache.size == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "photos"]
    assert (tmp_path / "photos" / "60-3.note").exists()
    assert DiskCache(tmp_path / "none").usage() == {} and DiskCache(tmp_path / "none").clear() == 0


WRITER = """
import sys, time, numpy as np
from sing_synth.disk_cache import DiskCache
from sing_synth.preset import load
store = DiskCache(sys.argv[1], max_bytes=int(sys.argv[3])).notes(load(sys.argv[2]), 22050)
rng = np.random.default_rng(int(sys.argv[4]))
end = time.monotonic() + float(sys.argv[5])
while time.monotonic() < end:
    store.write((0, int(rng.integers(8)), 3), np.full(50000, rng.standard_normal(), np.float32))
"""

READER = """
import sys, time, numpy as np
from sing_synth import disk_cache
from sing_synth.disk_cache import DiskCache
from sing_synth.preset import load
store = DiskCache(sys.argv[1]).notes(load(sys.argv[2]), 22050)
row = np.zeros(50000, np.float32)
seen = {}
end = time.monotonic() + float(sys.argv[3])
while time.monotonic() < end:
    for p in range(8):
        found = store.read((0, p, 3), lambda n: row if n == len(row) else None)
        seen[found] = seen.get(found, 0) + 1
        assert found in (disk_cache.LOADED, disk_cache.MISSING), found
        if found == disk_cache.LOADED:
            assert (row == row[0]).all(), "a note mixed from two writes"
print(seen.get(disk_cache.LOADED, 0), seen.get(disk_cache.MISSING, 0))
"""


def test_processes_writing_evicting_and_reading_at_once_never_see_half_a_note(tiny_preset, tmp_path):  # noqa: F811
    root, preset, seconds = str(tmp_path / "cache"), str(tiny_preset.path), "3"
    size = 50000 * 4 + 20
    run = [sys.executable, "-c"]
    writers = [
        subprocess.Popen([*run, textwrap.dedent(WRITER), root, preset, str(bound), str(seed), seconds])
        for seed, bound in ((1, 100 * size), (2, 3 * size))  # the second one also evicts, all the time
    ]
    reader = subprocess.run([*run, textwrap.dedent(READER), root, preset, seconds], capture_output=True, text=True,
                            timeout=120)
    for w in writers:
        assert w.wait(60) == 0
    assert reader.returncode == 0, reader.stderr[-2000:]
    loaded, missing = map(int, reader.stdout.split())
    assert loaded > 10  # and every one of them whole: one write's samples, checksum verified
    assert not list((tmp_path / "cache").rglob("*.tmp"))


def test_the_cache_the_render_and_the_command_line_import_no_torch(tiny_preset):  # noqa: F811
    """What a render or a live start needs before any note is missing: the disk cache, the render
    and live modules, the command line, the preset's metadata and its instrument lookup."""
    code = (
        "import sys; import sing_synth.disk_cache, sing_synth.render, sing_synth.cache_filler, sing_synth.live, "
        "sing_synth.cli; from sing_synth import preset; p = preset.load(sys.argv[1]); p.instrument('strings'); "
        "p.gm_instrument(0, drums=True); assert 'torch' not in sys.modules, 'torch imported'"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(tiny_preset.path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
