"""A render's notes made by the model: the same notes whether a thread beside the model resamples
and stores them (a core left free) or each batch is followed by that work on every core."""

import os

import numpy as np
from engine_fixtures import one_thread, tiny_preset  # noqa: F401

from sing_synth.disk_cache import DiskCache
from sing_synth.note_source import DictNoteSource
from sing_synth.render_notes import _overlap, load_notes, render_notes
from sing_synth.renderer import NoteRenderer

CORES = len(os.sched_getaffinity(0))


def made(renderer, keys, store):
    source = DictNoteSource(rate=renderer.output_rate)
    assert render_notes(source, keys, renderer, chunk=3, store=store) == len(keys)
    assert render_notes(source, keys, renderer, chunk=3, store=store) == 0  # nothing missing the second time
    return source.notes


def test_notes_are_the_same_with_and_without_a_thread_beside_the_model(tiny_preset, one_thread, tmp_path):  # noqa: F811
    renderer = NoteRenderer(tiny_preset, device="cpu", output_rate=22050, threads=1)
    ids = sorted(renderer.ids)
    keys = [(ids[k % len(ids)], 40 + 3 * k, k % 2) for k in range(8)]  # three batches, the last one short
    cache = DiskCache(tmp_path)

    renderer.threads = 1  # a core left free beside the model (where there are two)
    assert _overlap(renderer) == (CORES > 1)
    beside = made(renderer, keys, cache.notes(tiny_preset, 22050))

    renderer.threads = max(2, CORES)  # the model's threads take every core: resampling shared among them
    assert not _overlap(renderer)
    after = made(renderer, keys, cache.notes(tiny_preset, 22050, precision="check"))

    assert sorted(beside) == sorted(after) == sorted(keys)
    for key in keys:
        assert len(beside[key]) == renderer.note_samples and np.abs(beside[key]).max() > 0
        np.testing.assert_array_equal(beside[key], after[key])
    # both wrote every note to their store, and it reads back the same
    for precision in ("float32", "check"):
        source = DictNoteSource(rate=22050)
        assert load_notes(source, keys, cache.notes(tiny_preset, 22050, precision=precision)) == len(keys)
        for key in keys:
            np.testing.assert_array_equal(source.notes[key], after[key])
