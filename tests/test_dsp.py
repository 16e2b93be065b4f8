"""Pure signal helpers: pitch and interval arithmetic, the velocity mapping, resampling, PCM levels, f0."""

import numpy as np
import pytest

from sing_synth import dsp


def test_semitones_and_midi_pitches():
    assert dsp.semitone_ratio(12) == 2.0 and dsp.semitone_ratio(-12) == 0.5 and dsp.semitone_ratio(0) == 1.0
    assert dsp.semitone_ratio(7) == pytest.approx(1.4983070769)  # an equal-tempered fifth
    assert dsp.semitone_ratio(3) * dsp.semitone_ratio(4) == pytest.approx(dsp.semitone_ratio(7))
    assert dsp.midi_to_hz(69) == 440.0 and dsp.midi_to_hz(81) == 880.0
    assert dsp.midi_to_hz(60) == pytest.approx(261.6255653)
    for pitch in (0, 21.5, 60, 127):
        assert dsp.hz_to_midi(dsp.midi_to_hz(pitch)) == pytest.approx(pitch)
    assert dsp.cents(880.0, 440.0) == pytest.approx(1200.0) and dsp.cents(440.0, 440.0) == 0.0


def test_velocity_classes_are_the_nsynth_velocities():
    assert dsp.VELOCITY_CLASSES == (25, 50, 75, 100, 127)
    assert [dsp.velocity_class(v) for v in (1, 25, 37, 38, 62, 63, 100, 113, 114, 127)] == [0, 0, 0, 1, 1, 2, 3, 3, 4, 4]


@pytest.mark.parametrize("freq", [110.0, 440.0, 1760.0])
def test_resampling_keeps_a_tones_frequency(freq):
    t = np.arange(16000) / 16000
    tone = np.sin(2 * np.pi * freq * t).astype(np.float32)
    out = dsp.resample(tone, 16000, 44100)
    assert len(out) == 44100
    spec = np.abs(np.fft.rfft(out[4410:-4410] * np.hanning(len(out) - 8820)))
    peak = np.argmax(spec) * 44100 / (len(out) - 8820)
    assert abs(peak - freq) < 2.0
    assert abs(dsp.cents(dsp.estimate_f0(out[4410:13230], 44100), freq)) < 5


def class_weights(velocity):
    lo, hi, wl, wh = dsp.velocity_blend(velocity)
    w = np.zeros(5)
    w[lo] += wl
    w[hi] += wh
    return w


def test_velocity_blend_is_continuous_and_documented():
    for v, expected in [(25, [1, 0, 0, 0, 0]), (100, [0, 0, 0, 1, 0]), (127, [0, 0, 0, 0, 1]),
                        (90, [0, 0, 0.4, 0.6, 0]), (10, [0.4, 0, 0, 0, 0])]:
        np.testing.assert_allclose(class_weights(v), expected, atol=1e-12)
    curve = np.array([class_weights(v) for v in np.arange(1, 127.01, 0.25)])
    assert np.abs(np.diff(curve, axis=0)).max() < 0.02  # no jumps: loudness follows velocity smoothly


def test_repitch_scales_the_frequency_and_keeps_the_length():
    rate = 16000
    t = np.arange(rate) / rate
    tone = np.sin(2 * np.pi * 220.0 * t).astype(np.float32)
    up = dsp.repitch(tone, 12)
    assert len(up) == len(tone) and up.dtype == np.float32
    assert abs(dsp.cents(dsp.estimate_f0(up[: rate // 4], rate), 440.0)) < 5
    assert np.all(up[rate // 2 + 1 :] == 0.0)  # an octave up plays the whole tone in half the time
    fifth = dsp.repitch(tone, 7)
    assert abs(dsp.cents(dsp.estimate_f0(fifth[: rate // 4], rate), 220.0 * dsp.semitone_ratio(7))) < 5
    assert np.array_equal(dsp.repitch(tone, 0), tone)


def test_pcm_level_convention_and_clipping():
    x = np.array([-2.0, -1.0, -0.5, 0.0, 1 / 32767, 0.5, 1.0, 3.0])
    pcm = dsp.float_to_pcm16(x)
    assert pcm.dtype == np.int16 and pcm.tolist() == [-32767, -32767, -16384, 0, 1, 16384, 32767, 32767]
    back = dsp.pcm16_to_float(pcm)
    assert back.dtype == np.float32 and back[-1] == 1.0 and back[4] == pytest.approx(1 / 32767)


def test_rms_db():
    t = np.arange(48000) / 48000
    assert dsp.rms_db(np.sin(2 * np.pi * 100 * t)) == pytest.approx(-3.0103, abs=1e-3)
    assert dsp.rms_db(np.full(100, 0.1)) == pytest.approx(-20.0)
    assert dsp.rms_db(np.zeros(10)) == pytest.approx(-200.0)  # a floor, not -inf


def test_estimate_f0_finds_periodic_signals_and_nothing_else():
    rate = 16000
    t = np.arange(rate // 2) / rate
    for f in (55.0, 261.63, 1046.5):
        harmonic = np.sin(2 * np.pi * f * t) + 0.5 * np.sin(2 * np.pi * 2 * f * t) + 0.3 * np.sin(2 * np.pi * 3 * f * t)
        assert abs(dsp.cents(dsp.estimate_f0(harmonic, rate), f)) < 5, f
    assert dsp.estimate_f0(np.zeros(4000), rate) == 0.0
    assert dsp.estimate_f0(np.ones(10), rate) == 0.0  # too short
    assert dsp.estimate_f0(np.random.default_rng(0).standard_normal(8000), rate) == 0.0  # noise: no pitch
