"""Note sources: one stand-in rule, so offline rendering and live play choose the same stand-ins."""

import itertools

import numpy as np
import pytest
from engine_fixtures import (
    SINE,
    HarmonicSource,
    make_engine,
    note,
    run_engine,
    tiny_preset,  # noqa: F401
)

from sing_synth import dsp
from sing_synth.cache import NoteCache
from sing_synth.note_source import COMMON_CLASSES, DictNoteSource, standin

RATE = 22050


def test_the_rule_nearest_pitch_lower_first_requested_class_then_common_ones():
    slots = {(0, 60, 3): 1, (0, 66, 1): 2, (0, 54, 0): 3, (0, 54, 2): 4, (1, 61, 3): 5}
    assert standin(slots, 0, 61, 3) == (1, dsp.semitone_ratio(1))  # nearest pitch, another instrument never
    assert standin(slots, 0, 63, 1) == (1, dsp.semitone_ratio(3))  # 60 and 66 are as near: the lower one
    assert standin(slots, 0, 65, 1) == (2, dsp.semitone_ratio(-1))  # its own class where the pitch has it
    assert standin(slots, 0, 55, 0)[0] == 3  # requested class first ...
    assert standin(slots, 0, 55, 4)[0] == 4  # ... else the most played class the pitch has (75 before 25)
    assert COMMON_CLASSES.index(2) < COMMON_CLASSES.index(0)
    assert standin(slots, 2, 60, 3) is None and standin({}, 0, 60, 3) is None
    assert standin({(0, 0, 3): 1}, 0, 127, 3) == (1, dsp.semitone_ratio(127))  # the whole keyboard is searched


def test_offline_and_live_sources_choose_the_same_stand_ins(tiny_preset, tmp_path):  # noqa: F811
    keys = [(0, 48, 3), (0, 60, 1), (0, 64, 4), (0, 72, 0), (0, 73, 2)]
    offline = DictNoteSource(rate=RATE)
    live = NoteCache(tiny_preset, RATE, cache_dir=tmp_path)
    for n, key in enumerate(keys):
        wav = np.full(100, n + 1, np.float32)  # each note tells which one it is
        offline.add(key, wav)
        live.store(key, wav)
    for pitch, vclass in itertools.product(range(30, 90), range(5)):
        a, b = offline.standin(0, pitch, vclass), live.standin(0, pitch, vclass)
        if (0, pitch, vclass) in offline:
            continue
        assert offline.bank.note(a[0])[0] == live.bank.note(b[0])[0] and a[1] == b[1], (pitch, vclass)


def test_a_missing_note_sounds_the_same_rendered_offline_or_live(tiny_preset, tmp_path):  # noqa: F811
    """The engine plays the stand-in the source chooses: the offline source and the live cache,
    holding the same notes, give the same samples for notes neither has."""
    tones = HarmonicSource(RATE)
    held = [(SINE, 55, 1), (SINE, 67, 4)]
    offline, live = DictNoteSource(rate=RATE), NoteCache(tiny_preset, RATE, cache_dir=tmp_path)
    for key in held:
        offline.add(key, tones.get(*key))
        live.store(key, tones.get(*key))
    events = note(0.0, 60, 100, 0.4) + note(0.1, 64, 40, 0.4)  # neither source has pitch 60 or 64
    a = run_engine(make_engine(offline, rate=RATE), events, 0.6)
    b = run_engine(make_engine(live, rate=RATE), events, 0.6)
    assert np.max(np.abs(a)) > 0.05
    np.testing.assert_array_equal(a, b)
    assert set(offline.requested) == {(SINE, 60, 3), (SINE, 64, 0), (SINE, 64, 1)}  # the classes they play
    assert {live.requests.popleft() for _ in range(len(live.requests))} == set(offline.requested)


def test_dict_source_replaces_notes_and_lists_the_missing():
    source = DictNoteSource({(0, 60, 3): np.ones(10, np.float32)}, rate=RATE)
    old = source.find(0, 60, 3)
    source.add((0, 60, 3), np.full(20, 2.0, np.float32))
    assert len(source) == 1 and source.get(0, 60, 3).tolist() == [2.0] * 20
    assert source.find(0, 60, 3) != old and source.bank.free_slots >= 1  # the old slot is free again
    assert source.missing([(0, 60, 3), (0, 61, 3), [0, 62, 3]]) == [(0, 61, 3), [0, 62, 3]]
    assert source.find(0, 61, 3) == -1 and source.get(0, 61, 3) is None
    with pytest.raises(ValueError):
        source.notes[(0, 60, 3)][0] = 1.0  # read-only views of the bank
