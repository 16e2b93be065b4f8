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
engine's effect buses, see ``effects``) with the voices' send gains, which ramp on their own:
where they ramp as the gains do (none ramping, or a volume or expression change moving both),
the mix and the sends come from one (4 x rows) product, else from one product each (the same
sums: the dry mix moves only by float rounding, within 1e-7, see ``mix_gains.mix``).

With ``lanes`` (a list of MIDI channels: the stems of a render), each lane's voices are also
mixed on their own into ``stems`` (and ``stem_sends``): the same products over each lane's
own voices (gathered). This is for offline rendering: it allocates a few arrays per stretch;
the mix is computed exactly as without.
The kernel is here; its buffers are made by ``mix_scratch``, the bank is read at the voices'
positions by ``mix_read`` and the signals are mixed at their gains and sends by ``mix_gains``.
"""

from __future__ import annotations

import math

import numpy as np

from . import mix_gains, mix_read
from .blas import matmul
from .mix_scratch import MAX_CHUNK, Scratch
from .voices import FAR, SILENT, VoicePool

SLICE_FRAMES = 1024  # from this many frames per stretch, row slices beat one gather (no index matrix)
ENV_GATHER = 4096  # voices x frames per decaying voice from which one gather beats a slice per voice
TIE = 1e-6  # samples: a decay reaching SILENT this close to a whole sample reaches it there


class Mixer:
    """The kernel that renders a voice pool into ``mix`` (left, right), on its :class:`Scratch`."""

    def __init__(
        self, pool: VoicePool, max_block: int, chunk: int | None = None, sends: bool = False, lanes=None
    ) -> None:
        self.pool = pool
        self.max_block = int(max_block)
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
        self.s = Scratch(pool, c)

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
        pool, s = self.pool, self.s
        n, rows = pool.n, 2 * pool.n
        pos, ratio, channel = pool.pos[:n], pool.ratio[:n], pool.channel[:n]
        speed, end, f, mask, ti = s.speed[:n], s.end[:n], s.f[:n], s.mask[:n], s.ti[:n]
        c, b = s.c, s.b
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
            np.subtract(s.k[:m], kink, out=b[terms, :m])
            np.maximum(b[terms, :m], 0.0, out=b[terms, :m])
            np.multiply(change, m - kink, out=f)
            end += f
            s.kinks[terms] = kink
            terms += 1
        bends = terms > 2
        delay = pool.delay[:n]
        delayed = pool.starts = pool.starts and np.count_nonzero(delay) > 0
        p0 = pos
        if delayed:  # a voice starting d frames in: position 0 at frame d (before that: masked)
            d, p0 = s.d[:n], s.p0[:n]
            np.minimum(delay, m, out=ti)
            np.copyto(d, ti)
            np.multiply(speed, d, out=f)
            np.subtract(pos, f, out=p0)
            end -= f
            for q in range(2, terms):  # the bend changes before the start
                np.subtract(d, s.kinks[q], out=f)
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
        y = s.Y[: rows * m].reshape(rows, m)
        p = s.P[: rows * m].reshape(rows, m)
        i = s.I[: rows * m].reshape(rows, m)
        sliced = None  # long stretches (offline): the voices whose rows are slices of the bank
        if m >= SLICE_FRAMES:
            sliced = mix_read.whole_steps(s, speed, p0, terms, wraps)
            mix_read.slices(s, pool, flat, y, p, sliced, n, m, terms, wraps, p0)
        else:
            matmul(c[:terms, :rows].T, b[:terms, :m], p)
            if not bends and not wraps and mix_read.exact(s, speed, p0):
                # whole-sample steps from whole-sample positions: one read, no interpolation
                np.copyto(i, p, casting="unsafe")
                np.take(flat, i, out=y, mode="clip")  # out-of-note indices are masked
            else:
                for v in wraps:
                    mix_read.wrap(pool, p, int(v), n, s.c[1, v] - p0[v])
                mix_read.read(s, flat, p, y, rows, m)
        for v in near:
            v = int(v)
            mix_read.end_fade(s, pool, y, p, v, n, m, s.c[1, v] - p0[v], sliced is not None and bool(sliced[v]))

        # a start and the release or fade envelopes: level x decay^(k+1) from env_at on (the level
        # goes into the mix coefficients)
        level, kind = pool.level[:n], pool.kind[:n]
        decays = np.count_nonzero(kind) if pool.decays else 0
        decaying = pool.decays = decays > 0
        w = s.W[: n * m].reshape(n, m)
        if delayed:  # silence before a voice's start (d frames in: a whole number)
            starting = np.count_nonzero(delay)
            if starting <= max(4, n * m // ENV_GATHER):  # a few: zero each one's first frames
                for v, d in zip(np.flatnonzero(delay).tolist(), s.d[:n][delay > 0].tolist()):
                    y[v, : int(d)] = 0.0
                    y[n + v, : int(d)] = 0.0
            else:  # many: one mask of every voice, clip(k + 1 - d, 0, 1)
                t = s.T[: n * m].reshape(n, m)
                np.subtract(1.0, s.d[:n], out=f)
                s.affine(t, 1.0, f)
                np.clip(t, 0.0, 1.0, out=t)
                np.copyto(w, t)
                y[:n] *= w
                y[n:rows] *= w
            np.subtract(delay, m, out=delay)
            np.maximum(delay, 0, out=delay)
        env_at = pool.env_at[:n]
        if decaying:  # a voice's envelope is entries c - e + k of its kind's table row
            np.minimum(env_at, m, out=ti)  # later than this stretch: steady throughout
            np.take(s.env_row, kind, out=s.ti2[:n])
            np.subtract(s.ti2[:n], ti, out=ti)
            if decays <= max(4, n * m // ENV_GATHER):  # a few: each multiplies by a slice of the table
                for v in np.flatnonzero(kind).tolist():
                    seg = s.env[ti[v] : ti[v] + m]
                    y[v] *= seg
                    y[n + v] *= seg
            else:  # many: one gather of every voice's envelope (the steady ones read ones)
                t, idx = s.P[: n * m].reshape(n, m), s.I[: n * m].reshape(n, m)
                s.affine(t, 1.0, ti)
                np.copyto(idx, t, casting="unsafe")
                np.take(s.env, idx, out=w, mode="clip")
                y[:n] *= w
                y[n:rows] *= w
            kind0 = pool.kind0[:n]
            twice = kind0.any()
            if twice:  # a decay until env_at, then another: the first part, then its end level
                for v in np.flatnonzero(kind0).tolist():
                    e = min(int(env_at[v]), m)
                    start = int(s.env_row[kind0[v]])
                    seg = s.env[start : start + e]
                    y[v, :e] *= seg
                    y[n + v, :e] *= seg
                    y[v, e:] *= seg[-1]
                    y[n + v, e:] *= seg[-1]
            # the level at the end of the stretch; a voice decaying below SILENT in it is silent from
            # that sample on (then stopped): the same samples whatever the stretches
            lv, f2 = s.lv[:n], s.f2[:n]
            np.take(pool.logs, kind, out=lv)
            np.subtract(m, env_at, out=ti)
            np.maximum(ti, 0, out=ti)
            np.copyto(f2, ti)
            lv *= f2
            if twice:
                np.take(pool.logs, kind0, out=f2)
                np.minimum(env_at, m, out=ti)
                np.copyto(s.d[:n], ti)
                f2 *= s.d[:n]
                lv += f2
            np.exp(lv, out=lv)
            lv *= level
            quiet = s.quiet[:n]  # the voices that fall silent in this stretch (then stopped)
            np.less(lv, SILENT * 1.001, out=quiet)
            if quiet.any():
                for v in np.flatnonzero(quiet).tolist():
                    k = self._silent_from(v, m)
                    if k < m:
                        y[v, k:] = 0.0
                        y[n + v, k:] = 0.0
                    else:
                        quiet[v] = False
        # gains and the stereo mix (and the sends): (2 or 4, rows) x (rows, frames)
        if self.lanes is not None:  # first, while the gains are those of this stretch's start
            mix_gains.stem_mix(s, pool, self.lane_of, self.stems, self.stem_sends if self.send else None, y, n, m, a)
        mix_gains.mix(s, pool, y, self.mix[:, a : a + m], self.sends[:, a : a + m] if self.send else None)

        # advance: positions, decays; stop the voices that ended or decayed to silence
        np.copyto(pos, end)
        for v in wraps:
            pool.looping[v] = True
            while pos[v] >= pool.loop_end[v]:
                pos[v] -= pool.loop_len[v]
        np.greater_equal(pos, pool.last[:n], out=mask)
        if decaying:
            np.copyto(level, s.lv[:n])
            np.subtract(env_at, m, out=env_at)
            np.maximum(env_at, 0, out=env_at)
            if pool.kind0[:n].any():
                np.equal(env_at, 0, out=s.mask3[:n])
                np.copyto(pool.kind0[:n], 0, where=s.mask3[:n])  # past env_at: one decay
            if pool.unloops:  # released without reaching the loop: it plays on to its end
                for v in np.flatnonzero(pool.unloop[:n]).tolist():
                    if pool.looping[v] or env_at[v] == 0:
                        pool.unloop[v] = False
                        if not pool.looping[v]:
                            pool.loop_end[v] = FAR
                pool.unloops = bool(pool.unloop[:n].any())
            mask |= s.quiet[:n]
        if mask.any():
            for v in np.flatnonzero(mask)[::-1]:  # from the last: a stopped voice takes the last one's place
                pool.stop(int(v), bank)

    def _released_first(self, v: int, p0: float, speed: float, terms: int) -> bool:
        """Whether voice ``v``, released ``env_at`` frames into the stretch before it ever looped, is
        released before its position reaches the loop end (then it does not loop)."""
        pool, s = self.pool, self.s
        k = int(pool.env_at[v]) - 1  # the last frame before the release
        if k < 0:
            return True
        position = p0 + speed * k
        for q in range(2, terms):
            position += s.c[q, v] * max(k - s.kinks[q], 0.0)
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

