"""The engine, measured on the audio it renders.

The notes come from ``HarmonicSource`` (engine_fixtures.py): real, deterministic harmonic
tones at the exact MIDI pitch. The tiny untrained model has no pitch or loudness order to
measure; it is exercised end to end in test_render.py.
"""

from __future__ import annotations

import numpy as np
import pytest
from engine_fixtures import (
    KIT,
    PIANO,
    RATE,
    SAW,
    SINE,
    HarmonicSource,
    assert_torch_free,
    block_allocations,
    make_engine,
    note,
    rms,
    run_engine,
    weightless_preset,
)

from sing_synth import dsp
from sing_synth import events as ev
from sing_synth.channels import InstrumentMap
from sing_synth.effects import EffectSettings
from sing_synth.note_source import DictNoteSource


def first_sound(x: np.ndarray) -> int:
    return int(np.nonzero(np.any(x != 0.0, axis=1))[0][0])


def f0_cents(x: np.ndarray, pitch: float) -> float:
    return dsp.cents(dsp.estimate_f0(x[:, 0], RATE), dsp.midi_to_hz(pitch))


def centroid(x: np.ndarray) -> float:
    spec = np.abs(np.fft.rfft(x[:, 0] * np.hanning(len(x))))
    freqs = np.fft.rfftfreq(len(x), 1 / RATE)
    return float((spec * freqs).sum() / spec.sum())


@pytest.mark.parametrize("block", [64, 500, 4096])
def test_events_take_effect_at_their_exact_sample(block):
    for frame in (0, 1, 777, 12345):
        engine = make_engine()
        engine.push(ev.NOTE_ON, 0, 60, 100, frame)
        out = np.zeros((frame + 3000, 2), np.float32)
        for start in range(0, len(out), block):
            engine.process(out[start : start + block])
        assert first_sound(out) == frame


def test_velocity_raises_loudness_monotonically():
    levels = []
    for velocity in (5, 20, 25, 40, 50, 64, 75, 90, 100, 115, 127):
        out = run_engine(make_engine(), note(0.0, 60, velocity, 1.0), 0.8)
        levels.append(rms(out[2000:30000]))
    assert all(b > a for a, b in zip(levels, levels[1:], strict=False)), levels


def test_sustain_pedal_lengthens_notes():
    """Key released at 0.3 s: without the pedal the note dies in the release, with it the note sounds on."""
    plain = run_engine(make_engine(), note(0.0, 60, 100, 0.3, channel=0), 2.0)
    pedal = [(0.0, ev.CONTROL, 0, ev.CC_SUSTAIN, 127), *note(0.0, 60, 100, 0.3), (1.5, ev.CONTROL, 0, ev.CC_SUSTAIN, 0)]
    held = run_engine(make_engine(), pedal, 2.0)
    window = slice(int(0.8 * RATE), int(1.4 * RATE))
    assert rms(plain[window]) < 1e-5
    assert rms(held[window]) > 0.05
    assert rms(held[int(1.9 * RATE) :]) < 1e-5  # pedal up at 1.5 s releases it


def test_sostenuto_holds_only_the_notes_down_when_pressed():
    events = note(0.0, 48, 100, 0.3) + [(0.1, ev.CONTROL, 0, ev.CC_SOSTENUTO, 127)] + note(0.2, 72, 100, 0.2)
    events.append((1.5, ev.CONTROL, 0, ev.CC_SOSTENUTO, 0))
    engine = make_engine()
    out = run_engine(engine, events, 1.0)
    tail = out[int(0.8 * RATE) :, 0]
    assert abs(f0_cents(out[int(0.8 * RATE) :], 48)) < 10  # the low note still sounds, alone
    assert rms(tail) > 0.05
    assert engine.pool.keys() == [48]


def test_soft_pedal_plays_softer():
    loud = run_engine(make_engine(), note(0.0, 60, 100, 1.0), 0.5)
    soft = run_engine(make_engine(), [(0.0, ev.CONTROL, 0, ev.CC_SOFT, 127), *note(0.0, 60, 100, 1.0)], 0.5)
    assert rms(soft) < 0.9 * rms(loud)


