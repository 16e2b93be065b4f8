"""The engine's output stage: master gain, the peak limiter, the soft knee, channel layouts."""

import math

import numpy as np
import pytest

from sing_synth.limiter import Limiter

RATE, N = 48000, 480


def block(peak: float) -> np.ndarray:
    t = np.arange(N) / RATE
    left = peak * np.sin(2 * np.pi * 1000 * t)
    return np.stack([left, -0.5 * left]).astype(np.float32)


def run(limiter: Limiter, mix: np.ndarray, channels: int = 2) -> np.ndarray:
    out = np.zeros((mix.shape[1], channels), np.float32)
    limiter.process(mix.copy(), out)
    return out


def test_below_the_threshold_only_the_gain_applies():
    limiter = Limiter(RATE, N, gain=0.5)
    mix = block(1.0)
    np.testing.assert_array_equal(run(limiter, mix), (mix * np.float32(0.5)).T)
    assert limiter.level == 1.0


def test_loud_blocks_are_limited_at_once_and_never_clip():
    limiter = Limiter(RATE, N, gain=1.0, threshold=0.85)
    out = run(limiter, block(4.0))
    assert 0.8 < np.max(np.abs(out)) <= 1.0 + 1e-6  # 1 at full saturation, give or take float32 rounding
    assert limiter.level == pytest.approx(0.85 / np.max(np.abs(block(4.0))), rel=1e-6)
    # the gain ramps from the block's start, so the first sample is louder than the settled level
    assert abs(out[1, 0]) > abs(block(4.0)[0, 1]) * limiter.level


def test_the_gain_recovers_exponentially():
    limiter = Limiter(RATE, N, gain=1.0, threshold=0.85, release=0.3)
    run(limiter, block(1.7))
    low = limiter.level
    assert low == pytest.approx(0.5, rel=1e-3)
    run(limiter, block(0.1))  # quiet: the gain moves towards 1 by 1 - exp(-n / (release x rate))
    assert limiter.level == pytest.approx(low + (1 - low) * (1 - math.exp(-N / (0.3 * RATE))))
    for _ in range(400):  # 4 s
        run(limiter, block(0.1))
    assert limiter.level == pytest.approx(1.0, abs=1e-4)


def test_the_knee_is_soft_and_bounded():
    limiter = Limiter(RATE, 5, gain=1.0, threshold=0.5)
    x = np.array([[0.2, 0.5, 0.6, 1.0, 1e6]], np.float32)
    limiter._knee(x[0])
    assert x[0, :2].tolist() == [pytest.approx(0.2), pytest.approx(0.5)]  # identity below
    assert 0.5 < x[0, 2] < 0.6 and x[0, 2] < x[0, 3] < x[0, 4] <= 1.0
    y = -np.array([0.6, 1.0], np.float32)
    limiter._knee(y)
    assert y.tolist() == pytest.approx([-x[0, 2], -x[0, 3]])  # odd symmetry


def test_mono_and_extra_channels():
    mix = block(0.5)
    mono = run(Limiter(RATE, N, gain=1.0), mix, channels=1)
    np.testing.assert_allclose(mono[:, 0], (mix[0] + mix[1]) * 0.70710677, rtol=1e-6)
    wide = run(Limiter(RATE, N, gain=1.0), mix, channels=4)
    np.testing.assert_array_equal(wide[:, :2], mix.T)
    assert not wide[:, 2:].any()


def test_stems_get_the_gain_and_not_the_knee():
    """The lanes (stems) of a mix get the limiter's gain, ramp included, but not its soft knee: they
    add up to the output wherever the knee leaves it alone."""
    limiter = Limiter(RATE, N, gain=1.0)
    rng = np.random.default_rng(0)
    for peak in (0.5, 3.0, 3.0, 0.4):  # quiet, loud (the gain drops), loud, quiet (it recovers: a ramp)
        mix = block(peak)
        lanes = rng.random((3, 2, N)).astype(np.float32)
        lanes *= mix / lanes.sum(axis=0)  # three lanes that add up to the mix
        out = np.zeros((N, 2), np.float32)
        limiter.process(mix.copy(), out, lanes)
        below = np.abs(out) < limiter.threshold
        np.testing.assert_allclose(lanes.sum(axis=0).T[below], out[below], atol=1e-5)
