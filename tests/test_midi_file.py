"""Reading MIDI files: types 0 and 1, tempo maps, corrupt input, and the notes a song needs."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import mido
import numpy as np
import pytest
from engine_fixtures import KIT, PIANO, SAW, SINE, weightless_preset, write_midi

from sing_synth import events as ev
from sing_synth import midi_file
from sing_synth.channels import InstrumentMap
from sing_synth.errors import MidiFileError
from sing_synth.testing import songs

ROOT = Path(__file__).resolve().parent.parent
M = mido.Message


def test_type1_tempo_map_applies_to_every_track(tmp_path):
    # 120 bpm for one beat (0.5 s), then 60 bpm: beat 2 is at 1.5 s
    tempo = [
        mido.MetaMessage("set_tempo", tempo=500000, time=0),
        mido.MetaMessage("set_tempo", tempo=1000000, time=480),
    ]
    notes = [
        M("note_on", note=60, velocity=90, time=240),
        M("note_off", note=60, time=240),
        M("note_on", note=62, channel=3, velocity=80, time=480),
    ]
    path = write_midi(tmp_path / "a.mid", [tempo, notes])
    song = midi_file.read(path, rate=48000)
    assert song.type == 1 and song.tracks == 2 and song.tempo_changes == 1
    ons = song.events[song.events[:, 1] == ev.NOTE_ON]
    assert ons[:, 0].tolist() == [12000, 72000]  # 0.25 s and 1.5 s
    assert ons[:, 2].tolist() == [0, 3]
    assert song.events[song.events[:, 1] == ev.NOTE_OFF][0, 0] == 24000
    assert song.end == 72000 and song.duration == 1.5
    assert song.channels() == {0, 3}


def test_type0_with_all_message_kinds_and_rounding(tmp_path):
    msgs = [
        mido.MetaMessage("set_tempo", tempo=600000, time=0),
        M("program_change", channel=2, program=40, time=0),
        M("control_change", channel=2, control=64, value=127, time=1),
        M("pitchwheel", channel=2, pitch=-8192, time=1),
        M("note_on", channel=2, note=50, velocity=0, time=1),  # a note-off
        M("aftertouch", channel=2, value=3, time=1),  # ignored
        M("sysex", data=[0x7E, 0x7F, 0x09, 0x01], time=0),  # GM system on: a reset
    ]
    path = write_midi(tmp_path / "b.mid", [msgs], ticks_per_beat=96, midi_type=0)
    song = midi_file.read(path, rate=44100)
    tick = 0.6 / 96 * 44100  # 275.625 frames
    kinds = [tuple(r) for r in song.events.tolist()]
    assert kinds == [
        (0, ev.PROGRAM, 2, 40, 0),
        (round(tick), ev.CONTROL, 2, 64, 127),
        (round(2 * tick), ev.PITCH_BEND, 2, 0, 0),
        (round(3 * tick), ev.NOTE_OFF, 2, 50, 64),
        (round(4 * tick), ev.RESET, 0, 0, 0),
    ]


def test_smpte_division(tmp_path):
    path = write_midi(
        tmp_path / "s.mid", [[M("note_on", note=60, velocity=9, time=0), M("note_off", note=60, time=100)]]
    )
    data = bytearray(path.read_bytes())
    data[12:14] = bytes([256 - 25, 40])  # 25 frames per second, 40 ticks per frame: 1000 ticks per second
    path.write_bytes(bytes(data))
    song = midi_file.read(path, rate=10000)
    assert song.events[-1, 0] == 1000  # 100 ticks = 0.1 s


def test_missing_directory_and_not_midi(tmp_path):
    with pytest.raises(MidiFileError, match="no such file"):
        midi_file.read(tmp_path / "nope.mid")
    with pytest.raises(MidiFileError, match="is a directory"):
        midi_file.read(tmp_path)
    junk = tmp_path / "junk.mid"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes())
    with pytest.raises(MidiFileError, match="not a MIDI file"):
        midi_file.read(junk)
    (tmp_path / "empty.mid").write_bytes(b"")
    with pytest.raises(MidiFileError, match="not a MIDI file"):
        midi_file.read(tmp_path / "empty.mid")


def test_corrupt_body_after_a_valid_header(tmp_path):
    rng = np.random.default_rng(1)
    for k in range(20):
        body = rng.integers(0, 256, int(rng.integers(1, 400)), dtype=np.uint8).tobytes()
        path = tmp_path / f"c{k}.mid"
        path.write_bytes(b"MThd\x00\x00\x00\x06\x00\x01\x00\x01\x01\xe0MTrk" + len(body).to_bytes(4, "big") + body)
        try:
            midi_file.read(path)
        except MidiFileError as exc:
            assert "\n" not in str(exc)


def test_truncated_file_is_an_error_or_a_salvage_with_a_warning(tmp_path, caplog):
    notes = []
    for k in range(20):
        notes += [M("note_on", note=40 + k, velocity=90, time=0), M("note_off", note=40 + k, time=120)]
    full = write_midi(tmp_path / "full.mid", [notes])
    data = full.read_bytes()
    for cut in (14, 30, len(data) // 2, len(data) - 2):
        path = tmp_path / f"cut{cut}.mid"
        path.write_bytes(data[:cut])
        with pytest.raises(MidiFileError, match="truncated"):
            midi_file.read(path)
    path = tmp_path / "half.mid"
    path.write_bytes(data[: len(data) // 2 + 1])
    with caplog.at_level(logging.WARNING):
        song = midi_file.read(path, lenient=True)
    assert "truncated" in caplog.text and song.warnings
    ons = song.events[song.events[:, 1] == ev.NOTE_ON]
    assert 5 < len(ons) < 20
    assert ons[:, 3].tolist() == list(range(40, 40 + len(ons)))  # the complete messages, in order
    with pytest.raises(MidiFileError):
        (tmp_path / "h.mid").write_bytes(data[:10])
        midi_file.read(tmp_path / "h.mid", lenient=True)


def test_data_bytes_out_of_range_are_clipped_with_a_warning(tmp_path, caplog):
    path = write_midi(
        tmp_path / "d.mid", [[M("note_on", note=60, velocity=100, time=0), M("note_off", note=60, time=10)]]
    )
    data = path.read_bytes().replace(bytes([0x90, 60, 100]), bytes([0x90, 60, 200]))
    path.write_bytes(data)
    with caplog.at_level(logging.WARNING):
        song = midi_file.read(path)
    assert song.events[0].tolist() == [0, ev.NOTE_ON, 0, 60, 127]
    assert "clipped" in caplog.text


def test_type2_is_refused(tmp_path):
    mid = mido.MidiFile(type=2)
    mid.tracks.append(mido.MidiTrack([M("note_on", note=60, time=0)]))
    mid.save(tmp_path / "t2.mid")
    with pytest.raises(MidiFileError, match="type 2"):
        midi_file.read(tmp_path / "t2.mid")


def test_needed_notes_follow_programs_banks_drums_and_velocity_classes(tmp_path):
    msgs = [
        M("note_on", note=60, velocity=100, time=0),  # class 3 only (velocity 100 is a class)
        M("note_on", note=62, velocity=60, time=0),  # classes 1 and 2
        M("program_change", program=1, time=10),
        M("note_on", note=60, velocity=10, time=0),  # below 25: class 0
        M("control_change", control=0, value=8, time=0),  # bank 8 does not exist: bank 0
        M("program_change", program=2, time=0),
        M("note_on", note=100, velocity=127, time=0),  # above the range 36-96: rendered at 96
        M("control_change", control=67, value=127, time=0),  # soft pedal: 100 -> 70
        M("note_on", note=64, velocity=100, time=0),
        M("note_on", channel=9, note=38, velocity=127, time=0),
        M("note_on", channel=9, note=20, velocity=127, time=0),  # outside the kit: nothing
        M("note_on", channel=9, note=38, velocity=127, time=0),  # already needed
    ]
    song = midi_file.read(write_midi(tmp_path / "n.mid", [msgs]))
    needed = midi_file.needed_notes(song, InstrumentMap(weightless_preset()))
    assert needed == [
        (SINE, 60, 3),
        (SINE, 62, 1),
        (SINE, 62, 2),
        (SAW, 60, 0),
        (PIANO, 96, 4),
        (PIANO, 64, 1),
        (PIANO, 64, 2),
        (KIT, 38, 4),
    ]
    assert midi_file.drum_notes(song) == 3
    override = midi_file.needed_notes(song, InstrumentMap(weightless_preset(), instrument=PIANO))
    assert {k[0] for k in override} == {PIANO, KIT}


def test_examples_are_deterministic_and_cover_the_features(tmp_path):
    assert [p.name for p in songs.write_examples(tmp_path)] == ["demo.mid", "controllers.mid"]
    for name in ("demo.mid", "controllers.mid"):
        fresh = hashlib.sha256((tmp_path / name).read_bytes()).hexdigest()
        committed = ROOT / "examples" / name
        if committed.exists():
            assert hashlib.sha256(committed.read_bytes()).hexdigest() == fresh, f"regenerate examples/{name}"
    demo = midi_file.read(tmp_path / "demo.mid", rate=44100)
    assert 55 < demo.duration < 70 and demo.type == 1 and demo.tempo_changes >= 2
    e = demo.events
    assert {0, 1, 2, 3, 9} <= demo.channels()
    assert np.any((e[:, 1] == ev.CONTROL) & (e[:, 3] == ev.CC_SUSTAIN))
    assert np.any((e[:, 1] == ev.PITCH_BEND) & (e[:, 3] != 8192))
    ctl = midi_file.read(tmp_path / "controllers.mid")
    assert ctl.type == 0
    used = {int(c) for c in ctl.events[ctl.events[:, 1] == ev.CONTROL][:, 3]}
    assert {ev.CC_SOSTENUTO, ev.CC_SOFT, ev.CC_RPN_MSB, ev.CC_DATA_MSB, 120, 121, 123, ev.CC_PAN} <= used
    assert os.path.getsize(tmp_path / "demo.mid") < 20000
