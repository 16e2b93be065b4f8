"""Loudness of a render (ITU-R BS.1770-4) and normalisation to a target under a true-peak ceiling.

:class:`Meter` measures stereo blocks as they are written, in bounded memory (one energy per
channel per 100 ms): K-weighting (the standard's two biquads, made for any sample rate from
their analogue prototypes by the bilinear transform, as libebur128 does; at 48 kHz they are
the standard's own coefficients), mean squares over 400 ms blocks overlapping by 75%, the
absolute (-70 LUFS) and relative (-10 LU) gates, and the true peak: the signal upsampled four
times by a polyphase FIR (Kaiser-windowed sinc, 81 taps, as ``scipy.signal.resample_poly``),
its largest magnitude. pyloudnorm, the usual Python meter, needs the whole signal at once (a
4-hour render would be about 10 GB of float64 copies); the tests check this meter against it.

:func:`normalize` scales a render to a target integrated loudness. Where the gain would lift
the true peak above ``ceiling``, a look-ahead limiter holds it there: its gain follows the
minimum, over ``2 x lookahead``, of ceiling / true peak, smoothed by a moving average over
``lookahead`` (so the gain is never above what a sample needs, and moves over 5 ms at least),
and the gain is raised until the limited render meets the target; where more gain would
only mean more limiting (a dense, peaky render under a low ceiling), it stops and says what it
reached. Everything works on files block by block.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .errors import ConfigError

BLOCK = 0.4  # seconds: a gating block
HOP = 0.1  # seconds: blocks overlap by 75%
ABSOLUTE_GATE = -70.0  # LUFS
RELATIVE_GATE = -10.0  # LU below the absolute-gated loudness
OVERSAMPLE = 4
TAPS = 81  # the interpolation filter's length (``resample_poly``'s for 4x)
LOOKAHEAD = 0.005  # seconds: the limiter's gain ramps over this (and holds twice as long)
CHUNK = 1 << 16  # frames read and written per step
TOLERANCE = 0.05  # LU: close enough to the target
ROUNDS = 8  # gains tried at most, when the limiter has to work
SATURATED = 0.1  # LU of loudness per dB of gain: below this, the limiter takes (nearly) all of it

TARGET_RANGE = (-70.0, 0.0)  # LUFS
CEILING_RANGE = (-20.0, 0.0)  # dBTP
DEFAULT_CEILING = -1.0  # dBTP: EBU R 128's maximum true peak for distribution


def db(x: float) -> float:
    return 20.0 * math.log10(x) if x > 0 else -math.inf


def k_weighting(rate: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(b1, a1, b2, a2)``: BS.1770's pre-filter (a high shelf) and RLB filter (a high pass) at ``rate``."""
    # the shelf: +4 dB above about 1.7 kHz
    f0, gain_db, q = 1681.974450955533, 3.999843853973347, 0.7071752369554196
    k = math.tan(math.pi * f0 / rate)
    vh = 10.0 ** (gain_db / 20.0)
    vb = vh**0.4996667741545416
    a0 = 1.0 + k / q + k * k
    b1 = np.array([(vh + vb * k / q + k * k) / a0, 2.0 * (k * k - vh) / a0, (vh - vb * k / q + k * k) / a0])
    a1 = np.array([1.0, 2.0 * (k * k - 1.0) / a0, (1.0 - k / q + k * k) / a0])
    # the high pass at about 38 Hz
    f0, q = 38.13547087602444, 0.5003270373238773
    k = math.tan(math.pi * f0 / rate)
    a0 = 1.0 + k / q + k * k
    b2 = np.array([1.0, -2.0, 1.0])
    a2 = np.array([1.0, 2.0 * (k * k - 1.0) / a0, (1.0 - k / q + k * k) / a0])
    return b1, a1, b2, a2


def interpolator() -> np.ndarray:
    """The 4x interpolation filter (TAPS, padded to a multiple of OVERSAMPLE), for ``upfirdn``."""
    from scipy.signal import firwin

    h = firwin(TAPS, 1.0 / OVERSAMPLE, window=("kaiser", 5.0)) * OVERSAMPLE
    return np.concatenate([h, np.zeros(-len(h) % OVERSAMPLE)])


def upsampled(h: np.ndarray, x: np.ndarray, history: int) -> np.ndarray:
    """The 4x interpolated points of ``x[history:]`` (frames, 2), ``x[:history]`` being the frames
    before them: every point from the frames up to it (the filter is causal)."""
    from scipy.signal import upfirdn

    n = len(x) - history
    return upfirdn(h, x, up=OVERSAMPLE, axis=0)[OVERSAMPLE * history : OVERSAMPLE * (history + n)]


