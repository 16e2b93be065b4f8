"""Rendering within a memory budget: notes made in time order, dropped when idle, read again."""

from __future__ import annotations

import mido
import numpy as np
import pytest
from engine_fixtures import one_thread, tiny_preset, write_midi  # noqa: F401
from job_fixtures import song_file

from sing_synth import render
from sing_synth.audio_file import read_wav
from sing_synth.errors import ConfigError
from sing_synth.note_plan import NotePlan, min_capacity
from sing_synth.note_source import DictNoteSource
from sing_synth.testing.presets import general_midi_instruments, untrained_preset
from sing_synth.voices import pool_size

RATE = 8000
NOTE_BYTES = 4 * (4 * RATE + 2)  # a bank row of a 4 s note at 8 kHz


def test_the_plan_drops_the_note_needed_again_last_and_never_a_queued_one():
    a, b, c, d = (0, 60, 3), (0, 61, 3), (0, 62, 3), (0, 63, 3)
    source = DictNoteSource(rate=RATE)
    source.reserve(3, 10)
    made = []

    def make(keys):
        made.append(list(keys))
        for k in keys:
            source.add(k, np.full(10, k[1], np.float32))

    plan = NotePlan(source, [(0, [a]), (1, [b]), (2, [c]), (5, [d]), (6, [a]), (7, [c])], capacity=3, make=make)
    assert plan.prepare(0, 0) == 5 and made == [[a, b, c]]  # three fit: up to the note-on that does not
    # events 0-4 are queued and not played: d must wait for them
    assert plan.prepare(0, 5) == 5 and made == [[a, b, c]]
    # once they are played, b (never needed again) makes room; a and c are needed next
    assert plan.prepare(5, 5) == 1 << 62 and made[-1] == [d] and set(source.slots) == {a, c, d}
    assert plan.dropped == 1 and plan.made == 4 and source.bank.capacity == 3


def flood(path, notes: int, seed: int = 0):
    """``notes`` note-ons at the same instant over 16 channels and random programs (a 0.5 s song)."""
    rng = np.random.default_rng(seed)
    msgs = []
    for k in range(notes):
        ch = k % 16
        msgs.append(mido.Message("program_change", channel=ch, program=int(rng.integers(128)), time=0))
        msgs.append(mido.Message("note_on", channel=ch, note=int(rng.integers(128)), velocity=int(rng.integers(1, 128)),
                                 time=0))
    msgs.append(mido.Message("note_off", channel=0, note=60, time=480))
    return write_midi(path, [msgs], midi_type=0)


def test_a_song_past_the_budget_renders_the_same_notes_dropped_and_read_again(tmp_path, tiny_preset, one_thread):  # noqa: F811
    """Three channels up 48 pitches and down again, the piano pedalled half the time: 200-odd notes
    for 64 voices in room for 202 (what the voices may play, and a few), each dropped note needed
    again read back from the disk cache; the same audio as with every note in memory (blocks end
    elsewhere: float rounding differs by at most a step of 16 bits)."""
    msgs = [mido.Message("program_change", channel=1, program=48, time=0),
            mido.Message("program_change", channel=2, program=33, time=0)]
    for k, pitch in enumerate([*range(36, 84), *range(83, 35, -1)]):
        msgs += [mido.Message("control_change", control=64, value=127 * (k // 10 % 2), time=0),
                 mido.Message("note_on", note=pitch, velocity=30 + k % 90, time=0),
                 mido.Message("note_on", channel=1, note=pitch + 7, velocity=100, time=0),
                 mido.Message("note_on", channel=2, note=pitch - 12, velocity=60, time=0),
                 mido.Message("note_off", note=pitch, time=120), mido.Message("note_off", channel=1, note=pitch + 7),
                 mido.Message("note_off", channel=2, note=pitch - 12)]
    song = write_midi(tmp_path / "song.mid", [msgs])
    whole = render.render_file(song, tmp_path / "a.wav", tiny_preset, rate=RATE, model_device="cpu", fmt="float")
    room = min_capacity(pool_size(64)) + 8
    assert whole.notes_needed > room and whole.notes_dropped == 0
    source = DictNoteSource(rate=RATE)
    tight = render.render_file(song, tmp_path / "b.wav", tiny_preset, rate=RATE, model_device="cpu", fmt="float",
                               source=source, memory_bytes=room * NOTE_BYTES)
    assert tight.notes_dropped > 0 and tight.notes_loaded > tight.notes_needed  # read again from the disk cache
    assert source.bank.capacity == room and len(source) <= room  # the bank never grew past the budget
    assert tight.stats["notes_missing"] == 0 and tight.stats == whole.stats
    a, b = read_wav(tmp_path / "a.wav")[0], read_wav(tmp_path / "b.wav")[0]
    assert a.shape == b.shape and np.abs(a).max() > 0.01 and np.abs(a - b).max() <= 1 / 32767
    assert any("made as the song plays" in w for w in tight.warnings)


def test_a_flood_of_simultaneous_notes_stays_within_the_budget(tmp_path, one_thread):  # noqa: F811
    """10,000 simultaneous notes over 16 channels and programs once held 6 GB: a render holds at most
    its note budget (here 200 notes), whatever the file. Scaled down to 700 note-ons."""
    preset = untrained_preset(tmp_path / "gm", general_midi_instruments(), name="gm")
    song = flood(tmp_path / "flood.mid", 700)
    source = DictNoteSource(rate=RATE)
    res = render.render_file(song, tmp_path / "f.wav", preset, rate=RATE, model_device="cpu", source=source,
                             memory_bytes=200 * NOTE_BYTES, cache=False)
    assert res.notes_needed > 600 and res.notes_rendered >= res.notes_needed and res.notes_dropped > 400
    assert source.bank.capacity == 200 and source.bank.data.nbytes <= 201 * NOTE_BYTES
    assert res.stats["notes_missing"] == 0 and res.stats["notes_played"] > 600


def test_too_little_memory_for_the_polyphony_is_refused_up_front(tmp_path, tiny_preset):  # noqa: F811
    song = song_file(tmp_path / "song.mid")
    with pytest.raises(ConfigError, match=r"holds 10 notes at 8000 Hz, fewer than the 194 that 64 voices may play at "
                                          r"once; give more memory \(at least 0.02 GiB\) or lower the polyphony"):
        render.render_file(song, tmp_path / "x.wav", tiny_preset, rate=RATE, memory_bytes=10 * NOTE_BYTES)
    assert not (tmp_path / "x.wav").exists()