@pytest.mark.parametrize("bend, cents", [(16383, 200.0), (0, -200.0), (8192 + 4096, 100.0)])
def test_pitch_bend_moves_the_fundamental(bend, cents):
    events = [*note(0.0, 64, 100, 2.0), (0.5, ev.PITCH_BEND, 0, bend, 0)]
    out = run_engine(make_engine(), events, 1.5)
    assert abs(f0_cents(out[int(0.2 * RATE) : int(0.45 * RATE)], 64)) < 10
    assert abs(f0_cents(out[int(0.8 * RATE) : int(1.4 * RATE)], 64) - cents) < 10


def test_a_key_of_the_tuning_map_sounds_at_its_pitch_from_its_source():
    from test_channels import tuned_preset

    source = HarmonicSource()
    out = run_engine(make_engine(source, preset=tuned_preset()), [(0.0, ev.PROGRAM, 0, 2, 0), *note(0.01, 60, 100, 1.0)], 0.8)
    assert (PIANO, 62, 3) in source.slots and (PIANO, 60, 3) not in source.slots  # played from 62
    assert abs(f0_cents(out[int(0.1 * RATE) : int(0.6 * RATE)], 60)) < 10  # re-pitched to 60


def test_rpn0_sets_the_pitch_bend_range():
    rpn = [
        (0.0, ev.CONTROL, 0, cc, value) for cc, value in ((101, 0), (100, 0), (6, 12), (38, 0), (101, 127), (100, 127))
    ]
    out = run_engine(make_engine(), [*rpn, *note(0.0, 52, 100, 2.0), (0.3, ev.PITCH_BEND, 0, 16383, 0)], 1.2)
    assert abs(f0_cents(out[int(0.6 * RATE) : int(1.1 * RATE)], 52) - 1200) < 10
    # reset controllers: back to the centre, the range stays 12
    engine = make_engine()
    events = [*rpn, *note(0.0, 52, 100, 2.0), (0.3, ev.PITCH_BEND, 0, 16383, 0), (0.5, ev.CONTROL, 0, 121, 0)]
    out = run_engine(engine, events, 1.2)
    assert abs(f0_cents(out[int(0.7 * RATE) : int(1.1 * RATE)], 52)) < 10
    assert engine.channels[0].bend_range == 12


def test_program_change_switches_instrument():
    events = [*note(0.0, 57, 100, 0.5), (0.6, ev.PROGRAM, 0, 1, 0), *note(0.7, 57, 100, 0.5)]
    out = run_engine(make_engine(), events, 1.3)
    first, second = out[int(0.1 * RATE) : int(0.45 * RATE)], out[int(0.8 * RATE) : int(1.15 * RATE)]
    assert centroid(second) > 2.5 * centroid(first)  # the saw has many more harmonics than the organ
    assert abs(f0_cents(first, 57)) < 10 and abs(f0_cents(second, 57)) < 10


def test_program_change_asks_for_the_new_instrument_at_once():
    source = DictNoteSource({(0, 60, 3): np.zeros(4800, np.float32)}, rate=RATE)
    engine = make_engine(source)
    run_engine(engine, [(0.0, ev.PROGRAM, 0, 1, 0), (0.01, ev.PROGRAM, 0, 1, 0)], 0.05)
    assert source.requested == [(SAW, 60, 3)]  # once, before any note of it is played


def test_instrument_override_and_bank_fallback():
    preset = weightless_preset()
    imap = InstrumentMap(preset, instrument="bright saw")
    assert imap.resolve(0, 0) == SAW and imap.resolve(5, 40) == SAW
    assert imap.resolve(9, 0) == KIT  # the drum channel keeps the kit
    plain = InstrumentMap(preset)
    for program in range(128):
        for bank in (0, 8, 121):
            want = preset.gm_instrument(program, bank, False)
            assert plain.resolve(0, program, bank) == (want.id if want else -1)


