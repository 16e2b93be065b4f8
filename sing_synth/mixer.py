"""The mixing kernel: every active voice of a :class:`~sing_synth.voices.VoicePool` rendered at once.

A stretch of frames is rendered for all voices together: a voices x frames matrix of playback
positions, one gather per interpolation point for both layers of every voice from the bank's
flat buffer, the envelopes as whole-matrix products where a voice starts or decays in the
stretch, and the stereo mix as one (2 x 2 voices) x (2 voices x frames) matrix product. The
pool keeps its sounding voices first in its state arrays, so a block works on views of them,
never on gathered copies. The cost of a block is a fixed number of NumPy calls on buffers made
in ``__init__`` (``out=``: nothing is allocated in steady state; NumPy's broadcasting would
allocate its iterator buffers in every call, so matrices that vary along voices and frames are
made by matrix products) plus work proportional to voices x frames, bounded by the pool size.

Changes inside a stretch take effect at their sample without splitting it: a voice starting
``delay`` frames in (note-on), an envelope starting to decay ``env_at`` frames in (note-off,
fade-out) and a channel's pitch bend changing at frame ``kink`` (its playback positions are
piecewise linear). A voice held past its bank slot's loop end jumps back a loop length (the
crossfade is baked into the slot, see ``bank``); the last ``end_fade`` samples of a note fade
out; gain changes ramp linearly. Voices that end or decay to silence are stopped at the end of
the stretch.
"""

from __future__ import annotations

import numpy as np

from .voices import SILENT, VoicePool

MAX_CHUNK = 2048  # most frames rendered per pass (bounds the scratch matrices)
SLICE_FRAMES = 1024  # from this many frames per stretch, row slices beat one gather (no index matrix)
ENV_GATHER = 4096  # voices x frames per decaying voice from which one gather beats a slice per voice
ROUND = 2.0**52  # adding it rounds a float64 below 2^51 to an integer, held in the low bits
ROUND_BITS = int(np.float64(ROUND).view(np.int64))


