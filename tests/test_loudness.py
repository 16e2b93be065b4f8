"""Loudness (ITU-R BS.1770-4) and normalisation: the meter against the standard's coefficients and
against pyloudnorm, the true peak, and normalize's target and ceiling."""

import math

import numpy as np
import pytest

from sing_synth import loudness
from sing_synth.errors import ConfigError
from sing_synth.loudness import Meter, db, normalize

pyloudnorm = pytest.importorskip("pyloudnorm")


def program(rate: int, seconds: float = 8.0, seed: int = 0) -> np.ndarray:
    """A stereo test signal with loud and quiet stretches (the gates have work to do)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    left = 0.3 * np.sin(2 * np.pi * 440 * t) * (1.2 + np.sin(2 * np.pi * 0.3 * t))
    right = 0.1 * rng.standard_normal(len(t)) + 0.2 * np.sin(2 * np.pi * 90 * t)
    x = np.stack([left, right], axis=1)
    x[: rate] *= 0.001  # a near-silent second (below the gates)
    return x


class Reader:
    """An in-memory render as ``normalize`` reads it."""

    def __init__(self, x: np.ndarray, rate: int) -> None:
        self.x, self.rate, self.frames = x, rate, len(x)

    def __call__(self, a: int, b: int) -> np.ndarray:
        return self.x[a:b]


def measure(x: np.ndarray, rate: int, block: int = 10007) -> Meter:
    meter = Meter(rate)
    for a in range(0, len(x), block):
        meter.add(x[a : a + block])
    return meter


def test_k_weighting_at_48k_is_the_standards():
    b1, a1, b2, a2 = loudness.k_weighting(48000)
    np.testing.assert_allclose(b1, [1.53512485958697, -2.69169618940638, 1.19839281085285], atol=1e-10)
    np.testing.assert_allclose(a1, [1.0, -1.69065929318241, 0.73248077421585], atol=1e-10)
    np.testing.assert_allclose(b2, [1.0, -2.0, 1.0])
    np.testing.assert_allclose(a2, [1.0, -1.99004745483398, 0.99007225036621], atol=1e-10)


@pytest.mark.parametrize("rate", [22050, 44100, 48000, 96000])
def test_integrated_loudness_agrees_with_pyloudnorm(rate):
    x = program(rate)
    ours = measure(x, rate).loudness()
    theirs = pyloudnorm.Meter(rate).integrated_loudness(x)
    assert ours == pytest.approx(theirs, abs=0.1)  # pyloudnorm's filters are RBJ's: close, not the same
    # BS.1770: a full-scale 997 Hz sine reads -3.01 LUFS in one channel, 0 LUFS in both
    t = np.arange(5 * rate) / rate
    sine = np.sin(2 * np.pi * 997 * t)[:, None].repeat(2, axis=1)
    assert measure(sine, rate).loudness() == pytest.approx(0.0, abs=0.05)
    sine[:, 1] = 0.0
    assert measure(sine, rate).loudness() == pytest.approx(-3.01, abs=0.05)


def test_the_meter_streams_whatever_the_blocks():
    x = program(44100, 5.0)
    whole = measure(x, 44100, len(x))
    short = x[44100 : 44100 + 4410 * 3]  # 0.3 s: 1-frame blocks are slow
    for block in (1, 4409, 4410, 65536):
        assert measure(short, 44100, block).loudness() == pytest.approx(measure(short, 44100, len(x)).loudness(), abs=1e-9)
    assert measure(x, 44100, 999).loudness() == pytest.approx(whole.loudness(), abs=1e-9)
    assert measure(x, 44100, 999).true_peak == pytest.approx(whole.true_peak, rel=1e-9)
    assert Meter(44100).loudness() == -math.inf


def test_true_peak_sees_between_the_samples():
    """A quarter-rate sine sampled 45 degrees off its peaks: samples at -3 dB, the wave at 0 dB."""
    rate = 48000
    t = np.arange(rate) / rate
    x = np.sin(2 * np.pi * rate / 4 * t + np.pi / 4)[:, None].repeat(2, axis=1)
    meter = measure(x, rate)
    assert db(meter.sample_peak) == pytest.approx(-3.01, abs=0.01)
    assert db(meter.true_peak) == pytest.approx(0.0, abs=0.2)


@pytest.mark.parametrize("target", [-30.0, -16.0, -9.0])
def test_normalize_reaches_the_target_under_the_ceiling(target):
    """-30: turned down; -16: turned up, the peaks still under -1 dBTP; -9: the limiter has to work."""
    rate = 44100
    t = np.arange(10 * rate) / rate
    plucks = 0.25 * np.sin(2 * np.pi * 220 * t) * np.exp(-(t % 0.5) * 8)  # peaky: crest factor ~ 15 dB
    x = np.stack([plucks, 0.8 * plucks], axis=1)
    out = np.zeros_like(x)

    def write(gain, a, b, mix):
        out[a:b] = mix * gain[:, None]

    result = normalize(Reader(x, rate), write, target, -1.0)
    check = measure(out, rate)
    assert abs(check.loudness() - target) < 0.5 and abs(result.after_lufs - target) < 0.1
    assert result.after_lufs == pytest.approx(check.loudness(), abs=1e-9)
    assert db(check.true_peak) <= -1.0 + 0.05
    assert pyloudnorm.Meter(rate).integrated_loudness(out) == pytest.approx(target, abs=0.5)
    assert result.before_lufs == pytest.approx(measure(x, rate).loudness())
    assert (result.limited_db > 0.5) == (target == -9.0)


def test_normalize_refuses_silence_and_targets_out_of_range():
    x = np.zeros((44100, 2))
    with pytest.raises(ConfigError, match="silent") as info:
        normalize(Reader(x, 44100), None, -16.0)
    assert info.value.setting == "normalize"
    with pytest.raises(ConfigError, match="-70 to 0") as info:
        loudness.check_target(5.0, -1.0)
    assert info.value.setting == "normalize"
    with pytest.raises(ConfigError, match="dBTP") as info:
        loudness.check_target(-16.0, 3.0)
    assert info.value.setting == "true_peak"
