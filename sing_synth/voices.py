"""Pre-allocated voices mixed all at once: interpolation, envelopes, sustain loops, stealing.

A voice plays one note: two layers (the two velocity classes of the MIDI velocity, see
``dsp.velocity_blend``; an unused layer reads the bank's silent slot 0 with weight 0) of a
rendered note held in :class:`~sing_synth.bank.NoteBank` slots, at a playback rate (pitch bend,
stand-in re-pitch). The pool keeps every voice's state in arrays whose first ``n`` entries are
the sounding voices (a voice that stops is replaced by the last one), so a block works on views,
never on gathered copies. A stretch of frames is rendered for all voices together: a voices x
frames matrix of playback positions, one gather per interpolation point for both layers, the
envelopes as whole-matrix products where a voice starts or decays in the stretch, and the
stereo mix as one (2 x 2 voices) x (2 voices x frames) matrix product. The cost of a block is
a fixed number of NumPy calls on preallocated buffers (``out=``: nothing is allocated in steady
state) plus work proportional to voices x frames, bounded by the pool size.

Changes inside a stretch take effect at their sample without splitting it: a voice starting
``delay`` frames in (note-on), an envelope starting to decay ``env_at`` frames in (note-off,
fade-out) and a channel's pitch bend changing at frame ``kink`` (its playback positions are
piecewise linear). Other changes are applied between stretches (see ``Engine``).

Envelopes are click-free: a key release decays exponentially from the current level (to
-80 dB in ``release`` seconds), a stolen or retriggered voice fades out in ``fade`` seconds,
gain changes (volume, pan, expression) are ramped over ``ramp`` seconds, and the last 10 ms of
a note fade out. A held key longer than the generated note keeps sounding for sustaining
notes: once the playhead reaches the bank slot's loop end it jumps back a loop length (whole
periods of the pitch, the crossfade baked into the slot, see ``bank``).
"""

from __future__ import annotations

import math

import numpy as np

HELD, SUSTAINED, RELEASED, FADING = 0, 1, 2, 3
STEADY, DECAY, FADE = 0, 1, 2  # envelope kinds: level held, key released, faded out (stolen)
SILENT = 1e-4  # -80 dB: a decaying voice below this level is finished
MAX_CHUNK = 2048  # most frames rendered per pass (bounds the scratch matrices)
SLICE_FRAMES = 1024  # from this many frames per stretch, row slices beat one gather (no index matrix)
FAR = 1e30  # a position no voice reaches (no loop)
ENV_GATHER = 4096  # voices x frames per decaying voice from which one gather beats a slice per voice
NO_CHANGE = 1 << 40  # a channel's pitch-change frame when none is pending
ROUND = 2.0**52  # adding it rounds a float64 below 2^51 to an integer, held in the low bits
ROUND_BITS = int(np.float64(ROUND).view(np.int64))


