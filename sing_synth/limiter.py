"""The engine's output stage: master gain, a peak limiter riding the gain per block, a soft knee.

:meth:`Limiter.process` takes the voices' stereo mix ``(2, frames)`` and writes the block the
engine hands out ``(frames, channels)``. The limiter's gain drops at once to what keeps a
block's peak at ``threshold`` and recovers exponentially (time constant ``release`` seconds),
ramped linearly across a block; above the threshold a tanh knee bends the samples so that they
never exceed 1. Real-time: every array it works in is made in ``__init__``.
"""

from __future__ import annotations

import math

import numpy as np


class Limiter:
    """Master ``gain`` (linear), limiting above ``threshold``; blocks of at most ``max_block`` frames."""

    def __init__(self, rate: int, max_block: int, gain: float = 0.5, threshold: float = 0.85, release: float = 0.3):
        self.rate = int(rate)
        self.gain = float(gain)
        self.threshold = float(threshold)
        self.release = float(release)
        self.level = 1.0  # the limiter's own gain
        self._t = np.zeros(max_block, np.float32)
        self._t2 = np.zeros(max_block, np.float32)
        self._ramp = np.arange(1, max_block + 1, dtype=np.float32)

    def process(self, mix: np.ndarray, out: np.ndarray, also: np.ndarray | None = None) -> None:
        """Gain, limit and soft-clip ``mix`` (2, n) in place, then write it into ``out`` (n, 1, 2 or
        more channels: mono is the mid signal, channels past two are silent). ``also`` (stems,
        (lanes, 2, n)) gets the same gain, not the knee: its lanes add up to the mix wherever the
        knee leaves it alone (below ``threshold``)."""
        n = mix.shape[1]
        peak = max(float(mix.max()), -float(mix.min())) * self.gain
        g0 = self.level
        target = self.threshold / peak if peak > self.threshold else 1.0
        if target < g0:
            g1 = target
        else:
            g1 = g0 + (target - g0) * (1.0 - math.exp(-n / (self.release * self.rate)))
        self.level = g1
        if g0 == g1:
            mix *= self.gain * g0
            if also is not None:
                also *= self.gain * g0
        else:
            ramp = self._t[:n]
            np.multiply(self._ramp[:n], (g1 - g0) / n, out=ramp)
            ramp += g0
            ramp *= self.gain
            mix[0] *= ramp
            mix[1] *= ramp
            if also is not None:
                also *= ramp  # (offline: a broadcast may allocate)
        if peak * max(g0, g1) > self.threshold:
            for x in mix:
                self._knee(x)
        if out.shape[1] == 2:
            np.copyto(out, mix.T)
        elif out.shape[1] > 2:
            np.copyto(out[:, :2], mix.T)
            out[:, 2:] = 0.0
        else:
            np.add(mix[0], mix[1], out=out[:, 0])
            out[:, 0] *= 0.70710677

    def _knee(self, x: np.ndarray) -> None:
        """Soft-clip above the threshold: k + (1 - k) * tanh((|x| - k) / (1 - k)), identity below."""
        k = self.threshold
        d, s = self._t[: len(x)], self._t2[: len(x)]
        np.abs(x, out=d)
        d -= k
        np.maximum(d, 0.0, out=d)
        np.multiply(d, 1.0 / (1.0 - k), out=s)
        np.tanh(s, out=s)
        s *= 1.0 - k
        s -= d  # how much |x| moves
        np.sign(x, out=d)
        s *= d
        x += s