def test_drums_play_on_channel_10_and_are_skipped_without_a_kit():
    engine = make_engine()
    out = run_engine(engine, note(0.0, 38, 100, 0.2, channel=9), 0.5)
    assert rms(out) > 0.01 and engine.notes_played == 1
    no_kit = weightless_preset([i for i in weightless_preset().instruments if not i.drum_kit])
    engine = make_engine(preset=no_kit)
    out = run_engine(engine, note(0.0, 38, 100, 0.2, channel=9) + note(0.0, 60, 100, 0.2), 0.5)
    assert engine.notes_skipped == 1 and engine.notes_played == 1
    # outside the kit's range: skipped; a melodic note outside the range is re-pitched from the edge
    engine = make_engine()
    run_engine(engine, note(0.0, 20, 100, 0.2, channel=9), 0.3)
    assert engine.notes_skipped == 1
    source = HarmonicSource()
    out = run_engine(make_engine(source), [(0.0, ev.PROGRAM, 0, 2, 0), *note(0.0, 100, 100, 1.0)], 0.5)
    assert list(source.notes) == [(PIANO, 96, 3)] and abs(f0_cents(out[2000:8000], 100)) < 10


def test_voice_stealing_keeps_voices_at_the_limit():
    engine = make_engine(polyphony=4)
    events = [e for k in range(10) for e in note(0.05 * k, 48 + 2 * k, 100, 3.0)]
    out = run_engine(engine, events, 1.0)
    assert engine.max_voices == 4 and engine.active_voices == 4
    assert engine.voices_stolen == 6
    sounding = engine.pool.keys()
    assert sounding == [60, 62, 64, 66]  # the oldest went first; the newest always sounds
    assert np.max(np.abs(np.diff(out[:, 0]))) < 0.2  # stolen voices fade out, they are not cut


def test_stealing_prefers_released_then_sustained_voices():
    engine = make_engine(polyphony=3)
    events = note(0.0, 60, 100, 5.0) + note(0.01, 62, 100, 0.05) + note(0.02, 64, 100, 5.0) + note(0.1, 66, 100, 5.0)
    run_engine(engine, events, 0.2)
    assert engine.pool.keys() == [60, 64, 66]
    engine = make_engine(polyphony=3)
    events = [(0.0, ev.CONTROL, 0, ev.CC_SUSTAIN, 127)] + note(0.0, 60, 100, 5.0) + note(0.01, 62, 100, 0.05)
    events += note(0.02, 64, 100, 5.0) + note(0.1, 66, 100, 5.0)
    run_engine(engine, events, 0.2)
    assert engine.pool.keys() == [60, 64, 66]


def test_release_and_retrigger_are_click_free():
    """The test tones start at full amplitude (cosine phase), so clicks are looked for in what ends."""
    out = run_engine(make_engine(), note(0.0, 69, 127, 0.5), 1.0)
    steady = np.max(np.abs(np.diff(out[int(0.1 * RATE) : int(0.45 * RATE), 0])))
    assert np.max(np.abs(np.diff(out[int(0.45 * RATE) :, 0]))) <= 1.01 * steady
    assert rms(out[int(0.5 * RATE) + 11025 :]) < 1e-4  # released within 0.25 s
    # a repeated key: the old voice (both renders minus the new note alone) fades out smoothly
    both = run_engine(make_engine(), [(0.0, ev.NOTE_ON, 0, 69, 127), *note(0.3, 69, 127, 0.5)], 1.0)
    new = run_engine(make_engine(), note(0.3, 69, 127, 0.5), 1.0)
    old = both - new
    assert np.max(np.abs(np.diff(old[:, 0]))) <= 1.01 * steady
    assert rms(old[int(0.35 * RATE) :]) < 1e-5


