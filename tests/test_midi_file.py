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


# Hostile files (issue 14): each of these once gave a traceback or a silently wrong song ---------
def hex_file(path, text: str):
    path.write_bytes(bytes.fromhex(text.replace(" ", "")))
    return path


NOTE_BODY = "0090 3c64 8360 803c 4000 ff2f00"  # a note at 0, released after 480 ticks, end of track


def test_an_impossible_key_signature_is_skipped_not_fatal(tmp_path):
    """``FF 59 02 09 00``: nine sharps. The reader does not use key signatures: strict and lenient
    read the song."""
    path = hex_file(tmp_path / "k.mid", "4d546864 00000006 0001 0001 01e0 4d54726b 00000013 00ff5902 0900 " + NOTE_BODY)
    for lenient in (False, True):
        song = midi_file.read(path, rate=1000, lenient=lenient)
        assert song.events.tolist() == [[0, ev.NOTE_ON, 0, 60, 100], [500, ev.NOTE_OFF, 0, 60, 64]]
        assert song.warnings == []


def test_a_header_declaring_32768_tracks_is_not_read_as_none(tmp_path):
    """Sizes are unsigned: 0x8000 tracks is 32768, not -32768 (which once read as zero tracks and a
    silent song)."""
    path = hex_file(tmp_path / "t.mid", "4d546864 00000006 0001 8000 01e0 4d54726b 0000000d " + NOTE_BODY)
    with pytest.raises(MidiFileError, match="declares 32768 tracks but the file holds 1") as info:
        midi_file.read(path)
    assert info.value.setting == "lenient" and "\n" not in str(info.value)
    song = midi_file.read(path, rate=1000, lenient=True)
    assert song.note_count() == 1 and any("32768 tracks" in w for w in song.warnings)


@pytest.mark.parametrize("fmt", ["0003", "ffff"])
def test_an_unknown_format_is_refused_or_read_as_type_1_leniently(tmp_path, fmt):
    path = hex_file(tmp_path / "f.mid", f"4d546864 00000006 {fmt} 0001 01e0 4d54726b 0000000d " + NOTE_BODY)
    with pytest.raises(MidiFileError, match=f"format {int(fmt, 16)}, not 0, 1 or 2"):
        midi_file.read(path)
    song = midi_file.read(path, lenient=True)
    assert song.type == 1 and song.note_count() == 1 and "read as format 1" in song.warnings[0]


@pytest.mark.parametrize(
    "division, message",
    [("8028", "rate byte 0x80 is -128 frames per second, not -24, -25, -29 or -30"),
     ("e700", "0 ticks per frame"), ("0000", "0 ticks per beat")],
)
def test_an_unreadable_time_division_is_refused(tmp_path, division, message):
    path = hex_file(tmp_path / "d.mid", f"4d546864 00000006 0001 0001 {division} 4d54726b 0000000d " + NOTE_BODY)
    for lenient in (False, True):
        with pytest.raises(MidiFileError, match=message):
            midi_file.read(path, lenient=lenient)


def test_a_song_longer_than_the_limit_is_refused_with_its_length(tmp_path):
    """38 bytes whose only note starts after 10 hours (120 bpm, 480 ticks per beat)."""
    ticks = 10 * 3600 * 2 * 480
    vlq = bytes([0x80 | (ticks >> 21) & 0x7F, 0x80 | (ticks >> 14) & 0x7F, 0x80 | (ticks >> 7) & 0x7F, ticks & 0x7F])
    body = vlq + bytes.fromhex("903c64 8360 803c40 00ff2f00")
    path = tmp_path / "long.mid"
    path.write_bytes(bytes.fromhex("4d546864 00000006 0001 0001 01e0 4d54726b") + len(body).to_bytes(4, "big") + body)
    assert path.stat().st_size == 38
    with pytest.raises(MidiFileError, match=r"long.mid lasts 10:00:01 .*longest song rendered \(4:00:00\)") as info:
        midi_file.read(path, max_length=4 * 3600)
    assert info.value.setting == "max_length"
    assert midi_file.read(path, rate=100, max_length=11 * 3600).events[0, 0] == 3600000  # the limit lifted
    # the longest delta time at the slowest tempo and 1 tick per beat (143 years) is refused whatever
    # the limit: no render is that long
    path = hex_file(tmp_path / "years.mid",
                    "4d546864 00000006 0000 0001 0001 4d54726b 00000012 00ff5103ffffff ffffff7f 903c64 00ff2f00")
    with pytest.raises(MidiFileError, match="years.mid lasts 143 years .*no render can be that long"):
        midi_file.read(path, rate=44100)


