"""A morph played: through the engine (per-channel positions, stand-ins, no clicks, exact ends),
the live note cache and its renderer thread, a render driven by the file's controllers, and the
command line. Blended notes come from the tiny seeded preset; the click test plays smooth tones.
"""

from __future__ import annotations

import mido
import numpy as np
import pytest
from engine_fixtures import RATE, note, one_thread, run_engine, tiny_preset, weightless_preset, write_midi  # noqa: F401

from sing_synth import cli, dsp
from sing_synth import events as ev
from sing_synth.audio_file import read_wav
from sing_synth.cache import NoteCache
from sing_synth.cache_filler import CacheFiller
from sing_synth.effects import EffectSettings
from sing_synth.engine import Engine
from sing_synth.morph import Morph, MorphControl
from sing_synth.note_source import DictNoteSource
from sing_synth.render import render_file
from sing_synth.renderer import NoteRenderer
from sing_synth.voices import FADING

TINY_RATE = 16000  # the tiny preset's own rate: no resampling
M = mido.Message


def blended(preset, morph: Morph, keys) -> DictNoteSource:
    """The notes ``keys`` (morph positions among them) rendered by the tiny preset."""
    renderer = NoteRenderer(preset, device="cpu")
    renderer.add_blends(morph.blends())
    return DictNoteSource(dict(zip(keys, renderer.render(keys), strict=True)), rate=TINY_RATE)


def playing(engine: Engine, source) -> dict:
    """(channel, key) -> the (instrument, pitch, class) each sounding voice plays."""
    by_slot = {slot: key for key, slot in source.slots.items()}
    pool = engine.pool
    return {
        (int(pool.channel[i]), int(pool.key[i])): by_slot[int(pool.slot[i, 0])]
        for i in range(pool.n)
        if pool.state[i] != FADING
    }


def cc_value(control: MorphControl, q: int) -> int:
    """A controller value that lands on grid index ``q``."""
    return control.index.index(q)


def test_the_ends_of_a_morph_are_its_instruments_exactly(tiny_preset, one_thread):  # noqa: F811
    control = MorphControl(Morph((0, 1), steps=8))
    notes = blended(tiny_preset, control.morph, [(i, p, 3) for i in (0, 1) for p in (60, 64)]).notes

    def play(instrument, morph, value):
        engine = Engine(tiny_preset, DictNoteSource(notes, TINY_RATE), rate=TINY_RATE, instrument=instrument, morph=morph)
        events = [(0.0, ev.CONTROL, 0, 16, value), *note(0.05, 60, 100, 0.5), *note(0.3, 64, 100, 0.5)]
        return run_engine(engine, events, 1.2)

    a, b = play(0, None, 0), play(1, None, 127)
    assert np.abs(a).max() > 1e-3 and not np.array_equal(a, b)
    assert np.array_equal(play(0, control, 0), a)  # position 0 is A, sample for sample
    assert np.array_equal(play(0, control, 127), b)  # position 1 is B


def test_each_channel_has_its_own_position_and_sounding_notes_keep_theirs(tiny_preset, one_thread):  # noqa: F811
    control = MorphControl(Morph((0, 1), steps=8))
    ids = control.ids[0]
    source = blended(tiny_preset, control.morph, [(i, p, 3) for i in ids for p in (60, 62)] + [(3, 36, 3)])
    engine = Engine(tiny_preset, source, rate=TINY_RATE, instrument=0, morph=control)
    out = np.zeros((512, 2), np.float32)
    for ch, value in ((0, 64), (1, 127), (3, 32), (9, 127)):
        engine.push(ev.CONTROL, ch, 16, value)
    for ch in (0, 1, 2, 3):
        engine.push(ev.NOTE_ON, ch, 60, 100)
    engine.push(ev.NOTE_ON, 9, 36, 100)
    engine.process(out)
    assert playing(engine, source) == {
        (0, 60): (ids[4], 60, 3), (1, 60): (1, 60, 3), (2, 60): (0, 60, 3), (3, 60): (ids[2], 60, 3),
        (9, 36): (3, 36, 3),  # the drum channel plays its kit
    }  # fmt: skip
    # channel 1 moves while its note sounds: the note keeps its position, the next note plays the new one
    engine.push(ev.CONTROL, 1, 16, cc_value(control, 6))
    engine.push(ev.NOTE_ON, 1, 62, 100)
    engine.process(out)
    now = playing(engine, source)
    assert now[(1, 60)] == (1, 60, 3) and now[(1, 62)] == (ids[6], 62, 3) and now[(0, 60)] == (ids[4], 60, 3)
    # reset all controllers (CC121) takes a channel back to position 0; the others keep theirs
    engine.push(ev.CONTROL, 0, ev.CC_RESET_CONTROLLERS, 0)
    for ch in (0, 3):
        engine.push(ev.NOTE_ON, ch, 62, 100)
    engine.process(out)
    now = playing(engine, source)
    assert now[(0, 62)] == (0, 62, 3) and now[(3, 62)] == (ids[2], 62, 3)
    engine.push(ev.RESET, 0)  # and so does a system reset
    engine.push(ev.NOTE_ON, 3, 60, 100)
    engine.process(out)
    assert playing(engine, source) == {(3, 60): (0, 60, 3)}


