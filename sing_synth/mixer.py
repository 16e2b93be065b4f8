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

With ``sends``, the voices are also mixed into ``sends`` (reverb, chorus: the mono inputs of the
engine's effect buses, see ``effects``) by a second matrix product of the same signals with the
voices' send gains, which ramp on their own: the dry mix is computed exactly as without.

With ``lanes`` (a list of MIDI channels: the stems of a render), each lane's voices are also
mixed on their own into ``stems`` (and ``stem_sends``): the same products over each lane's
own voices (gathered). This is for offline rendering: it allocates a few arrays per stretch;
the mix is computed exactly as without.
"""

from __future__ import annotations

import math

import numpy as np

from .voices import FAR, SILENT, VoicePool

MAX_CHUNK = 2048  # most frames rendered per pass (bounds the scratch matrices)
SLICE_FRAMES = 1024  # from this many frames per stretch, row slices beat one gather (no index matrix)
ENV_GATHER = 4096  # voices x frames per decaying voice from which one gather beats a slice per voice
BLAS_ONE_THREAD = 1 << 17  # multiply-adds per matrix product below which OpenBLAS uses one thread
TIE = 1e-6  # samples: a decay reaching SILENT this close to a whole sample reaches it there
ROUND = 2.0**52  # adding it rounds a float64 below 2^51 to an integer, held in the low bits
ROUND_BITS = int(np.float64(ROUND).view(np.int64))


class Mixer:
    """The scratch buffers and the kernel that render a voice pool into ``mix`` (left, right)."""

    def __init__(
        self, pool: VoicePool, max_block: int, chunk: int | None = None, sends: bool = False, lanes=None
    ) -> None:
        self.pool = pool
        self.max_block = int(max_block)
        n = pool.size
        self.mix = np.zeros((2, self.max_block), np.float32)  # left, right
        self.send = bool(sends)
        self.sends = np.zeros((2, self.max_block), np.float32)  # reverb, chorus (mono each)
        self.lanes = list(lanes) if lanes is not None else None
        if self.lanes is not None:  # stems: (lanes, left and right | reverb and chorus, frames)
            self.lane_of = np.full(16, -1, np.int64)
            self.lane_of[self.lanes] = np.arange(len(self.lanes))
            self.stems = np.zeros((len(self.lanes), 2, self.max_block), np.float32)
            self.stem_sends = np.zeros((len(self.lanes), 2, self.max_block), np.float32)
        # frames per pass: the whole block up to ``chunk`` (default MAX_CHUNK; longer passes amortise
        # the fixed cost of a pass, and the scratch takes about 60 bytes x voices x chunk)
        self.chunk = c = max(1, min(self.max_block, int(chunk or MAX_CHUNK)))
        self._k = np.arange(c, dtype=np.float64)  # 0 .. c-1
        # per-voice scratch
        self._speed, self._end, self._p0, self._d, self._f, self._f2, self._lv = (np.zeros(n) for _ in range(7))
        self._ti, self._ti2 = np.zeros(n, np.int64), np.zeros(n, np.int64)
        self._mask, self._mask2, self._mask3, self._quiet = (np.zeros(n, bool) for _ in range(4))
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
        self._sent = np.zeros((2, 2, c), np.float32)  # the same for the sends
        # rows x frames scratch (flat: a view of the first entries is contiguous)
        self._P = np.zeros(2 * n * c)  # playback positions (flat bank offsets)
        self._T = np.zeros(2 * n * c)  # float64 scratch
        self._I = np.zeros(2 * n * c, np.int64)  # flat bank indices
        self._F = np.zeros(2 * n * c, np.float32)  # interpolation fractions
        self._Y = np.zeros(2 * n * c, np.float32)  # voice signals
        self._H = np.zeros(2 * n * c, np.float32)
        self._W = np.zeros(n * c, np.float32)  # a start, end fade or envelope per voice
        if c <= MAX_CHUNK:  # (offline, longer chunks touch only the rows they use: leave the pages unmapped)
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
        wraps = np.flatnonzero(mask).tolist() if mask.any() else []
        if wraps and pool.unloops:  # released before reaching its loop end: no loop
            wraps = [v for v in wraps if not (pool.unloop[v] and self._released_first(v, p0[v], speed[v], terms))]
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
        sliced = None  # long stretches (offline): the voices whose rows are slices of the bank
        if m >= SLICE_FRAMES:
            sliced = self._whole(speed, p0, terms, wraps)
            self._slices(flat, y, p, sliced, n, m, terms, wraps, p0)
        else:
            _matmul(c[:terms, :rows].T, b[:terms, :m], p)
            if not bends and not wraps and self._exact(speed, p0):
                # whole-sample steps from whole-sample positions: one read, no interpolation
                np.copyto(i, p, casting="unsafe")
                np.take(flat, i, out=y, mode="clip")  # out-of-note indices are masked
            else:
                for v in wraps:
                    self._wrap(p, int(v), n, self._c[1, v] - p0[v])
                self._read(flat, p, y, rows, m)
        for v in near:
            v = int(v)
            self._end_fade(y, p, v, n, m, self._c[1, v] - p0[v], sliced is not None and bool(sliced[v]))

        # a start and the release or fade envelopes: level x decay^(k+1) from env_at on (the level
        # goes into the mix coefficients)
        level, kind = pool.level[:n], pool.kind[:n]
        decays = np.count_nonzero(kind) if pool.decays else 0
        decaying = pool.decays = decays > 0
        w = self._W[: n * m].reshape(n, m)
        if delayed:  # silence before a voice's start (d frames in: a whole number)
            starting = np.count_nonzero(delay)
            if starting <= max(4, n * m // ENV_GATHER):  # a few: zero each one's first frames
                for v, d in zip(np.flatnonzero(delay).tolist(), self._d[:n][delay > 0].tolist()):
                    y[v, : int(d)] = 0.0
                    y[n + v, : int(d)] = 0.0
            else:  # many: one mask of every voice, clip(k + 1 - d, 0, 1)
                t = self._T[: n * m].reshape(n, m)
                np.subtract(1.0, self._d[:n], out=f)
                self._affine(t, 1.0, f)
                np.clip(t, 0.0, 1.0, out=t)
                np.copyto(w, t)
                y[:n] *= w
                y[n:rows] *= w
            np.subtract(delay, m, out=delay)
            np.maximum(delay, 0, out=delay)
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
            kind0 = pool.kind0[:n]
            twice = kind0.any()
            if twice:  # a decay until env_at, then another: the first part, then its end level
                for v in np.flatnonzero(kind0).tolist():
                    e = min(int(env_at[v]), m)
                    start = int(self._env_row[kind0[v]])
                    seg = self._env[start : start + e]
                    y[v, :e] *= seg
                    y[n + v, :e] *= seg
                    y[v, e:] *= seg[-1]
                    y[n + v, e:] *= seg[-1]
            # the level at the end of the stretch; a voice decaying below SILENT in it is silent from
            # that sample on (then stopped): the same samples whatever the stretches
            lv, f2 = self._lv[:n], self._f2[:n]
            np.take(pool.logs, kind, out=lv)
            np.subtract(m, env_at, out=ti)
            np.maximum(ti, 0, out=ti)
            np.copyto(f2, ti)
            lv *= f2
            if twice:
                np.take(pool.logs, kind0, out=f2)
                np.minimum(env_at, m, out=ti)
                np.copyto(self._d[:n], ti)
                f2 *= self._d[:n]
                lv += f2
            np.exp(lv, out=lv)
            lv *= level
            quiet = self._quiet[:n]  # the voices that fall silent in this stretch (then stopped)
            np.less(lv, SILENT * 1.001, out=quiet)
            if quiet.any():
                for v in np.flatnonzero(quiet).tolist():
                    k = self._silent_from(v, m)
                    if k < m:
                        y[v, k:] = 0.0
                        y[n + v, k:] = 0.0
                    else:
                        quiet[v] = False
        # gains and the stereo mix: (2, rows) x (rows, frames)
        if self.lanes is not None:  # first, while the gains are those of this stretch's start
            self._stem_mix(y, n, m, a)
        out = self._stereo[0, :, :m]
        if pool.ramps:
            pool.ramps = np.count_nonzero(pool.ramp_left[:n]) > 0
        if pool.ramps:
            self._ramp(y, out, self._stereo[1], pool.ramp_left[:n], pool.ramp_at[:n], pool.gain[:n], pool.target[:n])
        else:
            _matmul(self._coefficients(n, pool.target[:n]), y, out)
        self.mix[:, a : a + m] += out
        if self.send:  # the effect sends: the same signals with the send gains
            sent = self._sent[0, :, :m]
            if pool.send_ramps:
                pool.send_ramps = np.count_nonzero(pool.send_ramp[:n]) > 0
            if pool.send_ramps:
                args = pool.send_ramp[:n], pool.send_at[:n], pool.send[:n], pool.send_target[:n]
                self._ramp(y, sent, self._sent[1], *args)
            else:
                _matmul(self._coefficients(n, pool.send_target[:n]), y, sent)
            self.sends[:, a : a + m] += sent

        # advance: positions, decays; stop the voices that ended or decayed to silence
        np.copyto(pos, end)
        for v in wraps:
            pool.looping[v] = True
            while pos[v] >= pool.loop_end[v]:
                pos[v] -= pool.loop_len[v]
        np.greater_equal(pos, pool.last[:n], out=mask)
        if decaying:
            np.copyto(level, self._lv[:n])
            np.subtract(env_at, m, out=env_at)
            np.maximum(env_at, 0, out=env_at)
            if pool.kind0[:n].any():
                np.equal(env_at, 0, out=self._mask3[:n])
                np.copyto(pool.kind0[:n], 0, where=self._mask3[:n])  # past env_at: one decay
            if pool.unloops:  # released without reaching the loop: it plays on to its end
                for v in np.flatnonzero(pool.unloop[:n]).tolist():
                    if pool.looping[v] or env_at[v] == 0:
                        pool.unloop[v] = False
                        if not pool.looping[v]:
                            pool.loop_end[v] = FAR
                pool.unloops = bool(pool.unloop[:n].any())
            mask |= self._quiet[:n]
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

    def _released_first(self, v: int, p0: float, speed: float, terms: int) -> bool:
        """Whether voice ``v``, released ``env_at`` frames into the stretch before it ever looped, is
        released before its position reaches the loop end (then it does not loop)."""
        pool = self.pool
        k = int(pool.env_at[v]) - 1  # the last frame before the release
        if k < 0:
            return True
        position = p0 + speed * k
        for q in range(2, terms):
            position += self._c[q, v] * max(k - self._kinks[q], 0.0)
        return position < pool.loop_end[v]

    def _silent_from(self, v: int, m: int) -> int:
        """The first frame of the stretch at which voice ``v``'s decaying envelope has fallen to SILENT
        (m: not in this stretch). Releases fall to SILENT in a whole number of samples from a level
        of 1: the comparison allows for rounding, so that every way of cutting the song into
        stretches finds the same frame."""
        pool = self.pool
        logs, e = pool.logs, min(int(pool.env_at[v]), m)
        depth = math.log(pool.level[v] / SILENT)  # the log-level still to fall
        if depth <= 0.0:
            return 0
        rate = -logs[pool.kind0[v]]
        if rate > 0.0:  # a decay until e: at frame k < e the level has fallen by (k + 1) x rate
            if e * rate >= depth - TIE:
                return max(0, math.ceil(depth / rate - TIE) - 1)
            depth -= e * rate
        return min(m, e + max(0, math.ceil(depth / -logs[pool.kind[v]] - TIE) - 1))

    def _whole(self, speed: np.ndarray, p0: np.ndarray, terms: int, wraps) -> np.ndarray:
        """Voices stepping whole samples from a whole-sample position through the stretch: no
        re-pitch or bend, no bend change, no loop jump (a mask over the active voices)."""
        n = len(speed)
        whole, other, f = self._mask2[:n], self._mask3[:n], self._f2[:n]
        np.equal(speed, 1.0, out=whole)
        np.floor(p0, out=f)
        np.equal(f, p0, out=other)
        whole &= other
        for q in range(2, terms):  # a bend changing inside the stretch on the voice's channel
            np.equal(self._c[q, :n], 0.0, out=other)
            whole &= other
        for v in wraps:
            whole[v] = False
        return whole

    def _slices(self, flat, y, p, whole, n: int, m: int, terms: int, wraps, p0) -> None:
        """The voices' samples for a long stretch: each row of a ``whole`` voice is one slice copy
        of the bank; the others (bent, re-pitched or looping voices: usually few) have their
        positions computed and interpolated row by row."""
        c, b = self._c, self._b
        size = len(flat)
        starts, slots = c[1, : 2 * n].tolist(), self.pool.slot[:n].T.ravel().tolist()
        wrapping = set(wraps)
        for v in range(n):
            if whole[v]:
                for row in (v, n + v):
                    if slots[row] == 0:  # an unused layer: its weight is 0 (the row's old, finite samples stay)
                        continue
                    o = int(starts[row])
                    lo, hi = max(o, 0), min(o + m, size)  # before a note's start or past its end: masked below
                    if lo > o or hi < o + m:
                        y[row] = 0.0
                    y[row, lo - o : hi - o] = flat[lo:hi]
                continue
            for row in (v, n + v):
                np.matmul(c[:terms, row], b[:terms, :m], out=p[row])
            if v in wrapping:
                self._wrap(p, v, n, c[1, v] - p0[v])
            for row in (v, n + v):
                if slots[row]:
                    self._read(flat, p[row : row + 1], y[row : row + 1], 1, m)

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
        _matmul(ce.T, self._b[:2, : out.shape[1]], out)

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

    def _stem_mix(self, y: np.ndarray, n: int, m: int, a: int) -> None:
        """Each lane's share of the mix and of the sends, into ``stems`` and ``stem_sends``: for each
        lane, the products of ``_render`` and ``_ramp`` over its own voices' rows (gathered), so the
        lanes together cost about what the mix does. The gains are not advanced (the mix that
        follows does it)."""
        pool = self.pool
        lane = self.lane_of[pool.channel[:n]]
        groups = [(int(k), np.flatnonzero(lane == k)) for k in np.unique(lane) if k >= 0]
        buses = [(self.stems, pool.ramp_left, pool.ramp_at, pool.gain, pool.target)]
        if self.send:
            buses.append((self.stem_sends, pool.send_ramp, pool.send_at, pool.send, pool.send_target))
        for bus, ramp, at, gain, target in buses:
            ramp, at, gain, target = ramp[:n], at[:n], gain[:n], target[:n]
            at_target = self._coefficients(n, target).copy()
            ramping = bool(ramp.any())
            if ramping:  # as _ramp: the gains until k1, the targets after, a ramp from k0 to k1
                live = ramp > 0
                steps = np.maximum(ramp, 1)
                k0, k1 = min(m, int(at[live].min())), min(m, int((at + steps)[live].max()))
                at_gain = self._coefficients(n, gain).copy()
                change = self._coefficients(n, target - gain).copy()
                k = np.arange(k0, k1, dtype=np.float64)
                w = np.clip((k[None, :] + 1.0 - at[:, None]) / steps[:, None], 0.0, 1.0).astype(np.float32)
            for index, voices in groups:
                rows = np.concatenate([voices, n + voices])
                yl = y[rows]
                if not ramping:
                    bus[index, :, a : a + m] += at_target[:, rows] @ yl
                    continue
                out = np.empty((2, m), np.float32)
                out[:, :k1] = at_gain[:, rows] @ yl[:, :k1]
                out[:, k1:] = at_target[:, rows] @ yl[:, k1:]
                if k1 > k0:
                    ww = w[voices]
                    out[:, k0:k1] += change[:, rows] @ (yl[:, k0:k1] * np.concatenate([ww, ww]))
                bus[index, :, a : a + m] += out

    def _ramp(self, y: np.ndarray, out: np.ndarray, scratch: np.ndarray, ramp, at, gain, target) -> None:
        """The stereo mix of a stretch where gains move linearly towards their targets over ``ramp``
        samples from frame ``at`` (the voices' ``ramp_left``, ``ramp_at``, ``gain``, ``target``, or
        the same of their sends): before the first ramp starts, the mix at the gains; after the
        last one ends, at the targets; in between, at the gains plus (target - gain) x clip((k + 1 -
        at) / steps, 0, 1) x signal (a second matrix product over those frames only, into
        ``scratch``). Then advance the gains."""
        n, m = len(gain), out.shape[1]
        rows = 2 * n
        dg = self._dg[:n]
        steps, f, ti, f1 = self._d[:n], self._f2[:n], self._ti[:n], self._f[:n]
        mask = self._mask2[:n]
        np.greater(ramp, 0, out=mask)
        np.maximum(ramp, 1, out=ti)
        np.copyto(steps, ti)
        ti += at
        k0 = min(m, int(at[mask].min()))  # the first ramp starts here
        k1 = min(m, int(ti[mask].max()))  # from here on, every ramp has arrived
        coef = self._coefficients(n, gain)
        _matmul(coef, y[:, :k1], out[:, :k1])
        if k1 < m:
            _matmul(self._coefficients(n, target), y[:, k1:], out[:, k1:])
        k = k1 - k0
        if k > 0:
            np.divide(1.0, steps, out=f)
            np.subtract(k0 + 1.0, at, out=f1)
            f1 *= f
            t, w = self._T[: n * k].reshape(n, k), self._W[: n * k].reshape(n, k)
            self._affine(t, f, f1)  # (k0 + j + 1 - at) / steps
            np.clip(t, 0.0, 1.0, out=t)
            np.copyto(w, t)
            z = self._H[: rows * k].reshape(rows, k)
            np.copyto(z, y[:, k0:k1])  # (a ufunc reading strided rows would allocate its buffers; a copy does not)
            z[:n] *= w
            z[n:rows] *= w
            np.subtract(target, gain, out=dg)
            more = scratch[:, :k]
            _matmul(self._coefficients(n, dg), z, more)
            out[:, k0:k1] += more
        # advance by the steps made in this stretch; finished ramps land exactly on their targets
        np.subtract(m, at, out=ti)
        np.clip(ti, 0, ramp, out=ti)
        ramp -= ti
        np.subtract(at, m, out=at)
        np.maximum(at, 0, out=at)
        np.copyto(f, ti)
        f /= steps
        np.subtract(target, gain, out=dg)
        for side in (0, 1):
            dg[:, side] *= f
            gain[:, side] += dg[:, side]
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


def _matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
    """``out = a @ b``, in column stretches small enough for BLAS to stay on the calling thread
    (offline stretches are long: a BLAS thread pool would wake, spin and compete for the cores)."""
    cols = max(1, BLAS_ONE_THREAD // max(1, a.shape[0] * a.shape[1]))
    if b.shape[1] <= cols:
        np.matmul(a, b, out=out)
        return
    for j in range(0, b.shape[1], cols):
        np.matmul(a, b[:, j : j + cols], out=out[:, j : j + cols])