class Meter:
    """Integrated loudness (LUFS) and true peak of stereo ``(frames, 2)`` blocks, fed in order."""

    def __init__(self, rate: int, true_peak: bool = True) -> None:
        self.rate = int(rate)
        self.measures_peak = true_peak  # False: the loudness and sample peak only (faster)
        self.hop = max(1, round(HOP * rate))
        self._k = k_weighting(rate)
        self._zk = [np.zeros((2, 2)), np.zeros((2, 2))]  # the two biquads' states (order 2, 2 channels)
        self._h = interpolator()
        self._past = np.zeros((len(self._h) // OVERSAMPLE, 2))  # the frames the next block's points need
        self._energy: list[np.ndarray] = []  # per hop: the sum of squares of each channel
        self._part = np.zeros(2)  # the hop being filled
        self._filled = 0
        self.frames = 0
        self.sample_peak = 0.0
        self._true_peak = 0.0

    def add(self, x: np.ndarray) -> None:
        from scipy.signal import lfilter

        x = np.asarray(x, np.float64)
        if x.ndim != 2 or x.shape[1] != 2:
            raise ValueError("the meter takes stereo blocks, (frames, 2)")
        if not len(x):
            return
        self.frames += len(x)
        self.sample_peak = max(self.sample_peak, float(np.max(np.abs(x))))
        if self.measures_peak:
            x_past = np.concatenate([self._past, x])
            points = upsampled(self._h, x_past, len(self._past))
            self._true_peak = max(self._true_peak, float(np.max(np.abs(points))))
            self._past = x_past[-len(self._past) :]
        b1, a1, b2, a2 = self._k
        y, self._zk[0] = lfilter(b1, a1, x, axis=0, zi=self._zk[0])
        y, self._zk[1] = lfilter(b2, a2, y, axis=0, zi=self._zk[1])
        y *= y
        at = 0
        if self._filled:  # finish the hop being filled
            take = min(self.hop - self._filled, len(y))
            self._part += y[:take].sum(axis=0)
            self._filled += take
            at = take
            if self._filled == self.hop:
                self._energy.append(self._part.copy())
                self._part[:] = 0.0
                self._filled = 0
        whole = (len(y) - at) // self.hop
        if whole:
            self._energy.extend(y[at : at + whole * self.hop].reshape(whole, self.hop, 2).sum(axis=1))
            at += whole * self.hop
        if at < len(y):
            self._part += y[at:].sum(axis=0)
            self._filled += len(y) - at

    @property
    def true_peak(self) -> float:
        """The largest magnitude of the signal upsampled four times (and of its samples), linear."""
        return max(self._true_peak, self.sample_peak)

    def loudness(self) -> float:
        """The integrated loudness in LUFS so far (-inf for silence). A render shorter than one
        400 ms block is measured as one block of what there is."""
        hops = np.array(self._energy).reshape(-1, 2)
        per = round(BLOCK / HOP)
        if len(hops) >= per:
            sums = np.cumsum(np.concatenate([np.zeros((1, 2)), hops]), axis=0)
            z = (sums[per:] - sums[:-per]) / (per * self.hop)  # mean square per block and channel
        else:
            frames = len(hops) * self.hop + self._filled
            if frames == 0:
                return -math.inf
            z = ((hops.sum(axis=0) + self._part) / frames)[None]
        power = z.sum(axis=1)  # channel weights: 1 for left and right
        with np.errstate(divide="ignore"):
            level = -0.691 + 10.0 * np.log10(power)
        gated = level >= ABSOLUTE_GATE
        if not gated.any():
            return -math.inf
        relative = -0.691 + 10.0 * math.log10(power[gated].mean()) + RELATIVE_GATE
        gated &= level > relative
        return -0.691 + 10.0 * math.log10(power[gated].mean())


@dataclass
class Normalized:
    """What :func:`normalize` did: the loudness and true peak before and after, the gain, and how
    much the limiter had to hold back at most (dB; 0: it never worked)."""

    before_lufs: float
    before_peak_db: float
    after_lufs: float
    after_peak_db: float
    gain_db: float
    limited_db: float = 0.0
    rounds: int = 1


def check_target(target: float, ceiling: float) -> None:
    lo, hi = TARGET_RANGE
    if not (math.isfinite(target) and lo <= target <= hi):
        raise ConfigError(f"loudness target {target:g} LUFS out of range; use {lo:g} to {hi:g} (e.g. -16 or -23)",
                          "normalize")
    lo, hi = CEILING_RANGE
    if not (math.isfinite(ceiling) and lo <= ceiling <= hi):
        raise ConfigError(
            f"true-peak ceiling {ceiling:g} dBTP out of range; use {lo:g} to {hi:g} (default {DEFAULT_CEILING:g})",
            "true_peak",
        )


class Limiter:
    """The look-ahead gain of a render scaled by ``gain`` under a true-peak ``ceiling`` (linear),
    computed chunk by chunk with enough context on both sides to give every chunk the same gain
    as the whole file would."""

    def __init__(self, rate: int, gain: float, ceiling: float) -> None:
        self.gain, self.ceiling = gain, ceiling
        self.look = max(1, round(LOOKAHEAD * rate))
        self.context = 2 * self.look + TAPS  # frames of signal the gain of a frame depends on, each side
        self._h = interpolator()

    def curve(self, x: np.ndarray, a: int, b: int) -> np.ndarray:
        """The gain of frames ``a:b`` of ``x`` (frames, 2): ``x`` holds ``context`` frames (or the
        file's edge) on each side. Float64, at most ``gain``."""
        from scipy.ndimage import minimum_filter1d, uniform_filter1d

        # the true-peak envelope: per frame, the largest magnitude of its four interpolated points
        # (the filter's delay taken off: the points around the frame)
        delay = (TAPS - 1) // (2 * OVERSAMPLE)  # the interpolation filter's delay, in frames
        padded = np.concatenate([x, np.zeros((delay + 1, 2))])
        points = np.abs(upsampled(self._h, padded, 0)).reshape(len(padded), OVERSAMPLE, 2).max(axis=(1, 2))
        peak = np.maximum(np.abs(x).max(axis=1), points[delay : delay + len(x)])
        need = np.minimum(self.gain, self.ceiling / np.maximum(peak, 1e-12))
        # no gain above what any frame within ``look`` needs, then a moving average over ``look``
        held = minimum_filter1d(need, 2 * self.look + 1, mode="nearest")
        smooth = uniform_filter1d(held, self.look, mode="nearest")
        return np.minimum(smooth, need)[a:b]


def normalize(read, write, target: float, ceiling: float = DEFAULT_CEILING, before: Meter | None = None,
              progress=None) -> Normalized:
    """Scale a render to ``target`` LUFS with its true peak at most ``ceiling`` dBTP.

    ``read(start, stop)`` returns frames of the render's mix as written (float, (frames, 2)), and
    ``read.frames`` and ``read.rate`` are its length and rate; ``write(gain, start, stop, mix)``
    writes the frames ``start:stop`` of every file of the render (the mix, given, and its stems)
    times ``gain`` (frames,). ``before``: the meter that measured the mix as it was written (else
    it is measured here). ``progress(done, total)`` is called as frames are written.
    """
    check_target(target, ceiling)
    rate, frames = read.rate, read.frames
    if before is None:
        before = Meter(rate)
        for a in range(0, frames, CHUNK):
            before.add(read(a, min(frames, a + CHUNK)))
    loud, peak = before.loudness(), before.true_peak
    if not math.isfinite(loud):
        raise ConfigError("the render is silent: it has no loudness to normalise; render without --normalize",
                          "normalize")
    limit = 10.0 ** (ceiling / 20.0)
    gain_db = target - loud
    tried: list[tuple[float, float]] = []  # (gain, loudness once limited)
    for rounds in range(1, ROUNDS + 1):
        gain = 10.0 ** (gain_db / 20.0)
        if peak * gain <= limit:  # the gain alone meets the target: no limiter
            meter = Meter(rate, true_peak=False)  # the true peak scales with the gain (interpolation is linear)
            _pass(read, gain, None, meter, write, progress)
            return Normalized(loud, db(peak), meter.loudness(), db(peak * gain), gain_db, 0.0, rounds)
        meter = Meter(rate)
        _pass(read, gain, limit, meter, None, None)  # a trial: how loud is it once limited?
        after = meter.loudness()
        tried.append((gain_db, after))
        if abs(after - target) <= TOLERANCE or rounds == ROUNDS:
            break
        # the limiter took some loudness: more gain, by the secant through the last two trials (a dB
        # of gain gives less than a dB once the limiter works), at least what is missing
        step = target - after
        if len(tried) > 1:
            (g0, a0), (g1, a1) = tried[-2:]
            if a1 - a0 < SATURATED * (g1 - g0):  # more gain only makes more limiting: keep the last gain
                gain_db = g0
                gain = 10.0 ** (gain_db / 20.0)
                break
            step = max(step, min((target - a1) * (g1 - g0) / (a1 - a0), 4.0 * step + 1.0))
        gain_db += step
    meter = Meter(rate)
    worst = _pass(read, gain, limit, meter, write, progress)
    return Normalized(loud, db(peak), meter.loudness(), db(meter.true_peak), gain_db, -db(worst), rounds)


def _pass(read, gain: float, limit: float | None, meter: Meter, write, progress) -> float:
    """One pass over the render: ``gain``, limited under ``limit`` (None: no limiter), measured by
    ``meter``, written when ``write`` is given; returns the smallest gain / ``gain`` applied."""
    frames = read.frames
    limiter = Limiter(read.rate, gain, limit) if limit is not None else None
    worst = 1.0
    for a in range(0, frames, CHUNK):
        b = min(frames, a + CHUNK)
        if limiter is None:
            x = read(a, b)
            g = np.full(b - a, gain)
        else:
            lo, hi = max(0, a - limiter.context), min(frames, b + limiter.context)
            around = read(lo, hi)
            g = limiter.curve(around, a - lo, b - lo)
            x = around[a - lo : b - lo]
            worst = min(worst, float(g.min()) / gain) if len(g) else worst
        meter.add(x * g[:, None])
        if write is not None:
            write(g, a, b, x)
        if progress is not None:
            progress(b, frames)
    return worst
