"""Stereo chorus on arrays made in advance: the engine's chorus bus (CC93).

A modulated delay line with three taps per side reading the mono send at delays that
sweep between 5 ms and 5 ms + ``chorus_depth`` at ``chorus_rate`` Hz, each tap at its own LFO
phase (a side's taps 120 degrees apart, the right side's a quarter turn after the left's),
linearly interpolated: the two sides differ, so a centred note spreads across the stereo field.

``lanes`` runs several independent copies at once (one per stem): the same number of NumPy
calls on arrays ``lanes`` times larger. The callback's contract is that of ``effects``.
"""

from __future__ import annotations

import math

import numpy as np

from .blas import matmul

# The return gain at level 1, calibrated against FluidSynth 2.3 with its default settings and
# FluidR3_GM (a sustained note; at the default level 0.5): at CC93 127 the chorus returns about
# 3 dB above the dry note.
CHORUS_GAIN = 4.0
CHORUS_TAPS = 3  # per side
CHORUS_MIN_DELAY = 0.005  # seconds: the shortest delay of a chorus tap


class Chorus:
    """Stereo chorus of ``lanes`` mono inputs: six interpolated taps of a modulated delay line
    (time-major, as the reverb's)."""

    def __init__(self, rate: int, depth_ms: float, rate_hz: float, level: float, max_block: int, lanes: int = 1) -> None:
        self.lanes = lanes
        taps = 2 * CHORUS_TAPS
        self.chunk = c = max(1, min(max_block, 2048))
        self._min = CHORUS_MIN_DELAY * rate  # samples
        self._sweep = depth_ms * 1e-3 * rate
        span = int(math.ceil(self._min + self._sweep)) + 2  # history a chunk reads
        self._len = 2 * span + 2 * c
        self._flat = np.zeros(self._len * lanes, np.float32)
        self._buf = self._flat.reshape(self._len, lanes)
        self._span, self._w = span, span
        self._omega = 2.0 * math.pi * rate_hz / rate  # LFO phase per sample
        self._phase = 0.0
        # taps alternate sides (left, right, ...): the left ones 120 degrees apart, each right one a
        # quarter turn after a left one (in quadrature; at half a turn the sides' delays would mirror
        # each other around the centre, and some pitches would sound the same in both)
        self._offsets = np.radians(np.arange(taps) // 2 * 120.0 + np.arange(taps) % 2 * 90.0)
        # the LFO of every tap at every frame is a matrix product: sin(a + omega k) = cos(omega k) sin(a)
        # + sin(omega k) cos(a), (frames x 2) x (2 x taps), a the tap's phase at the chunk's start
        # (no sine per frame and tap)
        self._angle = np.zeros(taps)
        self._coef = np.zeros((2, taps))
        k = np.arange(c, dtype=np.float64) * self._omega
        self._frames = np.stack([np.cos(k), np.sin(k)], axis=1)
        self._k = np.tile(np.arange(c, dtype=np.float64)[:, None], (1, taps))
        self._lane = np.tile(np.arange(lanes, dtype=np.int64), (c, taps, 1))  # flat index = frame x lanes + lane
        self._p = np.zeros(c * taps)  # positions of the taps (frames of the delay line)
        self._fl = np.zeros(c * taps)
        self._i = np.zeros(c * taps * lanes, np.int64)
        self._f = np.zeros(c * taps * lanes, np.float32)
        self._lo = np.zeros(c * taps * lanes, np.float32)
        self._hi = np.zeros(c * taps * lanes, np.float32)
        self._z = np.zeros(2 * lanes * c, np.float32)
        # taps to sides: (lanes x 2) x (taps x lanes), the level shared by a side's taps
        mix = np.zeros((lanes, 2, taps, lanes), np.float32)
        for lane in range(lanes):
            for tap in range(taps):
                mix[lane, tap % 2, tap, lane] = level * CHORUS_GAIN / CHORUS_TAPS
        self._mix = mix.reshape(2 * lanes, taps * lanes)
        for buf in (self._flat, self._p, self._fl, self._i, self._f, self._lo, self._hi, self._z):
            buf.fill(0)
        self.tail = span + c

    def reset(self) -> None:
        self._buf.fill(0.0)

    def idle(self, n: int) -> None:
        """``n`` frames pass unprocessed: the LFO runs on (the output never depends on the blocks)."""
        self._phase = (self._phase + self._omega * n) % (2.0 * math.pi)

    def process(self, x: np.ndarray, out: np.ndarray) -> None:
        """Add the chorus of ``x`` (lanes, n) to ``out`` (lanes, 2, n)."""
        n = x.shape[1]
        a = 0
        while a < n:
            m = min(self.chunk, n - a)
            self._chunk(x[:, a : a + m], out[:, :, a : a + m], m)
            a += m

    def _chunk(self, x: np.ndarray, out: np.ndarray, m: int) -> None:
        lanes, taps = self.lanes, 2 * CHORUS_TAPS
        cols = taps * lanes
        if self._w + m > self._len:
            s = self._span
            np.copyto(self._buf[:s], self._buf[self._w - s : self._w])
            self._w = s
        w = self._w
        np.copyto(self._buf[w : w + m], x.T)
        # tap k reads frame j at a delay of min + sweep (1 + sin(phase_k + omega j)) / 2
        p = self._p[: m * taps].reshape(m, taps)
        np.add(self._offsets, self._phase, out=self._angle)
        np.sin(self._angle, out=self._coef[0])
        np.cos(self._angle, out=self._coef[1])
        np.matmul(self._frames[:m], self._coef, out=p)
        p *= -0.5 * self._sweep
        p += self._k[:m]
        p += w - self._min - 0.5 * self._sweep  # positions in the delay line
        fl = self._fl[: m * taps].reshape(m, taps)
        np.floor(p, out=fl)
        p -= fl
        i = self._i[: m * cols].reshape(m, taps, lanes)
        f = self._f[: m * cols].reshape(m, taps, lanes)
        np.copyto(i, fl[:, :, None], casting="unsafe")
        np.copyto(f, p[:, :, None], casting="unsafe")
        if lanes > 1:
            i *= lanes
            i += self._lane[:m]
        i, f = i.reshape(m, cols), f.reshape(m, cols)
        lo, hi = self._lo[: m * cols].reshape(m, cols), self._hi[: m * cols].reshape(m, cols)
        np.take(self._flat, i, out=lo, mode="clip")
        i += lanes  # the next frame
        np.take(self._flat, i, out=hi, mode="clip")
        hi -= lo
        hi *= f
        lo += hi
        z = self._z[: 2 * lanes * m].reshape(2 * lanes, m)
        matmul(self._mix, lo.T, z)
        out += z.reshape(lanes, 2, m)
        self._w = w + m
        self._phase = (self._phase + self._omega * m) % (2.0 * math.pi)