def test_a_message_never_reads_past_its_track(tmp_path):
    """A sysex whose length runs into the next track: strict refuses it, lenient keeps the first
    track's note and reads the second track whole."""
    first = "0090 3c64 00f0 7f 01 02"  # a note, then a sysex claiming 127 bytes
    second = "0090 4064 8360 8040 4000 ff2f00"
    text = (f"4d546864 00000006 0001 0002 01e0 4d54726b 00000009 {first} "
            f"4d54726b 0000000d {second}")
    path = hex_file(tmp_path / "s.mid", text)
    with pytest.raises(MidiFileError, match=r"corrupt \(track 1, byte 4: an event of 127 bytes runs past"):
        midi_file.read(path)
    song = midi_file.read(path, rate=1000, lenient=True)
    ons = song.events[song.events[:, 1] == ev.NOTE_ON]
    assert ons[:, 3].tolist() == [60, 64] and song.tracks == 2
    assert "the last 5 bytes of the track were not read" in song.warnings[0]


def test_lenient_reading_skips_a_mangled_chunk_to_the_next_track(tmp_path):
    text = ("4d546864 00000006 0001 0002 01e0 4d54726b 0000000d " + NOTE_BODY
            + " 4d54726b 0000000d 0090 4064 8360 8040 4000 ff2f00")
    data = bytearray(bytes.fromhex(text.replace(" ", "")))
    data[14:18] = b"\x00\xffrk"  # the first MTrk marker damaged
    path = tmp_path / "m.mid"
    path.write_bytes(bytes(data))
    with pytest.raises(MidiFileError, match="should start a chunk"):
        midi_file.read(path)
    song = midi_file.read(path, lenient=True)
    assert song.events[song.events[:, 1] == ev.NOTE_ON][:, 3].tolist() == [64]
    assert any("skipped to the next track" in w for w in song.warnings)
    assert any("declares 2 tracks but the file holds 1" in w for w in song.warnings)


def test_a_device_a_pipe_or_a_huge_file_is_refused_before_it_is_read(tmp_path):
    """``render /dev/zero`` would read forever; a 40 MiB file is more than a MIDI file may be."""
    with pytest.raises(MidiFileError, match="/dev/zero is not a regular file"):
        midi_file.read("/dev/zero")
    os.mkfifo(tmp_path / "pipe.mid")
    fd = os.open(tmp_path / "pipe.mid", os.O_RDWR | os.O_NONBLOCK)  # a writer: opening the pipe does not block
    try:
        with pytest.raises(MidiFileError, match="pipe.mid is not a regular file"):
            midi_file.read(tmp_path / "pipe.mid")
    finally:
        os.close(fd)
    huge = tmp_path / "huge.mid"
    with open(huge, "wb") as f:
        f.write(b"MThd")
        f.truncate(40 << 20)  # sparse: nothing written
    with pytest.raises(MidiFileError, match="huge.mid is 40.0 MiB, more than the 32 MiB a MIDI file may be"):
        midi_file.read(huge)


@pytest.mark.parametrize("header", ["4d546864 00000000", "4d546864 0000ffff", "4d54ff64 00000006"])
def test_a_mangled_header_before_a_whole_track_is_read_leniently(tmp_path, header):
    """A header size of 0 or 65535, or a damaged MThd marker, while a track starts at byte 14."""
    path = hex_file(tmp_path / "h.mid", f"{header} 0001 0001 01e0 4d54726b 0000000d " + NOTE_BODY)
    with pytest.raises(MidiFileError, match="corrupt; .*leniently") as info:
        midi_file.read(path)
    assert info.value.setting == "lenient"
    song = midi_file.read(path, rate=1000, lenient=True)
    assert song.events.tolist() == [[0, ev.NOTE_ON, 0, 60, 100], [500, ev.NOTE_OFF, 0, 60, 64]]
    assert len(song.warnings) == 1 and "read as" in song.warnings[0]
