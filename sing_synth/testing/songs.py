"""Deterministic General MIDI songs (the same bytes on every run): the demo files in ``examples/``,
and songs of any length for the tests and benchmarks.

- ``demo.mid`` (type 1, about a minute): piano with sustain pedal, bass, string pad with
  volume and expression swells, a lead with pitch bends, drums on channel 10, and a tempo
  change from 100 to 120 bpm, then a ritardando.
- ``controllers.mid`` (type 0, about 20 s): program changes mid-song, sostenuto and soft
  pedals, a pitch-bend range of 12 semitones set with RPN 0, pan sweeps, all notes off, reset
  controllers and all sound off.

``song(minutes)`` makes longer songs of the same kind (bench/render.py uses it).
:func:`write_examples` writes the two files (``python examples/make_examples.py [output_dir]``).
"""

from __future__ import annotations

import random
from pathlib import Path

import mido

TPB = 480  # ticks per beat
BAR = 4 * TPB
# C, Am, F, G, Em, Dm: root pitches and chord tones (semitones above the root)
CHORDS = [(48, (0, 4, 7)), (45, (0, 3, 7)), (41, (0, 4, 7)), (43, (0, 4, 7)), (40, (0, 3, 7)), (38, (0, 3, 7))]
PROGRESSION = [0, 1, 2, 3, 0, 4, 5, 3]
SCALE = [0, 2, 4, 5, 7, 9, 11]


def _track(mid: mido.MidiFile, name: str) -> list:
    """A list of (absolute tick, order, message); turned into a MIDI track by :func:`_finish`."""
    events: list = []
    mid.tracks.append(mido.MidiTrack([mido.MetaMessage("track_name", name=name, time=0)]))
    return events


def _finish(track: mido.MidiTrack, events: list) -> None:
    now = 0
    for tick, _, msg in sorted(events, key=lambda e: (e[0], e[1])):
        track.append(msg.copy(time=tick - now))
        now = tick
    track.append(mido.MetaMessage("end_of_track", time=0))


def _note(events: list, ch: int, tick: int, length: int, pitch: int, velocity: int) -> None:
    events.append((tick, 1, mido.Message("note_on", channel=ch, note=pitch, velocity=velocity)))
    events.append((tick + length, 0, mido.Message("note_off", channel=ch, note=pitch, velocity=64)))


def _cc(events: list, ch: int, tick: int, control: int, value: int) -> None:
    events.append((tick, 0, mido.Message("control_change", channel=ch, control=control, value=value)))