def test_held_key_loops_the_steady_part_of_sustaining_notes():
    """The notes are 4 s; a key held 7 s keeps sounding at the same level and pitch, without clicks."""
    out = run_engine(make_engine(), note(0.0, 62, 100, 7.0), 7.0, block=1024)
    body = rms(out[int(1.0 * RATE) : int(2.0 * RATE)])
    for start in (3.0, 4.5, 6.0):
        part = out[int(start * RATE) : int((start + 0.8) * RATE)]
        assert abs(20 * np.log10(rms(part) / body)) < 1.5
        assert abs(f0_cents(part, 62)) < 10
    steady = np.max(np.abs(np.diff(out[int(1.0 * RATE) : int(2.0 * RATE), 0])))
    assert np.max(np.abs(np.diff(out[:, 0]))) < 1.2 * steady
    # a decaying (plucked) note is not looped: it dies away with its sample
    out = run_engine(make_engine(), [(0.0, ev.PROGRAM, 0, 2, 0), *note(0.0, 62, 100, 7.0)], 6.0, block=1024)
    assert rms(out[int(4.5 * RATE) :]) == 0.0


def test_a_looping_voice_plays_its_slots_with_exact_jumps_back():
    """Two velocity layers of steady noise (every sample differs): the held key's output is the two
    slots (crossfade baked in) read at t, then at loop_start + (t - loop_start) mod loop_length,
    whatever the block size."""
    rng = np.random.default_rng(7)
    n = 4 * RATE
    layers = {v: (0.2 * rng.standard_normal(n)).astype(np.float32) for v in range(5)}
    source = DictNoteSource({(SINE, 60, v): x for v, x in layers.items()}, rate=RATE)
    bank = source.bank
    lo, hi, wlo, whi = dsp.velocity_blend(90)
    assert wlo > 0 and whi > 0
    s0, s1 = source.find(SINE, 60, lo), source.find(SINE, 60, hi)
    end, length = int(bank.loop_end[s0]), int(bank.loop_len[s0])
    assert length > 0 and (bank.loop_end[s1], bank.loop_len[s1]) == (end, length)
    t = np.arange(int(6.5 * RATE))
    pos = np.where(t < end, t, end - length + (t - end) % length)
    want = wlo * bank.data[s0, pos] + whi * bank.data[s1, pos]
    for block in (128, 4096):
        out = run_engine(make_engine(source), note(0.0, 60, 90, 7.0), 6.5, block=block)[:, 0]
        gain = np.dot(out[:RATE], want[:RATE]) / np.dot(want[:RATE], want[:RATE])
        assert np.max(np.abs(out - gain * want)) < 1e-5


def test_pan_is_equal_power_and_volume_follows_the_gm_curve():
    def level(*controls):
        events = [(0.0, ev.CONTROL, 0, cc, v) for cc, v in controls] + note(0.0, 60, 100, 1.0)
        out = run_engine(make_engine(), events, 0.5)
        return rms(out[:, 0]), rms(out[:, 1])

    left, right = level((ev.CC_PAN, 0))
    assert right < 1e-6 < left
    left, right = level((ev.CC_PAN, 127))
    assert left < 1e-6 < right
    cl, cr = level()
    assert cl == pytest.approx(cr) and cl**2 + cr**2 == pytest.approx(left**2 + right**2, rel=1e-4)
    half, _ = level((ev.CC_VOLUME, 50))
    assert 20 * np.log10(half / cl) == pytest.approx(40 * np.log10(50 / 100), abs=0.05)
    quiet, _ = level((ev.CC_EXPRESSION, 64))
    assert 20 * np.log10(quiet / cl) == pytest.approx(40 * np.log10(64 / 127), abs=0.05)


def test_all_sound_off_and_all_notes_off():
    events = note(0.0, 60, 100, 3.0) + [(0.5, ev.CONTROL, 0, ev.CC_ALL_SOUND_OFF, 0)]
    out = run_engine(make_engine(), events, 1.0)
    assert rms(out[int(0.55 * RATE) :]) == 0.0
    engine = make_engine()
    events = [(0.0, ev.CONTROL, 0, ev.CC_SUSTAIN, 127), *note(0.0, 60, 100, 3.0), (0.5, ev.CONTROL, 0, 123, 0)]
    out = run_engine(engine, events, 1.0)
    assert rms(out[int(0.6 * RATE) :]) > 0.05  # all notes off respects the sustain pedal
    out = run_engine(make_engine(), note(0.0, 60, 100, 3.0) + [(0.5, ev.CONTROL, 0, 123, 0)], 1.0)
    assert rms(out[int(0.8 * RATE) :]) < 1e-5
    engine = make_engine()
    out = run_engine(engine, note(0.0, 60, 100, 3.0) + [(0.5, ev.RESET, 0, 0, 0)], 1.0)
    assert rms(out[int(0.55 * RATE) :]) == 0.0 and engine.channels[0].volume == 100