def test_a_position_not_made_yet_plays_the_nearest_made_one_and_is_asked_for(tiny_preset, one_thread):  # noqa: F811
    control = MorphControl(Morph((0, 1), steps=8))
    ids = control.ids[0]
    source = blended(tiny_preset, control.morph, [(0, 60, 3), (ids[4], 60, 3)])
    engine = Engine(tiny_preset, source, rate=TINY_RATE, instrument=0, morph=control)
    out = np.zeros((512, 2), np.float32)
    engine.push(ev.CONTROL, 0, 16, cc_value(control, 5))
    engine.push(ev.NOTE_ON, 0, 60, 100)
    engine.process(out)
    assert playing(engine, source) == {(0, 60): (ids[4], 60, 3)}  # position 4 (not A) at the pitch itself
    assert engine.pool.ratio[0] == 1.0 and engine.notes_missing == 0
    assert source.requested == [(ids[5], 60, 3)]
    # the position moves on: the channel's last note is asked for there at once, before it is played
    engine.push(ev.CONTROL, 0, 16, cc_value(control, 6))
    engine.push(ev.CONTROL, 0, 16, cc_value(control, 6))  # the same position again: nothing more
    engine.process(out)
    assert source.requested == [(ids[5], 60, 3), (ids[6], 60, 3)]


def test_live_a_new_position_is_made_in_priority_while_a_stand_in_plays(tiny_preset, one_thread):  # noqa: F811
    """The live note cache and its renderer thread: the note-on at a new position plays A's note at
    once (the audio never waits), the renderer thread makes the position's note, and the next
    note-on plays it, equal to the renderer's blend; moving the position asks for the channel's
    last note there before any note-on."""
    control = MorphControl(Morph((0, 1), steps=8))
    ids = control.ids[0]
    renderer = NoteRenderer(tiny_preset, device="cpu")
    renderer.add_blends(control.morph.blends())
    cache = NoteCache(tiny_preset, TINY_RATE, disk=False, memory_bytes=64 << 20)
    filler = CacheFiller(cache, renderer).start()
    try:
        filler.schedule([(0, 60, 3)])
        assert filler.wait([(0, 60, 3)], timeout=120)
        engine = Engine(tiny_preset, cache, rate=TINY_RATE, instrument=0, morph=control)
        out = np.zeros((256, 2), np.float32)
        engine.push(ev.CONTROL, 0, 16, 64)
        engine.push(ev.NOTE_ON, 0, 60, 100)
        engine.process(out)
        target = (ids[4], 60, 3)
        assert playing(engine, cache) == {(0, 60): (0, 60, 3)}  # A stands in: the audio does not wait
        assert filler.wait([target], timeout=120)  # asked for by the note-on, made by the renderer thread
        engine.push(ev.NOTE_OFF, 0, 60, 0)
        engine.push(ev.NOTE_ON, 0, 60, 100)
        engine.process(out)
        assert playing(engine, cache) == {(0, 60): target}
        made = DictNoteSource({target: renderer.render([target])[0]}, TINY_RATE)  # the sustain loop baked in too
        np.testing.assert_allclose(cache.get(*target), made.get(*target), atol=1e-6)
        engine.push(ev.CONTROL, 0, 16, cc_value(control, 6))
        engine.process(out)
        assert filler.wait([(ids[6], 60, 3)], timeout=120)
        assert not [k for k in cache.slots if k[0] not in (0, ids[4], ids[6])]  # positions are made as asked
    finally:
        filler.stop()


