"""The renderer thread of live play: renders in priority order, reuses the disk, replaces corrupt notes."""

import threading
import time

import numpy as np
import pytest
from engine_fixtures import one_thread, tiny_preset  # noqa: F401

from sing_synth.cache import NoteCache
from sing_synth.cache_filler import CacheFiller
from sing_synth.renderer import NoteRenderer


@pytest.fixture
def renderer(tiny_preset, one_thread):  # noqa: F811
    return NoteRenderer(tiny_preset, device="cpu", output_rate=22050)


def filled(preset, renderer, directory, **kwargs) -> tuple[NoteCache, CacheFiller]:
    """A cache at 22.05 kHz in ``directory`` and its running filler."""
    cache = NoteCache(preset, 22050, cache_dir=directory, **kwargs)
    return cache, CacheFiller(cache, renderer).start()


def load_once(preset, renderer, directory, key) -> tuple[NoteCache, CacheFiller]:
    """A fresh cache that got ``key`` (from disk or rendered), and its stopped filler."""
    cache, filler = filled(preset, renderer, directory)
    filler.schedule([key])
    assert filler.wait([key], timeout=60)
    filler.stop()
    return cache, filler


def test_renders_then_reuses_the_disk(tiny_preset, renderer, tmp_path):  # noqa: F811
    cache, filler = filled(tiny_preset, renderer, tmp_path)
    try:
        keys = filler.instrument_keys(2, pitches=range(58, 63))
        assert keys[0] == (2, 60, 3) and keys[1] == (2, 59, 3)  # middle of the keyboard, velocity 100 first
        filler.schedule(keys)
        assert filler.wait(keys, timeout=60)
        assert filler.rendered == len(keys) and cache.loaded == 0
        first = {k: cache.get(*k).copy() for k in keys}
        assert not cache.get(*keys[0]).flags.writeable  # the audio thread gets read-only arrays
    finally:
        filler.stop()
    again, filler = filled(tiny_preset, None, tmp_path)  # no renderer: disk only
    try:
        filler.schedule(keys)
        assert filler.wait(keys, timeout=30)
        assert again.loaded == len(keys) and filler.rendered == 0
        for k in keys:
            np.testing.assert_array_equal(again.get(*k), first[k])
    finally:
        filler.stop()
    assert not list(tmp_path.rglob("*.tmp"))  # written atomically


def test_a_corrupt_entry_is_detected_and_re_rendered(tiny_preset, renderer, tmp_path):  # noqa: F811
    key = (1, 60, 2)
    good = load_once(tiny_preset, renderer, tmp_path, key)[0].get(*key).copy()
    path = NoteCache(tiny_preset, 22050, cache_dir=tmp_path).path(key)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # flip bits inside the stored audio
    path.write_bytes(bytes(data))
    again, filler = load_once(tiny_preset, renderer, tmp_path, key)
    assert again.corrupt == 1 and filler.rendered == 1
    np.testing.assert_allclose(again.get(*key), good, atol=1e-6)
    path.write_bytes(path.read_bytes()[:-4])  # truncated
    fourth, filler = load_once(tiny_preset, renderer, tmp_path, key)
    assert fourth.corrupt == 1 and filler.rendered == 1
    path.write_bytes(b"not a note file")
    third, filler = filled(tiny_preset, None, tmp_path)
    filler.schedule([key])
    time.sleep(0.5)
    filler.stop()
    assert third.corrupt == 1 and third.get(*key) is None and not path.exists()


def test_get_never_waits_and_requests_are_served_first(tiny_preset, renderer, tmp_path):  # noqa: F811
    cache, filler = filled(tiny_preset, renderer, tmp_path)
    try:
        t = time.perf_counter()
        assert cache.get(0, 64, 3) is None and cache.standin(0, 64, 3) is None
        cache.request(0, 64, 3)
        assert time.perf_counter() - t < 0.01
        assert filler.wait([(0, 64, 3)], timeout=60)
        # a request for a new instrument schedules all its notes behind it (program change)
        assert filler.wait(filler.instrument_keys(0, pitches=[60, 61]), timeout=60)
    finally:
        filler.stop()


def test_evicted_notes_stay_on_disk(tiny_preset, tmp_path):  # noqa: F811
    note = np.zeros(1000, np.float32)
    cache = NoteCache(tiny_preset, 22050, cache_dir=tmp_path, memory_bytes=3 * note.nbytes)
    for p in range(60, 66):
        cache.store((0, p, 3), note + p)
    assert cache.get(0, 61, 3) is None  # evicted from memory
    again, filler = filled(tiny_preset, None, tmp_path)
    try:
        filler.schedule([(0, 61, 3)])
        assert filler.wait([(0, 61, 3)], timeout=10)
        assert again.get(0, 61, 3)[0] == 61.0
    finally:
        filler.stop()


def test_renderer_threads_change_in_the_renderer_thread(tiny_preset, tmp_path):  # noqa: F811
    """Start-up renders with every free core; once playing, the live session asks for fewer."""

    class Renderer:
        calls: list = []

        def render(self, keys):
            return [np.zeros(100, np.float32) for _ in keys]

        def set_threads(self, n):
            Renderer.calls.append((threading.current_thread().name, n))

    cache, filler = filled(tiny_preset, Renderer(), tmp_path)
    try:
        filler.schedule([(0, 60, 3)])
        assert filler.wait([(0, 60, 3)], timeout=10)
        assert Renderer.calls == []  # as built until told otherwise
        filler.threads = 1
        filler.schedule([(0, 61, 3), (0, 62, 3)])
        assert filler.wait([(0, 61, 3), (0, 62, 3)], timeout=10)
        assert Renderer.calls == [("sing-synth-renderer", 1)]  # once, in the renderer thread
    finally:
        filler.stop()


