"""Freeverb-style stereo reverb on arrays made in advance: the engine's reverb bus (CC91).

Freeverb (Jezar at Dreampoint's public-domain design, the reverb of FluidSynth up to
2.0): eight parallel damped feedback combs per side (the right side's 23 samples longer), then
four allpasses in series, delays scaled from 44.1 kHz to the rate. Vectorised per block: a
comb's delay (at least 25 ms) is longer than a chunk, so a chunk of every comb's output is a
read of its delay line (one gather for all 16 combs of both sides) and its feedback one
write; an allpass takes the whole block, cut into pieces of its delay, its recursion across
the pieces solved by one small matrix product (offline blocks hold dozens of pieces: one
product instead of a loop over them). One difference from
Freeverb: the damping in the comb loop is a two-tap low-pass, ``(1 - d) y[n] + d y[n - 1]`` with
``d = damping / 2`` (a gain of ``1 - damping`` at Nyquist), instead of a one-pole recursion,
which NumPy cannot run over a block without a per-sample loop or a block-sized matrix product;
the allpasses of both sides share their delays (the combs' spread decorrelates the sides).

``lanes`` runs several independent copies at once (one per stem): the same number of NumPy
calls on arrays ``lanes`` times larger. The callback's contract is that of ``effects``.
"""

from __future__ import annotations

import math

import numpy as np

from .blas import BLAS_ONE_THREAD, matmul

# Freeverb's tuning at 44.1 kHz (samples)
COMBS = (1116, 1188, 1277, 1356, 1422, 1491, 1557, 1617)
ALLPASSES = (556, 441, 341, 225)
SPREAD = 23  # the right side's combs are this much longer
ALLPASS_FEEDBACK = 0.5
# The return gain at level 1, calibrated against FluidSynth 2.3 with its default settings and
# FluidR3_GM (a sustained note; at the default level 0.5): at the General MIDI default send
# (CC91 40) the reverb returns about 26 dB below the dry note. (Freeverb's own input and wet
# scales, 0.015 x 2 and 3, would return 18 dB more.)
REVERB_GAIN = 0.0116
SEGMENT_BYTES = 1 << 20  # the combs' delayed samples gathered at a time before they are summed (about)
TAIL_DB = 140.0  # a reverb whose input is silent is reset once its tail has decayed this far


def _delays(table, rate: int, extra: int = 0) -> list[int]:
    return [max(1, round((d + extra) * rate / 44100)) for d in table]


