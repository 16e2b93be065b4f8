"""The live note cache: renders in priority order, reuses its disk layer, detects corruption."""

import time

import numpy as np
import pytest
from engine_fixtures import one_thread, tiny_preset  # noqa: F401

from sing_synth.cache import NoteCache
from sing_synth.renderer import NoteRenderer


@pytest.fixture
def renderer(tiny_preset, one_thread):  # noqa: F811
    return NoteRenderer(tiny_preset, device="cpu", output_rate=22050)


def test_renders_then_reuses_the_disk(tiny_preset, renderer, tmp_path):  # noqa: F811
    cache = NoteCache(tiny_preset, 22050, renderer, cache_dir=tmp_path).start()
    try:
        keys = cache.instrument_keys(2, pitches=range(58, 63))
        assert keys[0] == (2, 60, 3) and keys[1] == (2, 59, 3)  # middle of the keyboard, velocity 100 first
        cache.schedule(keys)
        assert cache.wait(keys, timeout=60)
        assert cache.rendered == len(keys) and cache.loaded == 0
        first = {k: cache.get(*k).copy() for k in keys}
        assert not cache.get(*keys[0]).flags.writeable  # the audio thread gets read-only arrays
    finally:
        cache.stop()
    again = NoteCache(tiny_preset, 22050, None, cache_dir=tmp_path).start()  # no renderer: disk only
    try:
        again.schedule(keys)
        assert again.wait(keys, timeout=30)
        assert again.loaded == len(keys) and again.rendered == 0
        for k in keys:
            np.testing.assert_array_equal(again.get(*k), first[k])
    finally:
        again.stop()
    assert not list(tmp_path.rglob("*.tmp"))  # written atomically


def test_a_corrupt_entry_is_detected_and_re_rendered(tiny_preset, renderer, tmp_path):  # noqa: F811
    key = (1, 60, 2)
    cache = NoteCache(tiny_preset, 22050, renderer, cache_dir=tmp_path).start()
    cache.schedule([key])
    assert cache.wait([key], timeout=60)
    cache.stop()
    good = cache.get(*key).copy()
    path = cache.path(key)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # flip bits inside the stored audio
    path.write_bytes(bytes(data))
    again = NoteCache(tiny_preset, 22050, renderer, cache_dir=tmp_path).start()
    try:
        again.schedule([key])
        assert again.wait([key], timeout=60)
        assert again.corrupt == 1 and again.rendered == 1
        np.testing.assert_allclose(again.get(*key), good, atol=1e-6)
    finally:
        again.stop()
    path.write_bytes(path.read_bytes()[:-4])  # truncated
    fourth = NoteCache(tiny_preset, 22050, renderer, cache_dir=tmp_path).start()
    fourth.schedule([key])
    assert fourth.wait([key], timeout=60)
    fourth.stop()
    assert fourth.corrupt == 1 and fourth.rendered == 1
    path.write_bytes(b"not a note file")
    third = NoteCache(tiny_preset, 22050, None, cache_dir=tmp_path).start()
    third.schedule([key])
    time.sleep(0.5)
    third.stop()
    assert third.corrupt == 1 and third.get(*key) is None and not path.exists()


def test_get_never_waits_and_requests_are_served_first(tiny_preset, renderer, tmp_path):  # noqa: F811
    cache = NoteCache(tiny_preset, 22050, renderer, cache_dir=tmp_path).start()
    try:
        t = time.perf_counter()
        assert cache.get(0, 64, 3) is None and cache.standin(0, 64, 3) is None
        cache.request(0, 64, 3)
        assert time.perf_counter() - t < 0.01
        assert cache.wait([(0, 64, 3)], timeout=60)
        # a request for a new instrument schedules all its notes behind it (program change)
        assert cache.wait(cache.instrument_keys(0, pitches=[60, 61]), timeout=60)
    finally:
        cache.stop()


def test_standin_is_the_nearest_rendered_pitch_re_pitched(tiny_preset, tmp_path):  # noqa: F811
    cache = NoteCache(tiny_preset, 22050, None, cache_dir=tmp_path)
    a, b = np.ones(10, np.float32), np.full(10, 2.0, np.float32)
    cache._store((0, 60, 3), a)
    cache._store((0, 65, 1), b)
    slot, ratio = cache.standin(0, 62, 3)
    assert cache.bank.note(slot)[0] == 1.0 and ratio == pytest.approx(2 ** (2 / 12))
    slot, ratio = cache.standin(0, 64, 3)  # nearest pitch wins over the same velocity class
    assert cache.bank.note(slot)[0] == 2.0 and ratio == pytest.approx(2 ** (-1 / 12))
    assert cache.standin(1, 60, 3) is None  # never another instrument


def test_memory_stays_within_its_budget_and_keeps_played_notes(tiny_preset, tmp_path):  # noqa: F811
    note = np.zeros(1000, np.float32)  # 4000 bytes
    cache = NoteCache(tiny_preset, 22050, None, cache_dir=tmp_path, memory_bytes=3 * note.nbytes)
    for p in range(60, 63):
        cache._store((0, p, 3), note)
    assert cache.get(0, 60, 3) is not None  # played: the audio thread marks it used
    for p in range(63, 66):
        cache._store((0, p, 3), note + p)
    assert cache.memory_used <= cache.memory_bytes and len(cache.slots) <= 3
    assert cache.get(0, 60, 3) is not None and cache.get(0, 61, 3) is None  # the unplayed, oldest went first
    again = NoteCache(tiny_preset, 22050, None, cache_dir=tmp_path).start()  # evicted notes stay on disk
    try:
        again.schedule([(0, 61, 3)])
        assert again.wait([(0, 61, 3)], timeout=10)
    finally:
        again.stop()


def test_renderer_threads_change_in_the_renderer_thread(tiny_preset, tmp_path):  # noqa: F811
    """Start-up renders with every free core; once playing, the live session asks for fewer."""
    import threading

    class Renderer:
        calls: list = []

        def render(self, keys):
            return [np.zeros(100, np.float32) for _ in keys]

        def set_threads(self, n):
            Renderer.calls.append((threading.current_thread().name, n))

    cache = NoteCache(tiny_preset, 22050, Renderer(), cache_dir=tmp_path).start()
    try:
        cache.schedule([(0, 60, 3)])
        assert cache.wait([(0, 60, 3)], timeout=10)
        assert Renderer.calls == []  # as built until told otherwise
        cache.threads = 1
        cache.schedule([(0, 61, 3), (0, 62, 3)])
        assert cache.wait([(0, 61, 3), (0, 62, 3)], timeout=10)
        assert Renderer.calls == [("sing-synth-renderer", 1)]  # once, in the renderer thread
    finally:
        cache.stop()