def test_a_model_factory_is_built_beside_the_disk_reads_and_its_error_reported(tiny_preset, tmp_path):  # noqa: F811
    def broken():
        raise RuntimeError("no model here")

    cache, filler = filled(tiny_preset, broken, tmp_path)
    try:
        filler.build()  # a start that knows notes are missing builds the model beside the disk reads
        with pytest.raises(RuntimeError, match="no model here"):
            filler.wait([(0, 60, 3)], timeout=10, model=True)
        assert filler.model_ready.is_set()
    finally:
        filler.stop()


def test_a_directory_and_a_short_note_in_the_cache_are_rendered_again(tiny_preset, renderer, tmp_path):  # noqa: F811
    """A directory where a note file should be once killed the renderer thread (IsADirectoryError),
    and then no other corrupt note was rendered again; a note file of the wrong length with a
    valid header and checksum was played as a 0.06 s note."""
    keys = [(0, 60, 3), (0, 61, 3), (0, 62, 3)]
    first, filler = filled(tiny_preset, renderer, tmp_path)
    try:
        filler.schedule(keys)
        assert filler.wait(keys, timeout=60)
    finally:
        filler.stop()
    note_file = first.disk.path(keys[0])
    note_file.unlink()
    (note_file / "x").mkdir(parents=True)  # a directory in its place, and not an empty one
    from sing_synth import note_file as format

    format.write(first.disk.path(keys[1]), np.zeros(1000, np.float32))  # well formed, but 1000 samples
    length = tiny_preset.note_samples(22050)
    cache, filler = filled(tiny_preset, renderer, tmp_path, note_samples=length)
    try:
        filler.schedule(keys)
        assert filler.wait(keys, timeout=60)
        assert filler.error is None and filler.rendered == 2 and cache.loaded == 1 and cache.corrupt == 2
        for k in keys:
            assert len(cache.get(*k)) == length
            np.testing.assert_allclose(cache.get(*k), first.get(*k), atol=1e-6)
    finally:
        filler.stop()
    with open(first.disk.path(keys[1]), "rb") as f:
        assert format.read_header(f)[0] == length  # replaced by the whole note


def test_notes_found_on_disk_never_build_the_model(tiny_preset, renderer, tmp_path):  # noqa: F811
    keys = [(0, p, 3) for p in range(58, 63)]
    load_once(tiny_preset, renderer, tmp_path, keys[0])  # one note on disk, the rest not
    built = []

    def factory():
        built.append(True)
        return renderer

    cache, filler = filled(tiny_preset, factory, tmp_path)
    try:
        assert filler.missing_on_disk(keys) == keys[1:]
        filler.schedule(keys[:1])
        assert filler.wait(keys[:1], timeout=30)
        time.sleep(0.6)  # idle: the model is not built ahead of need
        assert not built and not filler.model_ready.is_set() and cache.loaded == 1
        filler.schedule(keys[1:])  # notes the disk lacks: the first batch that needs it builds it
        assert filler.wait(keys, timeout=60) and built == [True] and filler.rendered == 4
    finally:
        filler.stop()


class RecordingRenderer(NoteRenderer):
    """A real renderer that notes the order in which it is asked for notes."""

    order: list

    def render(self, notes):
        self.order = [*getattr(self, "order", []), *notes]
        return super().render(notes)


def test_the_latest_request_is_made_first(tiny_preset, one_thread, tmp_path):  # noqa: F811
    """What is played now matters most: a knob turned through morph positions, or a run of new
    notes, asks for several notes at once; the last asked for is made first, each alone."""
    renderer = RecordingRenderer(tiny_preset, device="cpu", output_rate=22050)
    cache = NoteCache(tiny_preset, 22050, cache_dir=tmp_path)
    filler = CacheFiller(cache, renderer)
    keys = [(1, 60, 3), (1, 62, 3), (1, 64, 3)]
    for key in keys:
        cache.request(*key)
    filler.start()
    try:
        assert filler.wait(keys, timeout=60)
        assert renderer.order[:3] == keys[::-1]
    finally:
        filler.stop()


def test_an_instrument_s_notes_leave_out_the_keys_its_tuning_map_plays_from_others(tiny_preset, tmp_path):  # noqa: F811
    from dataclasses import replace

    strings = replace(tiny_preset.instruments[1], played_from=((28, 35, 36), (60, 60, 61)))  # range 28-96
    preset = replace(tiny_preset, instruments=[strings if i.id == 1 else i for i in tiny_preset.instruments])
    filler = CacheFiller(NoteCache(preset, 22050, cache_dir=tmp_path))
    keys = filler.instrument_keys(1)
    assert {p for _, p, _ in keys} == set(range(36, 97)) - {60}
    assert len(keys) == len(set(keys)) == 60 * len(preset.velocities)
    assert [p for _, p, _ in keys[:2]] == [59, 61]  # the middle of the keyboard first: 60 is played from 61