class VoicePool:
    """A fixed set of voices (state arrays, the active ones first), the scratch to render them, and stealing."""

    def __init__(
        self,
        polyphony: int,
        rate: int,
        max_block: int,
        release: float = 0.25,
        fade: float = 0.015,
        ramp: float = 0.005,
    ) -> None:
        if polyphony < 1:
            raise ValueError("polyphony must be at least 1")
        self.polyphony = int(polyphony)
        self.rate = int(rate)
        self.max_block = int(max_block)
        # extra voices let stolen ones fade out instead of being cut
        self.size = n = self.polyphony + max(4, self.polyphony // 2)
        self.n = 0  # active voices: entries 0 .. n-1 of the state arrays
        self.fading = 0  # active voices fading out (they do not count against the polyphony)
        self.serial = 0
        self.ramp = max(1, int(ramp * rate))
        self.end_fade = max(1, int(0.01 * rate))  # the last 10 ms of every note are faded out
        release_log = math.log(SILENT) / max(1.0, release * rate)  # log of the per-sample decay
        fade_log = math.log(SILENT) / max(1.0, fade * rate)
        self.logs = np.array([0.0, release_log, fade_log])  # per envelope kind
        # per channel: playback-rate factor of the pitch bend, and a change pending inside the next
        # stretch (the new factor from frame ``kink`` on; NO_CHANGE: none)
        self.factor = np.ones(16)
        self.next_factor = np.ones(16)
        self.kink = np.full(16, NO_CHANGE, np.int64)
        self._pending: list[int] = []  # channels with a change pending
        # whether some voice may be starting, decaying or ramping its gains (cheaper than asking the arrays)
        self._starts = self._decays = self._ramps = False
        # voice state
        self.state = np.zeros(n, np.int8)
        self.channel = np.zeros(n, np.int64)
        self.key = np.zeros(n, np.int16)
        self.serial_of = np.zeros(n, np.int64)
        self.start_frame = np.zeros(n, np.int64)
        self.key_down = np.zeros(n, bool)
        self.sostenuto = np.zeros(n, bool)
        self.slot = np.zeros((n, 2), np.int64)  # bank slots of the two layers (0: silence)
        self.weight = np.zeros((n, 2), np.float64)
        self.last = np.zeros(n, np.float64)  # last sample of the note
        self.pos = np.zeros(n, np.float64)
        self.ratio = np.ones(n, np.float64)  # playback rate before the pitch bend (stand-in re-pitch)
        self.level = np.ones(n, np.float64)
        self.kind = np.zeros(n, np.int64)  # envelope kind
        # a voice that starts (note-on) or starts decaying (release or fade-out of a steady voice)
        # this many frames into the next stretch: the engine applies note-ons and -offs this way
        # instead of rendering every voice up to their sample
        self.delay = np.zeros(n, np.int64)
        self.env_at = np.zeros(n, np.int64)
        self.gain = np.zeros((n, 2), np.float64)  # current left/right gains
        self.target = np.zeros((n, 2), np.float64)
        self.ramp_left = np.zeros(n, np.int64)
        self.looping = np.zeros(n, bool)
        self.loop_end = np.full(n, FAR)  # where the playhead jumps back (FAR: it plays on to the end)
        self.loop_len = np.zeros(n, np.float64)
        self._fields = [
            self.state, self.channel, self.key, self.serial_of, self.start_frame, self.key_down, self.sostenuto,
            self.slot, self.weight, self.last, self.pos, self.ratio, self.level, self.kind, self.delay, self.env_at,
            self.gain, self.target, self.ramp_left, self.looping, self.loop_end, self.loop_len,
        ]  # fmt: skip
        # mix
        self.mix = np.zeros((2, self.max_block), np.float32)  # left, right
        # frames per pass: the whole block up to MAX_CHUNK (longer passes amortise the fixed cost
        # of a pass; the scratch then takes about 60 bytes x voices x chunk)
        self.chunk = c = max(1, min(self.max_block, MAX_CHUNK))
        self._k = np.arange(c, dtype=np.float64)  # 0 .. c-1
        # per-voice scratch
        self._speed, self._end, self._p0, self._d, self._f, self._f2 = (np.zeros(n) for _ in range(6))
        self._ti, self._ti2 = np.zeros(n, np.int64), np.zeros(n, np.int64)
        self._mask, self._mask2 = np.zeros(n, bool), np.zeros(n, bool)
        # Matrices that vary along both voices and frames are made by matrix products (NumPy's
        # broadcasting would allocate its buffers in every call): ``_c`` (terms x rows, transposed)
        # times ``_b`` (terms x frames), with _b's rows k, 1, then one (k - kink)+ per channel
        # whose pitch bend changes inside the stretch. Rows: layer 0 of every voice, then layer 1.
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
        decays = np.exp(np.outer(self.logs, self._k + 1.0))
        self._env = np.concatenate([np.ones((3, c)), decays], axis=1).astype(np.float32).reshape(-1)
        self._env_row = np.arange(3, dtype=np.int64) * 2 * c + c  # flat offset of each kind's decay

    # Queries ----------------------------------------------------------------------------
    def sounding(self) -> int:
        """Voices that count against the polyphony limit (all but those fading out)."""
        return self.n - self.fading

    def voices(self, channel: int | None = None, key: int | None = None, state: int | None = None) -> np.ndarray:
        """Indices of the active voices matching the filters (valid until a voice starts or stops)."""
        n = self.n
        mask, other = self._mask[:n], self._mask2[:n]
        mask.fill(True)
        for values, want in ((self.channel, channel), (self.key, key), (self.state, state)):
            if want is not None:
                np.equal(values[:n], want, out=other)
                mask &= other
        return np.flatnonzero(mask)

    def keys(self) -> list[int]:
        """Keys of the sounding voices (not fading out), sorted: for tests and status."""
        n = self.n
        return sorted(int(k) for k, s in zip(self.key[:n], self.state[:n]) if s != FADING)

    def loudness(self) -> np.ndarray:
        """Rough current amplitude of every active voice, for stealing."""
        n = self.n
        return self.level[:n] * self.weight[:n].sum(axis=1) * self.target[:n].max(axis=1)

    # Allocation and stealing ------------------------------------------------------------
    def allocate(self, now: int, bank) -> tuple[int, bool]:
        """The index a new note's voice gets (stealing one if needed) and whether one was stolen."""
        stolen = False
        if self.sounding() >= self.polyphony:
            victim = self.victim(now)
            if victim >= 0:
                self.fade_out(victim)
                stolen = True
        if self.n >= self.size:  # every voice busy (fading ones included): cut the quietest fading voice
            fading = np.flatnonzero(self.state[: self.n] == FADING)
            if len(fading):
                quiet = int(fading[np.argmin(self.loudness()[fading])])
            else:
                quiet = max(self.victim(now), 0)
            self.stop(quiet, bank)
            stolen = True
        return self.n, stolen

    def victim(self, now: int) -> int:
        """The voice to steal: released first, then sustained, then the oldest and quietest; never the newest."""
        n = self.n
        state = self.state[:n]
        newest = self.serial if self.polyphony > 1 else -1
        eligible = (state != FADING) & (self.serial_of[:n] != newest)
        if not eligible.any():
            return -1
        category = np.where(state == RELEASED, 0.0, np.where(state == SUSTAINED, 1.0, 2.0))
        age = (now - self.start_frame[:n]) / self.rate
        score = category * 1e6 + self.loudness() / (1.0 + np.maximum(age, 0.0))
        score[~eligible] = np.inf
        return int(np.argmin(score))

    def start(self, i: int, channel: int, key: int, now: int, delay: int = 0) -> None:
        """Start voice ``i`` (the index ``allocate`` gave): call ``set_layers`` and ``set_gain`` next."""
        assert i == self.n < self.size
        self.n += 1
        self.serial += 1
        self.state[i] = HELD
        self.channel[i], self.key[i], self.serial_of[i] = channel, key, self.serial
        self.start_frame[i] = now
        self.pos[i] = 0.0
        self.key_down[i] = True
        self.sostenuto[i] = False
        self.level[i] = 1.0
        self.kind[i] = STEADY
        self.delay[i] = delay
        self._starts |= delay > 0
        self.env_at[i] = 0
        self.ramp_left[i] = 0
        self.looping[i] = False
        self.loop_end[i] = FAR

    def set_layers(self, i: int, bank, slot0: int, w0: float, slot1: int, w1: float, ratio: float, loop: bool = True) -> None:
        """The voice's notes (bank slots and weights), re-pitch ratio, and whether it may loop."""
        slot1 = slot1 if slot1 > 0 and w1 > 0.0 else 0
        self.slot[i] = (slot0, slot1)
        self.weight[i] = (w0, w1 if slot1 else 0.0)
        n = bank.lengths[slot0] if not slot1 else min(bank.lengths[slot0], bank.lengths[slot1])
        self.last[i] = n - 1
        bank.users[slot0] += 1
        if slot1:
            bank.users[slot1] += 1
        self.ratio[i] = ratio
        end, length = bank.loop_end[slot0], bank.loop_len[slot0]
        same = not slot1 or (bank.loop_end[slot1] == end and bank.loop_len[slot1] == length)
        if loop and length > 0 and same:
            self.loop_end[i], self.loop_len[i] = end, length

    def stop(self, i: int, bank) -> None:
        """The voice is silent: free its bank slots; the last active voice takes its place."""
        if i >= self.n:
            return
        for s in self.slot[i]:
            if s > 0:
                bank.users[s] -= 1
        if self.state[i] == FADING:
            self.fading -= 1
        last = self.n - 1
        if i != last:
            for a in self._fields:
                a[i] = a[last]
        self.slot[last] = 0
        self.n = last

    # Envelope and gain changes ----------------------------------------------------------
    def _decay(self, i: int, kind: int, at: int) -> None:
        self.kind[i] = kind
        self.env_at[i] = at
        self._decays = True
        if not self.looping[i]:
            self.loop_end[i] = FAR  # only a held key loops: a released note plays on to its end

    def release(self, i: int, at: int = 0) -> None:
        """Key up: decay from ``at`` frames into the next stretch (``at`` > 0: the voice must be steady)."""
        if self.state[i] in (HELD, SUSTAINED):
            self.state[i] = RELEASED
            self._decay(i, DECAY, at)

    def fade_out(self, i: int, at: int = 0) -> None:
        if self.state[i] != FADING:
            self.fading += 1
        self.state[i] = FADING
        self._decay(i, FADE, at)

    def set_bend(self, channel: int, factor: float, at: int = 0) -> bool:
        """A channel's pitch-bend factor from ``at`` frames into the next stretch. False (nothing
        changed) when a change inside the stretch is already pending on the channel."""
        if at > 0:
            if self.kink[channel] != NO_CHANGE:
                return False
            self.next_factor[channel] = factor
            self.kink[channel] = at
            self._pending.append(channel)
        else:
            self.factor[channel] = self.next_factor[channel] = factor
            if self.kink[channel] != NO_CHANGE:
                self.kink[channel] = NO_CHANGE
                self._pending.remove(channel)
        return True

    def steady(self, voices: np.ndarray) -> bool:
        """Whether these voices can take a change inside the next stretch: sounding from its start,
        not decaying and with no change pending."""
        return not (self.delay[voices].any() or self.kind[voices].any())  # env_at > 0 only with a decay

    def set_gain(self, i: int, left: float, right: float, immediate: bool = False) -> None:
        self.target[i] = (left, right)
        if immediate:
            self.gain[i] = (left, right)
            self.ramp_left[i] = 0
        elif left != self.gain[i, 0] or right != self.gain[i, 1]:
            self.ramp_left[i] = self.ramp
            self._ramps = True

    # Rendering --------------------------------------------------------------------------
    def render(self, bank, a: int, b: int) -> None:
        """Mix every active voice into ``mix[:, a:b]`` and advance it by ``b - a`` frames."""
        if bank is None:
            return
        bank.attached = True
        while a < b:
            m = min(self.chunk, b - a)
            if self.n:
                self._render(bank, a, m)
            self._advance_bends(m)
            a += m

    def _advance_bends(self, m: int) -> None:
        for ch in self._pending[::-1]:
            if self.kink[ch] < m:
                self.factor[ch] = self.next_factor[ch]
                self.kink[ch] = NO_CHANGE
                self._pending.remove(ch)
            else:
                self.kink[ch] -= m

    def _render(self, bank, a: int, m: int) -> None:
        """Render ``m`` frames of the active voices into the mix at ``a``."""
        n, rows = self.n, 2 * self.n
        pos, ratio, channel = self.pos[:n], self.ratio[:n], self.channel[:n]
        speed, end, f, mask, ti = self._speed[:n], self._end[:n], self._f[:n], self._mask[:n], self._ti[:n]
        c, b = self._c, self._b
        np.take(self.factor, channel, out=speed)
        speed *= ratio
        # where the voices are after the stretch: end = pos + speed x m (+ bend changes after their kink)
        np.multiply(speed, float(m), out=end)
        end += pos
        terms = 2
        for ch in self._pending:  # change = ratio x (new factor - factor) from the kink on
            kink = float(self.kink[ch])
            if kink >= m:
                continue
            change = c[terms, :n]
            change.fill(0.0)
            np.equal(channel, ch, out=mask)
            np.multiply(ratio, self.next_factor[ch] - self.factor[ch], out=change, where=mask)
            np.copyto(c[terms, n:rows], change)
            np.subtract(self._k[:m], kink, out=b[terms, :m])
            np.maximum(b[terms, :m], 0.0, out=b[terms, :m])
            np.multiply(change, m - kink, out=f)
            end += f
            self._kinks[terms] = kink
            terms += 1
        bends = terms > 2
        delay = self.delay[:n]
        delayed = self._starts = self._starts and np.count_nonzero(delay) > 0
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
        np.greater_equal(end, self.loop_end[:n], out=mask)
        wraps = np.flatnonzero(mask) if mask.any() else ()
        # the last end_fade samples of a note fade out (reading past the end gives zeros)
        np.subtract(self.last[:n], self.end_fade, out=f)
        np.greater(end, f, out=mask)
        near = np.flatnonzero(mask) if mask.any() else ()

        # positions as flat bank offsets: row r at frame k = speed x k + start + change x (k - kink)+
        stride = float(bank.stride)
        np.copyto(c[0, :n], speed)
        np.copyto(c[0, n:rows], speed)
        for layer in (0, 1):
            np.multiply(self.slot[:n, layer], stride, out=f)
            np.add(f, p0, out=c[1, layer * n : (layer + 1) * n])
        flat = bank.data.reshape(-1)
        y = self._Y[: rows * m].reshape(rows, m)
        p = self._P[: rows * m].reshape(rows, m)
        i = self._I[: rows * m].reshape(rows, m)
        exact = not bends and not len(wraps) and self._exact(speed, p0)
        if exact and m >= SLICE_FRAMES:  # long stretches (offline): copy each row's samples as a slice
            size = len(flat)
            starts, slots = c[1, :rows].astype(np.int64).tolist(), self.slot[:n].T.ravel().tolist()
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
        level, kind = self.level[:n], self.kind[:n]
        decays = np.count_nonzero(kind) if self._decays else 0
        decaying = self._decays = decays > 0
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
        env_at = self.env_at[:n]
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
        np.matmul(self._coefficients(n, self.gain[:n]), y, out=out)
        if self._ramps:
            self._ramps = np.count_nonzero(self.ramp_left[:n]) > 0
            if self._ramps:
                self._ramp(y, out, n, m)
        self.mix[:, a : a + m] += out

        # advance: positions, decays; stop the voices that ended or decayed to silence
        np.copyto(pos, end)
        for v in wraps:
            self.looping[v] = True
            while pos[v] >= self.loop_end[v]:
                pos[v] -= self.loop_len[v]
        np.greater_equal(pos, self.last[:n], out=mask)
        if decaying:
            np.take(self.logs, kind, out=f)
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
                self.stop(int(v), bank)

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
        row = p[v]
        end = self.loop_end[v] + base
        length = self.loop_len[v]
        s = 0
        while row[-1] >= end:
            s += int(np.searchsorted(row[s:], end))
            row[s:] -= length
            p[n + v, s:] -= length

    def _end_fade(self, y: np.ndarray, p: np.ndarray, v: int, n: int, m: int, base: float, sliced: bool) -> None:
        """Fade out the last end_fade samples of voice ``v`` (rows v and n + v; its layer 0 note at
        flat offset ``base``): w = (last - position) / end_fade, clipped to [0, 1]."""
        w, t = self._W[:m], self._T[:m]
        if sliced:  # whole-sample steps, no position matrix
            np.add(self._k[:m], self._c[1, v], out=t)
        else:
            np.copyto(t, p[v])
        np.subtract(self.last[v] + base, t, out=t)
        t *= 1.0 / self.end_fade
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
        rows, f = 2 * n, self._f[:n]
        g, g32 = self._g[:, :rows], self._g32[:, :rows]
        for layer in (0, 1):
            np.multiply(self.weight[:n, layer], self.level[:n], out=f)
            for side in (0, 1):
                np.multiply(f, gains[:, side], out=g[side, layer * n : (layer + 1) * n])
        np.copyto(g32, g)
        return g32

    def _ramp(self, y: np.ndarray, out: np.ndarray, n: int, m: int) -> None:
        """Gains moving linearly towards their targets over ``ramp`` samples: out += (target - gain)
        x min((k + 1) / steps, 1) x signal, a second matrix product; then advance the gains."""
        rows = 2 * n
        ramp, gain, target, dg = self.ramp_left[:n], self.gain[:n], self.target[:n], self._dg[:n]
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