class Mixer:
    """The scratch buffers and the kernel that render a voice pool into ``mix`` (left, right)."""

    def __init__(self, pool: VoicePool, max_block: int) -> None:
        self.pool = pool
        self.max_block = int(max_block)
        n = pool.size
        self.mix = np.zeros((2, self.max_block), np.float32)  # left, right
        # frames per pass: the whole block up to MAX_CHUNK (longer passes amortise the fixed cost
        # of a pass; the scratch then takes about 60 bytes x voices x chunk)
        self.chunk = c = max(1, min(self.max_block, MAX_CHUNK))
        self._k = np.arange(c, dtype=np.float64)  # 0 .. c-1
        # per-voice scratch
        self._speed, self._end, self._p0, self._d, self._f, self._f2 = (np.zeros(n) for _ in range(6))
        self._ti, self._ti2 = np.zeros(n, np.int64), np.zeros(n, np.int64)
        self._mask, self._mask2 = np.zeros(n, bool), np.zeros(n, bool)
        # Matrices that vary along both voices and frames are made by matrix products: ``_c``
        # (terms x rows, transposed) times ``_b`` (terms x frames), with _b's rows k, 1, then one
        # (k - kink)+ per channel whose pitch bend changes inside the stretch. Rows: layer 0 of
        # every voice, then layer 1.
        self._c = np.zeros((2 + 16, 2 * n))
        self._b = np.zeros((2 + 16, c))
        self._b[0], self._b[1] = self._k, 1.0
        self._kinks = np.zeros(2 + 16)  # the kink of each bend term
        self._ce = np.zeros((2, n))  # terms x voices of _affine
        self._dg = np.zeros((n, 2))  # gain still to move on a ramp
        self._g = np.zeros((2, 2 * n))  # stereo mix coefficients of the rows
        self._g32 = np.zeros((2, 2 * n), np.float32)
        self._stereo = np.zeros((2, 2, c), np.float32)  # the mix, then a gain ramp's part
        # rows x frames scratch (flat: a view of the first entries is contiguous)
        self._P = np.zeros(2 * n * c)  # playback positions (flat bank offsets)
        self._T = np.zeros(2 * n * c)  # float64 scratch
        self._I = np.zeros(2 * n * c, np.int64)  # flat bank indices
        self._F = np.zeros(2 * n * c, np.float32)  # interpolation fractions
        self._Y = np.zeros(2 * n * c, np.float32)  # voice signals
        self._H = np.zeros(2 * n * c, np.float32)
        self._W = np.zeros(n * c, np.float32)  # a start, end fade or envelope per voice
        for buf in (self._P, self._T, self._I, self._F, self._Y, self._H, self._W):
            buf.fill(0)  # touch every page now: a first write in the audio callback would page-fault
        # envelope tables by kind, each [1 x c, decay^(k+1) for k = 0 .. c-1]: a voice whose decay
        # starts at frame e reads entries c - e + k of its kind's row
        decays = np.exp(np.outer(pool.logs, self._k + 1.0))
        self._env = np.concatenate([np.ones((3, c)), decays], axis=1).astype(np.float32).reshape(-1)
        self._env_row = np.arange(3, dtype=np.int64) * 2 * c + c  # flat offset of each kind's decay

    def render(self, bank, a: int, b: int) -> None:
        """Mix every active voice into ``mix[:, a:b]`` and advance it by ``b - a`` frames."""
        pool = self.pool
        if bank is None:
            return
        bank.attached = True
        while a < b:
            m = min(self.chunk, b - a)
            if pool.n:
                self._render(bank, a, m)
            pool.advance_bends(m)
            a += m

    def _render(self, bank, a: int, m: int) -> None:
        """Render ``m`` frames of the active voices into the mix at ``a``."""
        pool = self.pool
        n, rows = pool.n, 2 * pool.n
        pos, ratio, channel = pool.pos[:n], pool.ratio[:n], pool.channel[:n]
        speed, end, f, mask, ti = self._speed[:n], self._end[:n], self._f[:n], self._mask[:n], self._ti[:n]
        c, b = self._c, self._b
        np.take(pool.factor, channel, out=speed)
        speed *= ratio
        # where the voices are after the stretch: end = pos + speed x m (+ bend changes after their kink)
        np.multiply(speed, float(m), out=end)
        end += pos
        terms = 2
        for ch in pool.pending:  # change = ratio x (new factor - factor) from the kink on
            kink = float(pool.kink[ch])
            if kink >= m:
                continue
            change = c[terms, :n]
            change.fill(0.0)
            np.equal(channel, ch, out=mask)
            np.multiply(ratio, pool.next_factor[ch] - pool.factor[ch], out=change, where=mask)
            np.copyto(c[terms, n:rows], change)
            np.subtract(self._k[:m], kink, out=b[terms, :m])
            np.maximum(b[terms, :m], 0.0, out=b[terms, :m])
            np.multiply(change, m - kink, out=f)
            end += f
            self._kinks[terms] = kink
            terms += 1
        bends = terms > 2
        delay = pool.delay[:n]
        delayed = pool.starts = pool.starts and np.count_nonzero(delay) > 0
        p0 = pos
        if delayed:  # a voice starting d frames in: position 0 at frame d (before that: masked)
            d, p0 = self._d[:n], self._p0[:n]
            np.minimum(delay, m, out=ti)
            np.copyto(d, ti)
            np.multiply(speed, d, out=f)
            np.subtract(pos, f, out=p0)
            end -= f
            for q in range(2, terms):  # the bend changes before the start
                np.subtract(d, self._kinks[q], out=f)
                np.maximum(f, 0.0, out=f)
                f *= c[q, :n]
                p0 -= f
                end -= f
        # sustain loops: voices passing their loop end jump back by the loop length
        np.greater_equal(end, pool.loop_end[:n], out=mask)
        wraps = np.flatnonzero(mask) if mask.any() else ()
        # the last end_fade samples of a note fade out (reading past the end gives zeros)
        np.subtract(pool.last[:n], pool.end_fade, out=f)
        np.greater(end, f, out=mask)
        near = np.flatnonzero(mask) if mask.any() else ()

        # positions as flat bank offsets: row r at frame k = speed x k + start + change x (k - kink)+
        stride = float(bank.stride)
        np.copyto(c[0, :n], speed)
        np.copyto(c[0, n:rows], speed)
        for layer in (0, 1):
            np.multiply(pool.slot[:n, layer], stride, out=f)
            np.add(f, p0, out=c[1, layer * n : (layer + 1) * n])
        flat = bank.data.reshape(-1)
        y = self._Y[: rows * m].reshape(rows, m)
        p = self._P[: rows * m].reshape(rows, m)
        i = self._I[: rows * m].reshape(rows, m)
        exact = not bends and not len(wraps) and self._exact(speed, p0)
        if exact and m >= SLICE_FRAMES:  # long stretches (offline): copy each row's samples as a slice
            size = len(flat)
            starts, slots = c[1, :rows].astype(np.int64).tolist(), pool.slot[:n].T.ravel().tolist()
            for row, (o, slot) in enumerate(zip(starts, slots)):
                if slot == 0:  # an unused layer: its weight is 0 (the row's old, finite samples stay)
                    continue
                lo, hi = max(o, 0), min(o + m, size)  # before a note's start or past its end: masked below
                if lo > o or hi < o + m:
                    y[row] = 0.0
                y[row, lo - o : hi - o] = flat[lo:hi]
        else:
            np.matmul(c[:terms, :rows].T, b[:terms, :m], out=p)
            if exact:  # whole-sample steps from whole-sample positions: one read, no interpolation
                np.copyto(i, p, casting="unsafe")
                np.take(flat, i, out=y, mode="clip")  # out-of-note indices are masked
            else:
                for v in wraps:
                    self._wrap(p, int(v), n, self._c[1, v] - p0[v])
                self._read(flat, p, y, rows, m)
        for v in near:
            self._end_fade(y, p, int(v), n, m, self._c[1, v] - p0[v], exact and m >= SLICE_FRAMES)

        # a start and the release or fade envelopes: level x decay^(k+1) from env_at on (the level
        # goes into the mix coefficients)
        level, kind = pool.level[:n], pool.kind[:n]
        decays = np.count_nonzero(kind) if pool.decays else 0
        decaying = pool.decays = decays > 0
        w = self._W[: n * m].reshape(n, m)
        if delayed:  # silence before a voice's start: clip(k + 1 - d, 0, 1)
            t = self._T[: n * m].reshape(n, m)
            np.subtract(1.0, self._d[:n], out=f)
            self._affine(t, 1.0, f)
            np.clip(t, 0.0, 1.0, out=t)
            np.copyto(w, t)
            np.subtract(delay, m, out=delay)
            np.maximum(delay, 0, out=delay)
            y[:n] *= w
            y[n:rows] *= w
        env_at = pool.env_at[:n]
        if decaying:  # a voice's envelope is entries c - e + k of its kind's table row
            np.minimum(env_at, m, out=ti)  # later than this stretch: steady throughout
            np.take(self._env_row, kind, out=self._ti2[:n])
            np.subtract(self._ti2[:n], ti, out=ti)
            if decays <= max(4, n * m // ENV_GATHER):  # a few: each multiplies by a slice of the table
                for v in np.flatnonzero(kind).tolist():
                    seg = self._env[ti[v] : ti[v] + m]
                    y[v] *= seg
                    y[n + v] *= seg
            else:  # many: one gather of every voice's envelope (the steady ones read ones)
                t, idx = self._P[: n * m].reshape(n, m), self._I[: n * m].reshape(n, m)
                self._affine(t, 1.0, ti)
                np.copyto(idx, t, casting="unsafe")
                np.take(self._env, idx, out=w, mode="clip")
                y[:n] *= w
                y[n:rows] *= w
        # gains and the stereo mix: (2, rows) x (rows, frames)
        out = self._stereo[0, :, :m]
        np.matmul(self._coefficients(n, pool.gain[:n]), y, out=out)
        if pool.ramps:
            pool.ramps = np.count_nonzero(pool.ramp_left[:n]) > 0
            if pool.ramps:
                self._ramp(y, out, n, m)
        self.mix[:, a : a + m] += out

        # advance: positions, decays; stop the voices that ended or decayed to silence
        np.copyto(pos, end)
        for v in wraps:
            pool.looping[v] = True
            while pos[v] >= pool.loop_end[v]:
                pos[v] -= pool.loop_len[v]
        np.greater_equal(pos, pool.last[:n], out=mask)
        if decaying:
            np.take(pool.logs, kind, out=f)
            np.subtract(m, env_at, out=ti)
            np.maximum(ti, 0, out=ti)
            np.copyto(self._f2[:n], ti)
            f *= self._f2[:n]
            np.exp(f, out=f)
            level *= f
            np.subtract(env_at, m, out=env_at)
            np.maximum(env_at, 0, out=env_at)
            np.less(level, SILENT, out=self._mask2[:n])
            mask |= self._mask2[:n]
        if mask.any():
            for v in np.flatnonzero(mask)[::-1]:  # from the last: a stopped voice takes the last one's place
                pool.stop(int(v), bank)

    def _exact(self, speed: np.ndarray, pos: np.ndarray) -> bool:
        """Every voice steps whole samples from a whole-sample position (no bend, no re-pitch)."""
        mask, f = self._mask2[: len(speed)], self._f2[: len(speed)]
        np.equal(speed, 1.0, out=mask)
        if not mask.all():
            return False
        np.floor(pos, out=f)
        np.equal(f, pos, out=mask)
        return bool(mask.all())

    def _wrap(self, p: np.ndarray, v: int, n: int, base: float) -> None:
        """Positions of a looping voice (rows v and n + v; its layer 0 note at flat offset ``base``)
        past its loop end jump back by the loop length."""
        pool = self.pool
        row = p[v]
        end = pool.loop_end[v] + base
        length = pool.loop_len[v]
        s = 0
        while row[-1] >= end:
            s += int(np.searchsorted(row[s:], end))
            row[s:] -= length
            p[n + v, s:] -= length

    def _end_fade(self, y: np.ndarray, p: np.ndarray, v: int, n: int, m: int, base: float, sliced: bool) -> None:
        """Fade out the last end_fade samples of voice ``v`` (rows v and n + v; its layer 0 note at
        flat offset ``base``): w = (last - position) / end_fade, clipped to [0, 1]."""
        pool = self.pool
        w, t = self._W[:m], self._T[:m]
        if sliced:  # whole-sample steps, no position matrix
            np.add(self._k[:m], self._c[1, v], out=t)
        else:
            np.copyto(t, p[v])
        np.subtract(pool.last[v] + base, t, out=t)
        t *= 1.0 / pool.end_fade
        np.clip(t, 0.0, 1.0, out=t)
        np.copyto(w, t)
        y[v] *= w
        y[n + v] *= w

    def _affine(self, out: np.ndarray, scale, offset: np.ndarray) -> None:
        """``out[v, k] = scale[v] x k + offset[v]`` (``scale`` may be a number) for the active voices,
        as a matrix product: NumPy's broadcasting would allocate its buffers in every call."""
        n = len(offset)
        ce = self._ce[:, :n]
        np.copyto(ce[0], scale)
        np.copyto(ce[1], offset)
        np.matmul(ce.T, self._b[:2, : out.shape[1]], out=out)

    def _coefficients(self, n: int, gains: np.ndarray) -> np.ndarray:
        """The (2, rows) stereo coefficients of the rows: layer weight x level x ``gains`` (voices, 2)."""
        pool = self.pool
        rows, f = 2 * n, self._f[:n]
        g, g32 = self._g[:, :rows], self._g32[:, :rows]
        for layer in (0, 1):
            np.multiply(pool.weight[:n, layer], pool.level[:n], out=f)
            for side in (0, 1):
                np.multiply(f, gains[:, side], out=g[side, layer * n : (layer + 1) * n])
        np.copyto(g32, g)
        return g32

    def _ramp(self, y: np.ndarray, out: np.ndarray, n: int, m: int) -> None:
        """Gains moving linearly towards their targets over ``ramp`` samples: out += (target - gain)
        x min((k + 1) / steps, 1) x signal, a second matrix product; then advance the gains."""
        pool = self.pool
        rows = 2 * n
        ramp, gain, target, dg = pool.ramp_left[:n], pool.gain[:n], pool.target[:n], self._dg[:n]
        steps, f, ti = self._d[:n], self._f2[:n], self._ti[:n]
        np.maximum(ramp, 1, out=ti)
        np.copyto(steps, ti)
        np.divide(1.0, steps, out=f)
        t, w = self._T[: n * m].reshape(n, m), self._W[: n * m].reshape(n, m)
        self._affine(t, f, f)
        np.minimum(t, 1.0, out=t)
        np.copyto(w, t)
        z = self._H[: rows * m].reshape(rows, m)
        np.multiply(y[:n], w, out=z[:n])
        np.multiply(y[n:rows], w, out=z[n:rows])
        np.subtract(target, gain, out=dg)
        more = self._stereo[1, :, :m]
        np.matmul(self._coefficients(n, dg), z, out=more)
        out += more
        # advance by min(m, ramp) of the steps; finished ramps land exactly on their targets
        np.minimum(ramp, m, out=ti)
        ramp -= ti
        np.copyto(f, ti)
        f /= steps
        for side in (0, 1):
            dg[:, side] *= f
            gain[:, side] += dg[:, side]
        mask = self._mask2[:n]
        np.equal(ramp, 0, out=mask)
        np.copyto(gain, target, where=mask[:, None])

    def _read(self, flat: np.ndarray, p: np.ndarray, y: np.ndarray, rows: int, m: int) -> None:
        """``y`` = the bank at the flat fractional positions ``p``, linearly interpolated."""
        t = self._T[: rows * m].reshape(rows, m)
        i = self._I[: rows * m].reshape(rows, m)
        frac = self._F[: rows * m].reshape(rows, m)
        hi = self._H[: rows * m].reshape(rows, m)
        # i = floor(p) (or p - 1 at whole p: then frac = 1) by rounding p - 0.5 to an integer float
        # whose low bits are the integer (faster than a float to int conversion)
        np.add(p, ROUND - 0.5, out=t)
        np.subtract(t.view(np.int64), ROUND_BITS, out=i)
        t -= ROUND
        np.subtract(p, t, out=t)
        np.copyto(frac, t)
        np.take(flat, i, out=y, mode="clip")  # out-of-note indices are masked; "raise" would buffer
        i += 1
        np.take(flat, i, out=hi, mode="clip")
        hi -= y
        hi *= frac
        y += hi