def song(minutes: float = 1.0, seed: int = 1) -> mido.MidiFile:
    """A General MIDI song of about ``minutes`` minutes: five channels, drums, pedal, bends, tempo changes."""
    rnd = random.Random(seed)
    bars = max(8, int(round(minutes * 60 / 2.2)))
    first = bars * 3 // 5  # bars at 100 bpm; the rest at 120 bpm, the last two slowing down
    mid = mido.MidiFile(type=1, ticks_per_beat=TPB)
    conductor = _track(mid, "tempo")
    conductor.append((0, 0, mido.MetaMessage("time_signature", numerator=4, denominator=4)))
    conductor.append((0, 0, mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(100))))
    conductor.append((first * BAR, 0, mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(120))))
    for k, bpm in enumerate((110, 100, 90, 80)):
        conductor.append(((bars - 2) * BAR + k * 2 * TPB, 0, mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm))))
    parts = {name: _track(mid, name) for name in ("piano", "bass", "strings", "lead", "drums")}
    setup = [("piano", 0, 0, 100, 50), ("bass", 1, 33, 110, 64), ("strings", 2, 48, 80, 78), ("lead", 3, 73, 100, 40)]
    for name, ch, program, volume, pan in setup:
        ev = parts[name]
        _cc(ev, ch, 0, 0, 0)
        _cc(ev, ch, 0, 32, 0)
        ev.append((0, 0, mido.Message("program_change", channel=ch, program=program)))
        _cc(ev, ch, 0, 7, volume)
        _cc(ev, ch, 0, 10, pan)
    for bar in range(bars):
        root, tones = CHORDS[PROGRESSION[bar % len(PROGRESSION)]]
        t = bar * BAR
        # piano: broken chord under a sustain pedal changed every bar
        _cc(parts["piano"], 0, t, 64, 0)
        _cc(parts["piano"], 0, t + 10, 64, 127)
        for k in range(8):
            pitch = root + 12 + tones[k % 3] + 12 * (k // 3 % 2)
            _note(parts["piano"], 0, t + k * TPB // 2, TPB // 2 - 20, pitch, 60 + rnd.randrange(30))
        # bass: root and fifth
        for k, (step, length) in enumerate(((0, TPB), (7, TPB // 2), (0, TPB // 2), (12, TPB), (7, TPB))):
            start = (0, TPB, TPB * 3 // 2, 2 * TPB, 3 * TPB)[k]
            _note(parts["bass"], 1, t + start, length - 30, root - 12 + step, 90 + rnd.randrange(20))
        # strings: a held chord swelling with expression
        for tone in tones:
            _note(parts["strings"], 2, t, BAR - 10, root + 24 + tone, 70)
        for k in range(8):
            _cc(parts["strings"], 2, t + k * TPB // 2, 11, 80 + 40 * min(k, 8 - k) // 4)
        # lead: a melody on the chord, a bend up into the first note of every fourth bar
        if bar >= 2:
            for k in range(4):
                pitch = root + 24 + SCALE[rnd.randrange(7)] + (12 if rnd.random() < 0.3 else 0)
                start = t + k * TPB
                if k == 0 and bar % 4 == 0:
                    lead = parts["lead"]
                    lead.append((start, 0, mido.Message("pitchwheel", channel=3, pitch=-8192)))
                    for s in range(1, 9):
                        lead.append(
                            (start + s * TPB // 16, 0, mido.Message("pitchwheel", channel=3, pitch=-8192 + s * 1024))
                        )
                _note(parts["lead"], 3, start, TPB - 40, pitch, 80 + rnd.randrange(30))
        # drums: kick, snare, closed hi-hat, a crash every eight bars
        drums = parts["drums"]
        for k in range(8):
            _note(drums, 9, t + k * TPB // 2, 60, 42, 60 + rnd.randrange(30))
        for beat in (0, 2):
            _note(drums, 9, t + beat * TPB, 60, 36, 110)
        for beat in (1, 3):
            _note(drums, 9, t + beat * TPB, 60, 38, 100)
        if bar % 8 == 0:
            _note(drums, 9, t, 120, 49, 100)
    final = bars * BAR
    _note(parts["piano"], 0, final, 2 * TPB, CHORDS[0][0] + 12, 90)
    _cc(parts["piano"], 0, final + 2 * TPB, 64, 0)
    for track, events in zip(mid.tracks, [conductor, *parts.values()], strict=True):
        _finish(track, events)
    return mid


def controllers() -> mido.MidiFile:
    """A short type 0 file exercising controllers: programs, pedals, RPN bend range, pan, resets."""
    mid = mido.MidiFile(type=1, ticks_per_beat=TPB)
    ev = _track(mid, "controllers")
    ev.append((0, 0, mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(90))))
    ev.append((0, 0, mido.Message("program_change", channel=0, program=0)))
    ev.append((0, 0, mido.Message("program_change", channel=1, program=40)))
    t = 0
    # sostenuto: the low C is held, the melody over it is not
    _note(ev, 0, t, TPB // 2, 36, 100)
    _cc(ev, 0, t + TPB // 4, 66, 127)
    for k, pitch in enumerate((60, 62, 64, 65, 67, 69, 71, 72)):
        _note(ev, 0, t + TPB + k * TPB // 2, TPB // 3, pitch, 90)
    _cc(ev, 0, t + 5 * TPB, 66, 0)
    t += 6 * TPB
    # soft pedal on the second half of a phrase, then a program change to electric piano
    for k, pitch in enumerate((72, 71, 69, 67, 65, 64, 62, 60)):
        if k == 4:
            _cc(ev, 0, t + k * TPB // 2, 67, 127)
        _note(ev, 0, t + k * TPB // 2, TPB // 3, pitch, 90)
    _cc(ev, 0, t + 4 * TPB, 67, 0)
    ev.append((t + 4 * TPB, 0, mido.Message("program_change", channel=0, program=4)))
    t += 5 * TPB
    # violin with a bend range of 12 semitones (RPN 0), an octave slide, a pan sweep
    for control, value in ((101, 0), (100, 0), (6, 12), (38, 0), (101, 127), (100, 127)):
        _cc(ev, 1, t, control, value)
    _note(ev, 1, t, 4 * TPB, 67, 100)
    for s in range(17):
        ev.append((t + TPB + s * TPB // 8, 0, mido.Message("pitchwheel", channel=1, pitch=min(8191, s * 512))))
        _cc(ev, 1, t + TPB + s * TPB // 8, 10, min(127, s * 8))
    t += 5 * TPB
    _cc(ev, 1, t, 121, 0)  # reset controllers: bend back to centre (pan stays)
    _note(ev, 1, t, 2 * TPB, 67, 100)
    _note(ev, 0, t, 2 * TPB, 48, 80)
    # a chord cut by all notes off, another by all sound off
    for pitch in (60, 64, 67):
        _note(ev, 0, t + 3 * TPB, 4 * TPB, pitch, 90)
    _cc(ev, 0, t + 4 * TPB, 123, 0)
    for pitch in (62, 65, 69):
        _note(ev, 0, t + 6 * TPB, 4 * TPB, pitch, 90)
    _cc(ev, 0, t + 7 * TPB, 120, 0)
    _finish(mid.tracks[0], ev)
    mid.type = 0
    return mid


def write_examples(directory: str | Path) -> list[Path]:
    """Write ``demo.mid`` and ``controllers.mid`` into ``directory``; their paths."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, mid in (("demo.mid", song(1.0)), ("controllers.mid", controllers())):
        mid.save(out / name)
        print(f"wrote {out / name} ({mid.length:.1f} s, {len(mid.tracks)} tracks, type {mid.type})")
        paths.append(out / name)
    return paths
