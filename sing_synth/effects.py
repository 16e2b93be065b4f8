"""The engine's two shared effect buses, as a General MIDI synth has them: reverb and chorus.

Every voice sends a mono signal to each bus, at its channel's send level (CC91 reverb, CC93
chorus; General MIDI's defaults 40 and 0) times its volume and expression; each bus returns a
stereo signal that is added to the dry mix before the limiter. :class:`EffectSettings` holds
the named, ranged settings; :class:`Effects` is the processing, run by ``Engine.process`` in
the audio callback, so it keeps the callback's contract: every array it works in is made in
``__init__``, a block costs a fixed number of NumPy calls per chunk of at most ``chunk`` frames
(plus, every few dozen blocks, one copy of a delay line's history to its front), no torch, no
lock, no disk. An effect whose input has been silent for longer than its tail is reset and
skipped (its output is then exactly zero: sends at 0 leave the dry mix bit for bit as it was).

Why not a library. Spotify's ``pedalboard`` (JUCE's Reverb and Chorus) was measured first, in
the callback's conditions (``bench/live.py --only effects``, figures in ``bench/RESULTS.md``).
It is faster than this module, about a third of its time per block. But it cannot keep the
callback's contract: ``process`` has no output argument, and every call copies its input into a
new JUCE buffer and returns a new NumPy array (34 ``malloc`` calls per call, and bytes that grow
with the block: 2.9 KB at 128 frames, 4.9 KB at 256, where this module's 14-16 are NumPy's
small change, 2.4-2.7 KB), locks each plugin's ``std::mutex``, releases and
re-takes the GIL and calls ``prepare`` again. And its chorus runs one LFO for both channels: a
centred mono send comes back as identical left and right channels (inter-channel correlation
1.0), so a chorus send could not widen a note. None of this can be changed from Python, so the
effects are written here, in NumPy on arrays made in advance.

Reverb: Freeverb (Jezar at Dreampoint's public-domain design, the reverb of FluidSynth up to
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

Chorus: a modulated delay line with three taps per side reading the mono send at delays that
sweep between 5 ms and 5 ms + ``chorus_depth`` at ``chorus_rate`` Hz, each tap at its own LFO
phase (a side's taps 120 degrees apart, the right side's a quarter turn after the left's),
linearly interpolated: the two sides differ, so a centred note spreads across the stereo field.

``lanes`` runs several independent copies at once (one per stem, see ``Engine``'s stems): the
same number of NumPy calls on arrays ``lanes`` times larger.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from .errors import ConfigError
from .mixer import BLAS_ONE_THREAD
from .mixer import _matmul as matmul  # products in stretches that keep BLAS on the calling thread

# Freeverb's tuning at 44.1 kHz (samples)
COMBS = (1116, 1188, 1277, 1356, 1422, 1491, 1557, 1617)
ALLPASSES = (556, 441, 341, 225)
SPREAD = 23  # the right side's combs are this much longer
ALLPASS_FEEDBACK = 0.5
# Return gains at level 1, calibrated against FluidSynth 2.3 with its default settings and
# FluidR3_GM (a sustained note; at the default level 0.5): at the General MIDI default send
# (CC91 40) the reverb returns about 26 dB below the dry note, at CC93 127 the chorus about 3 dB
# above it. (Freeverb's own input and wet scales, 0.015 x 2 and 3, would return 18 dB more.)
REVERB_GAIN = 0.0116
CHORUS_GAIN = 4.0
TAIL_DB = 140.0  # an effect whose input is silent is reset once its tail has decayed this far

CHORUS_TAPS = 3  # per side
CHORUS_MIN_DELAY = 0.005  # seconds: the shortest delay of a chorus tap

# name: (low, high, default, unit, what it does); the command line builds its options from this table
SETTINGS = {
    "room_size": (0.0, 1.0, 0.5, "", "reverb room size: how long the reverb lasts"),
    "damping": (0.0, 1.0, 0.4, "", "reverb damping: how much faster high frequencies die away"),
    "reverb_level": (0.0, 1.0, 0.5, "", "reverb return level (wet)"),
    "chorus_depth": (0.0, 20.0, 8.0, "ms", "chorus depth: how far the delay sweeps"),
    "chorus_rate": (0.05, 5.0, 0.3, "Hz", "chorus rate: how fast the delay sweeps"),
    "chorus_level": (0.0, 1.0, 0.5, "", "chorus return level (wet)"),
}


def describe(name: str) -> str:
    """``0-1 (default 0.5)``, ``0.05-5 Hz (default 0.3)``: a setting's range and default."""
    low, high, default, unit, _ = SETTINGS[name]
    unit = f" {unit}" if unit else ""
    return f"{low:g}-{high:g}{unit} (default {default:g})"