class Reverb:
    """Freeverb-style stereo reverb of ``lanes`` mono inputs (see the module docstring).

    Delay lines are time-major (frames x lines): a chunk's reads and writes are contiguous
    blocks of rows, which NumPy's ufuncs process without buffering (2-D strided views allocate).
    The combs run in chunks no longer than the shortest comb; each allpass then takes the whole
    block at once: cut into pieces of its delay, its recursion ``b[p] = x[p] + g b[p - 1]`` runs
    across the pieces, which one small matrix product solves (``_powers``).
    """

    def __init__(self, rate: int, room_size: float, damping: float, level: float, max_block: int,
                 lanes: int = 1) -> None:
        self.lanes = lanes
        combs = _delays(COMBS, rate) + _delays(COMBS, rate, SPREAD)  # left side, then right
        self.allpasses = _delays(ALLPASSES, rate)
        self.feedback = 0.7 + 0.28 * room_size  # Freeverb's room scale and offset
        d = 0.5 * damping
        self._c1, self._c0 = self.feedback * (1.0 - d), self.feedback * d  # the two taps of the damped feedback
        gain = level * REVERB_GAIN  # the input gain folded into the output
        rows = lanes * 16  # lines: comb-major, then lane, then side (the sums over combs add rows)
        sides = 2 * lanes
        self.max_block = n = max(1, int(max_block))
        self.chunk = c = min(combs)  # a chunk never reads what it writes
        c = min(c, n)
        span = max(combs) + 1  # history a chunk reads (one sample before the longest delay)
        self._clen = 2 * span + 2 * c  # a linear delay line: its history is copied to the front when full
        self._flat = np.zeros(self._clen * rows, np.float32)
        self._buf = self._flat.reshape(self._clen, rows)
        self._span, self._w = span, span
        delay = np.array(combs, np.int64).reshape(2, 8).T[:, None, :].repeat(lanes, axis=1).reshape(-1)
        # flat index of line r, ``k`` frames into a chunk written at frame w, counted from frame w - span:
        # (span + k - delay_r - 1) x rows + r (the same for every chunk: no index to compute)
        self._base = (span + np.arange(c + 1)[:, None] - delay[None, :] - 1) * rows + np.arange(rows)
        # a segment's delayed samples (each chunk's, and the one before them) and each comb's input:
        # whole chunks, the segment's samples within about SEGMENT_BYTES (kept in cache)
        self._segment = min(n, max(1, SEGMENT_BYTES // (4 * rows * c)) * c)
        self._read = np.zeros((self._segment + 1) * rows, np.float32)
        self._in = np.zeros(self._segment * rows, np.float32)
        self._t = np.zeros(c * rows, np.float32)
        # comb outputs summed per lane and side: rows x (lanes x 2)
        self._sides = np.tile(np.eye(sides, dtype=np.float32), (8, 1))
        self._gain = np.eye(sides, dtype=np.float32) * np.float32(gain)  # the output, transposed back
        # the allpasses' delay lines (linear, as the combs'), and the scratch of a block's solve
        ap_span = max(self.allpasses)
        self._alen = 3 * ap_span + 2 * n
        self._ap = np.zeros((len(self.allpasses), self._alen, sides), np.float32)
        self._ap_span, self._aw = ap_span, ap_span
        # pieces solved at once, at most: each product small enough for BLAS to stay on this thread
        self._pieces = [max(1, int((math.sqrt(1.0 + 4.0 * BLAS_ONE_THREAD / (dl * sides)) - 1.0) / 2.0))
                        for dl in self.allpasses]
        most = max(self._pieces)
        self._powers = _powers(ALLPASS_FEEDBACK, most)
        self._w_in = np.zeros((most + 1) * ap_span * sides, np.float32)
        self._y = np.zeros(n * sides, np.float32)  # the block's comb outputs, then its output
        self._z = np.zeros(sides * n, np.float32)
        for buf in (self._flat, self._ap, self._read, self._in, self._t, self._y, self._z, self._w_in):
            buf.fill(0)  # touch every page now, not in the audio callback
        # silent input for this long: the tail is TAIL_DB down (the longest comb's loop loses the least)
        passes = TAIL_DB / max(-20.0 * math.log10(self.feedback), 1e-3)
        self.tail = int(passes * max(combs)) + 4 * sum(self.allpasses)

    def reset(self) -> None:
        self._buf.fill(0.0)
        self._ap.fill(0.0)

    def idle(self, n: int) -> None:
        """``n`` frames pass unprocessed (silent input, silent state)."""

    def process(self, x: np.ndarray, out: np.ndarray) -> None:
        """Add the reverb of ``x`` (lanes, n) to ``out`` (lanes, 2, n)."""
        for a in range(0, x.shape[1], self.max_block):
            self._block(x[:, a : a + self.max_block], out[:, :, a : a + self.max_block])

    def _block(self, x: np.ndarray, out: np.ndarray) -> None:
        n = x.shape[1]
        lanes, rows, sides = self.lanes, 16 * self.lanes, 2 * self.lanes
        y = self._y[: n * sides].reshape(n, sides)
        step = max(1, BLAS_ONE_THREAD // self._sides.size)  # frames per product: BLAS stays on this thread
        for s in range(0, n, self._segment):
            k = min(self._segment, n - s)
            read = self._read[: (k + 1) * rows].reshape(k + 1, rows)
            inp = self._in[: k * rows].reshape(k, 8, lanes, 2)
            np.copyto(inp, x[:, s : s + k].T[:, None, :, None])  # a broadcast copy allocates nothing (a ufunc would)
            inp = inp.reshape(k, rows)
            a = 0
            while a < k:
                m = min(self.chunk, k - a)
                self._combs(read[a : a + m + 1], inp[a : a + m], m)
                a += m
            for a in range(0, k, step):  # the combs' outputs summed per lane and side
                np.matmul(read[1 + a : 1 + min(a + step, k)], self._sides, out=y[s + a : s + min(a + step, k)])
        self._allpasses(y, n)
        z = self._z[: sides * n].reshape(sides, n)
        matmul(self._gain, y.T, z)
        out += z.reshape(self.lanes, 2, n)

    def _combs(self, read: np.ndarray, inp: np.ndarray, m: int) -> None:
        """The 16 combs of every lane over ``m`` frames: their delayed samples (and the one before
        them, the damping's second tap) into ``read`` (m + 1, lines), their input ``inp`` (m, lines)."""
        if self._w + m > self._clen:  # the history to the front (it does not overlap its new place)
            s = self._span
            np.copyto(self._buf[:s], self._buf[self._w - s : self._w])
            self._w = s
        w = self._w
        np.take(self._flat[(w - self._span) * read.shape[1] :], self._base[: m + 1], out=read, mode="clip")  # "raise" would buffer
        # feedback: the input plus the damped delayed samples, written at the write position
        new = self._buf[w : w + m]
        t = self._t[: new.size].reshape(new.shape)
        np.multiply(read[1:], self._c1, out=new)
        np.multiply(read[:m], self._c0, out=t)
        new += t
        new += inp
        self._w = w + m

    def _allpasses(self, y: np.ndarray, n: int) -> None:
        """The four allpasses over the block ``y`` (n, sides), in place. Each keeps b[k] = y[k] +
        g b[k - D] in its delay line and outputs b[k - D] - y[k]. A block no longer than D reads
        only what was written before it; a longer one, cut into pieces of D frames, has b's
        recursion running across the pieces: [b_0 .. b_P-1] = powers @ [b_-1, y_0 .. y_P-1]."""
        if self._aw + n + self._ap_span > self._alen:  # the history to the front (no overlap)
            s = self._ap_span
            for buf in self._ap:  # stage by stage: NumPy copies a source that may overlap its destination
                np.copyto(buf[:s], buf[self._aw - s : self._aw])
            self._aw = s
        w, sides = self._aw, y.shape[1]
        for buf, delay, most in zip(self._ap, self.allpasses, self._pieces):
            if n <= delay:
                old, new = buf[w - delay : w - delay + n], buf[w : w + n]
                np.multiply(old, ALLPASS_FEEDBACK, out=new)
                new += y
                np.subtract(old, y, out=y)
                continue
            for a in range(0, n, most * delay):  # at most ``most`` pieces at a time
                seg = y[a : a + most * delay]
                k, at = len(seg), w + a
                pieces = -(-k // delay)
                w_in = self._w_in[: (pieces + 1) * delay * sides].reshape(-1, sides)
                np.copyto(w_in[:delay], buf[at - delay : at])
                np.copyto(w_in[delay : delay + k], seg)
                w_in[delay + k :] = 0.0  # the last piece past the block: written, never read
                out = buf[at : at + pieces * delay].reshape(pieces, delay * sides)
                matmul(self._powers[:pieces, : pieces + 1], w_in.reshape(pieces + 1, -1), out)
                np.subtract(buf[at - delay : at - delay + k], seg, out=seg)
        self._aw = w + n


def _powers(g: float, pieces: int) -> np.ndarray:
    """(pieces, pieces + 1): row p is [g^(p+1), g^p, ..., g, 1, 0 ...]: b_p = g^(p+1) b_-1 + sum g^(p-i) y_i."""
    p = np.arange(pieces)[:, None]
    i = np.arange(pieces + 1)[None, :]  # column 0: b_-1; column i: y_(i-1)
    power = p + 1 - i
    return np.where(power >= 0, float(g) ** np.maximum(power, 0), 0.0).astype(np.float32)