def smooth_note(pitch: int, position: int, rate: int = RATE) -> np.ndarray:
    """A sine held 3 s, with a 5 ms attack from silence, whose phase depends on the morph position:
    a voice switched from one position to another mid-note would step."""
    t = np.arange(4 * rate) / rate
    env = np.minimum(1.0, t / 0.005) * np.where(t < 3.0, 1.0, np.exp(-(t - 3.0) / 0.1))
    return (0.3 * env * np.sin(2 * np.pi * dsp.midi_to_hz(pitch) * t + 0.8 * position)).astype(np.float32)


def test_a_controller_sweep_while_playing_makes_no_click():
    control = MorphControl(Morph((0, 1), steps=8))
    notes = {(i, p, 3): smooth_note(p, q) for q, i in enumerate(control.ids[0]) for p in (60, 62, 64, 67)}
    chord = [e for p in (60, 64, 67) for e in note(0.05, p, 100, 2.4)]
    melody = [e for k in range(12) for e in note(0.1 + 0.2 * k, 62, 100, 0.15, channel=1)]
    sweep = [(0.2 + 0.005 * k, ev.CONTROL, ch, 16, min(127, k if k < 200 else 400 - k)) for k in range(400) for ch in (0, 1)]

    def play(events):
        engine = Engine(weightless_preset(), DictNoteSource(notes, RATE), rate=RATE, instrument=0, morph=control)
        return run_engine(engine, events, 3.0, block=256)

    # sounding notes keep their position: a held chord sounds the same, sample for sample, under a sweep
    assert np.array_equal(play(chord + sweep), play(chord))
    # notes restruck during the sweep start at new positions; the output never steps further than the
    # notes' own steps, summed over the voices that can sound at once (3 held, a note and its fade-out)
    out = play(chord + melody + sweep)
    own = max(max(abs(float(x[0])), float(np.abs(np.diff(x)).max())) for x in notes.values())
    gain = 0.5 * (100 / 127) ** 2 * np.sqrt(0.5)  # master gain, channel volume 100, centred
    step = float(np.abs(np.diff(out, axis=0)).max())
    assert 0 < step <= 5 * own * gain, (step, own * gain)


def tracks_with_morph(events) -> list:
    """One track from (seconds, message) pairs at 120 bpm (960 ticks a second)."""
    msgs, now = [], 0
    for t, msg in sorted(events, key=lambda e: e[0]):
        tick = round(t * 960)
        msgs.append(msg.copy(time=tick - now))
        now = tick
    return [msgs]


def residual(x: np.ndarray, ref: np.ndarray) -> float:
    """Relative energy of ``x`` left after the best multiple of ``ref`` is taken out."""
    x, ref = x.astype(np.float64), ref[: len(x)].astype(np.float64)
    w = float(x @ ref) / float(ref @ ref)
    return float(np.sum((x - w * ref) ** 2) / np.sum(x**2))


