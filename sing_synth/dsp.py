"""Pure signal helpers on NumPy arrays (no torch: safe to import on the audio path).

Velocity mapping (documented contract): the model knows five velocity classes, the NSynth
velocities 25, 50, 75, 100 and 127. A MIDI velocity v in 1..127 is played as a blend of the
two nearest classes, linear in v between their velocities; below 25 the lowest class is used
with a gain of v / 25. So loudness follows velocity continuously, and at a class velocity the
model's own note sounds unchanged.
"""

from __future__ import annotations

import numpy as np

VELOCITY_CLASSES = (25, 50, 75, 100, 127)  # the NSynth velocities: the model's velocity classes, in order


def semitone_ratio(semitones: float) -> float:
    """Frequency (and playback-rate) ratio of an interval of ``semitones`` in equal temperament."""
    return 2.0 ** (semitones / 12.0)


def midi_to_hz(pitch: float) -> float:
    return 440.0 * semitone_ratio(pitch - 69.0)


def hz_to_midi(hz: float) -> float:
    return 69.0 + 12.0 * np.log2(hz / 440.0)


def velocity_class(velocity: int, classes=VELOCITY_CLASSES) -> int:
    """Index of the class nearest to a MIDI (or NSynth) velocity."""
    return int(np.argmin([abs(velocity - c) for c in classes]))


def velocity_blend(velocity: float, classes=VELOCITY_CLASSES) -> tuple[int, int, float, float]:
    """``(low_class, high_class, low_weight, high_weight)`` for a MIDI velocity (see module doc)."""
    v = float(min(max(velocity, 0.0), 127.0))
    if v <= classes[0]:
        return 0, 0, v / classes[0], 0.0
    for i in range(len(classes) - 1):
        lo, hi = classes[i], classes[i + 1]
        if v <= hi:
            a = (v - lo) / (hi - lo)
            return i, i + 1, 1.0 - a, a
    last = len(classes) - 1
    return last, last, 1.0, 0.0


def resample(x: np.ndarray, rate_in: float, rate_out: float, quality: str = "HQ") -> np.ndarray:
    """High-quality resampling (libsoxr) along the last axis; float32 out."""
    x = np.asarray(x, dtype=np.float32)
    if rate_in == rate_out:
        return x
    import soxr

    if x.ndim == 1:
        return soxr.resample(x, rate_in, rate_out, quality=quality).astype(np.float32, copy=False)
    # row by row: the same samples as one multichannel call, and faster for big batches (soxr's
    # interleaved (frames, channels) layout is cache-unfriendly)
    y = np.stack([soxr.resample(r, rate_in, rate_out, quality=quality) for r in x.reshape(-1, x.shape[-1])])
    return y.reshape(*x.shape[:-1], -1).astype(np.float32, copy=False)


def repitch(x: np.ndarray, semitones: float) -> np.ndarray:
    """Shift pitch by resampling (a sampler's re-pitch: duration scales too), same length out."""
    if semitones == 0:
        return np.asarray(x, dtype=np.float32)
    ratio = semitone_ratio(semitones)
    n = len(x)
    pos = np.arange(n, dtype=np.float64) * ratio
    y = np.interp(pos, np.arange(n), x, right=0.0)
    return y.astype(np.float32)


def rms_db(x: np.ndarray) -> float:
    x = np.asarray(x, dtype=np.float64)
    return float(10 * np.log10(np.mean(x * x) + 1e-20))


def float_to_pcm16(x: np.ndarray) -> np.ndarray:
    return np.round(np.clip(x, -1.0, 1.0) * 32767.0).astype(np.int16)


def pcm16_to_float(x: np.ndarray) -> np.ndarray:
    """The model's level convention: int16 / 32767, no other normalisation."""
    return np.asarray(x, dtype=np.float32) / 32767.0


def estimate_f0(x: np.ndarray, rate: float, fmin: float = 25.0, fmax: float = 5000.0) -> float:
    """Fundamental frequency (Hz) of a steady segment, by normalised autocorrelation (YIN-like).

    Returns 0.0 when no periodicity is found.
    """
    x = np.asarray(x, dtype=np.float64)
    x = x - x.mean()
    n = len(x)
    if n < 64 or not np.any(x):
        return 0.0
    max_lag = min(int(rate / fmin), n // 2)
    min_lag = max(int(rate / fmax), 2)
    size = 1 << int(np.ceil(np.log2(2 * n)))
    spec = np.fft.rfft(x, size)
    acf = np.fft.irfft(spec * np.conj(spec), size)[: max_lag + 2]
    energy = np.cumsum(x * x)
    # cumulative mean normalised difference function
    e0 = energy[-1]
    lags = np.arange(max_lag + 2)
    tail = e0 - np.concatenate([[0.0], energy[: max_lag + 1]])  # energy of x[lag:]
    head = energy[n - 1 - lags]  # energy of x[:n - lag]
    d = head + tail - 2 * acf
    d[0] = 0.0
    cum = np.cumsum(d[1:])
    cmnd = np.ones_like(d)
    cmnd[1:] = d[1:] * np.arange(1, len(d)) / np.maximum(cum, 1e-20)
    search = cmnd[min_lag : max_lag + 1]
    below = np.nonzero(search < 0.2)[0]
    if len(below):
        k = below[0]
        while k + 1 < len(search) and search[k + 1] < search[k]:
            k += 1
    else:
        k = int(np.argmin(search))
        if search[k] > 0.5:
            return 0.0
    lag = k + min_lag
    if 1 <= lag < len(cmnd) - 1:
        a, b, c = cmnd[lag - 1], cmnd[lag], cmnd[lag + 1]
        denom = a - 2 * b + c
        shift = 0.5 * (a - c) / denom if denom != 0 else 0.0
    else:
        shift = 0.0
    return float(rate / (lag + shift))


def cents(f: float, ref: float) -> float:
    return float(1200.0 * np.log2(f / ref))