@dataclass(frozen=True)
class EffectSettings:
    """The reverb and chorus buses: on or off, and their settings (ranges in ``SETTINGS``)."""

    reverb: bool = True
    room_size: float = SETTINGS["room_size"][2]
    damping: float = SETTINGS["damping"][2]
    reverb_level: float = SETTINGS["reverb_level"][2]
    chorus: bool = True
    chorus_depth: float = SETTINGS["chorus_depth"][2]
    chorus_rate: float = SETTINGS["chorus_rate"][2]
    chorus_level: float = SETTINGS["chorus_level"][2]

    @classmethod
    def dry(cls) -> EffectSettings:
        """Both buses off: the engine's dry output."""
        return cls(reverb=False, chorus=False)

    @property
    def enabled(self) -> bool:
        return self.reverb or self.chorus

    def summary(self) -> str:
        """One line: which buses are on, with their settings."""
        parts = []
        if self.reverb:
            parts.append(
                f"reverb from CC91 (room size {self.room_size:g}, damping {self.damping:g}, level {self.reverb_level:g})"
            )
        if self.chorus:
            parts.append(
                f"chorus from CC93 (depth {self.chorus_depth:g} ms, rate {self.chorus_rate:g} Hz, level {self.chorus_level:g})"
            )
        return ", ".join(parts) if parts else "none (dry)"

    def check(self) -> None:
        """Refuse a value out of its range (``ConfigError`` naming the setting)."""
        for name, value in asdict(self).items():
            if name not in SETTINGS:
                continue
            low, high, _, unit, what = SETTINGS[name]
            if not (isinstance(value, (int, float)) and math.isfinite(value) and low <= value <= high):
                label = name.replace("_", " ")
                shown = f"{value:g}" if isinstance(value, (int, float)) else repr(value)
                raise ConfigError(f"{label} {shown}{' ' + unit if unit else ''} out of range; use {describe(name)}", name)


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
        # flat index of line r, ``k`` frames into a chunk written at frame w: (w + k - delay_r - 1) x rows + r
        self._base = (np.arange(c + 1)[:, None] - delay[None, :] - 1) * rows + np.arange(rows)
        self._idx = np.zeros((c + 1, rows), np.int64)
        self._read = np.zeros((c + 1) * rows, np.float32)  # the delayed samples, one more than the chunk
        self._in = np.zeros(c * rows, np.float32)  # each comb's input
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
        sides = 2 * self.lanes
        y = self._y[: n * sides].reshape(n, sides)
        a = 0
        while a < n:
            m = min(self.chunk, n - a)
            self._combs(x[:, a : a + m], y[a : a + m], m)
            a += m
        self._allpasses(y, n)
        z = self._z[: sides * n].reshape(sides, n)
        matmul(self._gain, y.T, z)
        out += z.reshape(self.lanes, 2, n)

    def _combs(self, x: np.ndarray, y: np.ndarray, m: int) -> None:
        """The 16 combs of every lane over ``m`` frames; their outputs summed per side into ``y``."""
        lanes, rows = self.lanes, 16 * self.lanes
        if self._w + m > self._clen:  # the history to the front (it does not overlap its new place)
            s = self._span
            np.copyto(self._buf[:s], self._buf[self._w - s : self._w])
            self._w = s
        w = self._w
        # every comb's delayed samples, and the one before them (the damping's second tap)
        idx = self._idx[: m + 1]
        np.add(self._base[: m + 1], w * rows, out=idx)
        read = self._read[: (m + 1) * rows].reshape(m + 1, rows)
        np.take(self._flat, idx, out=read, mode="clip")  # "raise" would buffer
        # feedback: the input plus the damped delayed samples, written at the write position
        inp = self._in[: m * rows].reshape(m, 8, lanes, 2)
        np.copyto(inp, x.T[:, None, :, None])  # a broadcast copy allocates nothing (a broadcast ufunc would)
        new = self._buf[w : w + m]
        t = self._t[: m * rows].reshape(m, rows)
        np.multiply(read[1:], self._c1, out=new)
        np.multiply(read[:m], self._c0, out=t)
        new += t
        new += inp.reshape(m, rows)
        self._w = w + m
        step = max(1, BLAS_ONE_THREAD // self._sides.size)  # frames per product: BLAS stays on this thread
        for a in range(0, m, step):
            np.matmul(read[1 + a : 1 + a + step], self._sides, out=y[a : a + step])

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
        # the LFO phase of every tap at every frame is a matrix product: (frames x 2) x (2 x taps)
        self._coef = np.zeros((2, taps))
        self._coef[0] = self._omega
        self._frames = np.stack([np.arange(c, dtype=np.float64), np.ones(c)], axis=1)
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
        np.add(self._offsets, self._phase, out=self._coef[1])
        np.matmul(self._frames[:m], self._coef, out=p)
        np.sin(p, out=p)
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


class Effects:
    """The reverb and chorus buses of an engine (or of its stems, one lane each).

    :meth:`process` takes the block's sends ``(lanes, 2, n)`` (reverb, then chorus) and adds the
    effects' returns to ``out`` ``(lanes, 2, n)`` (left, right).
    """

    def __init__(self, settings: EffectSettings, rate: int, max_block: int, lanes: int = 1) -> None:
        settings.check()
        self.settings = settings
        self.lanes = lanes
        self.reverb = (
            Reverb(rate, settings.room_size, settings.damping, settings.reverb_level, max_block, lanes)
            if settings.reverb
            else None
        )
        self.chorus = (
            Chorus(rate, settings.chorus_depth, settings.chorus_rate, settings.chorus_level, max_block, lanes)
            if settings.chorus
            else None
        )
        self._units = [(u, bus) for bus, u in enumerate((self.reverb, self.chorus)) if u is not None]
        self._silent = [-1] * len(self._units)  # frames of silent input; -1: idle (reset, skipped)

    @property
    def active(self) -> bool:
        """Whether an effect is still sounding (its input not silent for longer than its tail)."""
        return any(s >= 0 for s in self._silent)

    def reset(self) -> None:
        """Silence every effect at once (a system reset)."""
        for k, (unit, _) in enumerate(self._units):
            unit.reset()
            self._silent[k] = -1

    def process(self, sends: np.ndarray, out: np.ndarray) -> None:
        n = sends.shape[2]
        for k, (unit, bus) in enumerate(self._units):
            x = sends[:, bus]
            if x.any():
                self._silent[k] = 0
            elif self._silent[k] < 0:
                unit.idle(n)  # its output is exactly zero
                continue
            else:
                self._silent[k] += n
                if self._silent[k] > unit.tail:
                    unit.reset()
                    unit.idle(n)
                    self._silent[k] = -1
                    continue
            unit.process(x, out)