def test_a_render_moves_the_position_with_the_files_controllers(tmp_path, tiny_preset, one_thread):  # noqa: F811
    control = MorphControl(Morph((0, 1)))  # 16 steps: CC 64 is position 8/16
    mid = control.ids[0][8]
    cc = lambda v: M("control_change", channel=0, control=16, value=v)  # noqa: E731
    song = write_midi(tmp_path / "song.mid", tracks_with_morph([
        (0.0, cc(0)), (0.0, M("note_on", note=60, velocity=100)), (0.4, M("note_off", note=60)),
        (0.6, cc(64)), (0.7, M("note_on", note=60, velocity=100)), (1.1, M("note_off", note=60)),
        (1.3, cc(127)), (1.4, M("note_on", note=62, velocity=100)), (1.8, M("note_off", note=62)),
    ]))  # fmt: skip
    source = DictNoteSource(rate=TINY_RATE)
    options = dict(rate=TINY_RATE, fmt="float", gain=0.1, cache=False, effects=EffectSettings.dry())
    result = render_file(song, tmp_path / "m.wav", tiny_preset, instrument=0, morph=[1], source=source, **options)
    assert set(source.slots) == {(0, 60, 3), (mid, 60, 3), (1, 62, 3)} and result.notes_needed == 3
    x = read_wav(tmp_path / "m.wav")[0][:, 0]
    refs = source.notes
    at = lambda t: round(t * TINY_RATE)  # noqa: E731
    second = x[at(0.7) : at(1.0)]
    exact, a = residual(second, refs[(mid, 60, 3)]), residual(second, refs[(0, 60, 3)])
    assert exact < 1e-6 and a > 100 * max(exact, 1e-9), (exact, a)  # the blend, not A (nor A scaled)
    assert residual(x[at(0.0) : at(0.3)], refs[(0, 60, 3)]) < 1e-6
    assert residual(x[at(1.4) : at(1.7)], refs[(1, 62, 3)]) < 1e-6
    # the far end through a render is B itself, sample for sample
    ends = write_midi(tmp_path / "ends.mid", tracks_with_morph([
        (0.0, cc(127)), (0.0, M("note_on", note=60, velocity=100)), (0.3, M("note_on", note=64, velocity=90)),
        (0.8, M("note_off", note=60)), (0.9, M("note_off", note=64)),
    ]))  # fmt: skip
    render_file(ends, tmp_path / "b1.wav", tiny_preset, instrument=0, morph=["tiny strings"], **options)
    stems = render_file(song, tmp_path / "s.wav", tiny_preset, instrument=0, morph=[1], stems=True, **options).stems
    assert [p.name for p in stems.values()] == ["s-ch01-tiny-piano+tiny-piano-morph+tiny-strings.wav"]
    render_file(ends, tmp_path / "b2.wav", tiny_preset, instrument=1, **options)
    assert np.array_equal(read_wav(tmp_path / "b1.wav")[0], read_wav(tmp_path / "b2.wav")[0])


@pytest.mark.parametrize("argv,message", [
    (["--morph", "1"], "give --instrument A with --morph B"),
    (["--instrument", "0", "--morph", "1", "--morph-cc", "7"], "controller 7 already has a meaning"),
    (["--instrument", "0", "--morph", "1", "--morph-cc", "300"], "controller 300 out of range"),
    (["--instrument", "0", "--morph", "1", "2", "--morph-cc", "16"], "2 or 4 instruments"),
    (["--instrument", "0", "--morph", "1", "2", "3", "--morph-cc", "16"], "takes 2 controllers"),
    (["--instrument", "0", "--morph", "1", "--morph-steps", "0"], "steps 0 out of range"),
    (["--instrument", "0", "--morph", "nothing like it"], "no instrument"),
])  # fmt: skip
@pytest.mark.parametrize("command", ["render", "play"])
def test_bad_morph_options_are_one_line_errors_before_anything_starts(tmp_path, tiny_preset, capsys, command, argv, message):  # noqa: F811
    song = write_midi(tmp_path / "s.mid", [[M("note_on", note=60, velocity=100), M("note_off", note=60, time=480)]])
    where = [str(song), "-o", str(tmp_path / "o.wav")] if command == "render" else ["--midi-in", "no such port"]
    assert cli.main([command, *where, "--preset", str(tiny_preset.path), *argv]) != 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "o.wav").exists()


def test_the_render_command_plays_a_morph(tmp_path, tiny_preset, one_thread, capsys):  # noqa: F811
    song = write_midi(tmp_path / "s.mid", tracks_with_morph([
        (0.0, M("control_change", control=20, value=100)), (0.0, M("control_change", control=21, value=30)),
        (0.0, M("note_on", note=60, velocity=100)), (0.5, M("note_off", note=60)),
    ]))  # fmt: skip
    argv = ["render", str(song), "-o", str(tmp_path / "o.wav"), "--preset", str(tiny_preset.path), "--model-device",
            "cpu", "--rate", "16000", "--instrument", "0", "--morph", "1", "tiny bass", "3", "--morph-cc", "20", "21",
            "--morph-steps", "4", "--no-cache"]  # fmt: skip
    assert cli.main(argv) == 0, capsys.readouterr().err
    assert "1 of 1 notes rendered" in capsys.readouterr().out
    assert np.abs(read_wav(tmp_path / "o.wav")[0]).max() > 0