def test_limiter_keeps_dense_music_below_full_scale():
    events = [e for k in range(40) for e in note(0.001 * k, 36 + k, 127, 1.0, channel=k % 8)]
    out = run_engine(make_engine(polyphony=64, gain=4.0), events, 1.0)
    assert np.all(np.isfinite(out)) and np.max(np.abs(out)) <= 1.0
    assert np.max(np.abs(out)) > 0.8


def test_missing_notes_use_a_stand_in_and_are_requested():
    source = DictNoteSource({(SINE, 60, 4): HarmonicSource().get(SINE, 60, 4)}, rate=RATE)
    engine = make_engine(source)
    out = run_engine(engine, note(0.0, 64, 127, 1.0), 0.5)
    assert (SINE, 64, 4) in source.requested
    assert abs(f0_cents(out[2000:20000], 64)) < 10  # the stand-in is re-pitched to the key
    engine = make_engine(DictNoteSource(rate=RATE))
    run_engine(engine, note(0.0, 64, 127, 1.0), 0.2)
    assert engine.notes_missing == 1


@pytest.mark.parametrize("effects", [None, EffectSettings()], ids=["dry", "reverb and chorus"])
def test_steady_state_processing_allocates_nothing_of_size(effects):
    """Every array the mixer works in is made in advance (matrix products instead of broadcasting,
    whose iterator buffers would be allocated per call): what is left is NumPy's and Python's small
    change (scalars, a reduction's few hundred bytes), nothing that grows with voices or frames and
    nothing kept from block to block. The same with both effect buses working."""
    engine = make_engine(polyphony=52, effects=effects)
    held = [e for k in range(48) for e in note(0.0, 36 + k, 100, 60.0, channel=k % 3)]
    if effects is not None:
        held += [(0.0, ev.CONTROL, k, cc, 100) for k in range(3) for cc in (ev.CC_REVERB, ev.CC_CHORUS)]
    out = np.zeros((4096, 2), np.float32)
    run_engine(engine, held + [(0.0, ev.PITCH_BEND, 1, 9000, 0)], 0.3, block=4096)
    engine.process(out)
    # the event values are made before tracing: the queue keeps references to them
    blocks = [[(ev.CONTROL, 0, ev.CC_EXPRESSION, 100 + k % 20, engine.frame + 4096 * k + 100),
               (ev.PITCH_BEND, 1, 8192 + 50 * k, 0, engine.frame + 4096 * k + 200)] for k in range(100)]
    peak, kept = block_allocations(engine, out, blocks)
    assert engine.active_voices == 48 and (effects is None or engine.effects.active)
    assert peak < 16 * 1024  # one 48 voices x 4096 frames float64 temporary alone is 1.5 MiB
    assert kept < 1024  # nothing accumulates


def test_event_queue_overflow_is_counted_not_blocking():
    engine = make_engine()
    accepted = sum(engine.push(ev.NOTE_ON, 0, 60, 100, 0) for _ in range(engine.queue.capacity + 10))
    assert accepted == engine.queue.capacity - 1 and engine.queue.dropped == 11
    engine.process(np.zeros((256, 2), np.float32))
    assert engine.active_voices <= engine.pool.polyphony
    # a flood is spread over blocks: at most max_events per block, the rest wait
    assert len(engine.queue) == accepted - engine.max_events


def test_audio_path_modules_do_not_import_torch():
    assert_torch_free(
        "engine", "performer", "voices", "mixer", "mix_scratch", "mix_read", "mix_gains", "blas", "limiter", "events",
        "effects", "reverb", "chorus", "channels", "note_source", "midi_file",
    )
