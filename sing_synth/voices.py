"""Pre-allocated voices mixed all at once: interpolation, envelopes, crossfaded loops, stealing.

A voice plays one note: one or two layers (the two velocity classes of the MIDI velocity, see
``dsp.velocity_blend``) of a rendered note, held in a :class:`~sing_synth.bank.NoteBank` slot,
at a playback rate (pitch bend, stand-in re-pitch). The pool keeps every voice's state in
arrays (one entry per voice) and renders a stretch of frames for all sounding voices together,
one row per layer: a rows x frames matrix of playback positions, one gather from the bank per
interpolation point (a single one when every voice steps whole samples), envelopes as whole-
matrix operations, and the stereo mix as one (2 x rows) x (rows x frames) matrix product.
The cost of a block is a fixed number of NumPy calls plus work proportional to voices x
frames, bounded by the pool size. The engine renders up to the sample of each event that
changes a voice, then applies it, so every change takes effect at its exact sample.

Envelopes are click-free: a key release decays exponentially from the current level (to
-80 dB in ``release`` seconds), a stolen or retriggered voice fades out in ``fade`` seconds,
gain changes (volume, pan, expression) are ramped over ``ramp`` seconds, and the last 10 ms of
a note fade out. A held key longer than the generated note keeps sounding for sustaining
instruments: once the playhead reaches the end of the steady part it loops a whole number of
periods of the note's pitch, crossfaded.
"""

from __future__ import annotations

import math

import numpy as np

HELD, SUSTAINED, RELEASED, FADING = 0, 1, 2, 3
SILENT = 1e-4  # -80 dB: a decaying voice below this level is finished
# The model's notes are 4 s with the key held 3 s (NSynth): the steady part lies before that.
LOOP_START, LOOP_END = 0.40, 0.70  # fractions of the note length
SUSTAIN_DROP = 0.25  # a note is "sustaining" when its level at LOOP_END is within -12 dB of its body
MAX_CHUNK = 2048  # most frames rendered per pass (bounds the scratch matrices)
SLICE_FRAMES = 1024  # from this many frames per stretch, row slices beat one gather (no index matrix)
FAR = 1e30  # a position no voice reaches (disables a loop or an end fade in whole-matrix formulas)


class VoicePool:
    """A fixed set of voices (state arrays), the scratch buffers to render them, and stealing."""

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
        self.serial = 0
        self.ramp = max(1, int(ramp * rate))
        self.end_fade = max(1, int(0.01 * rate))  # the last 10 ms of every note are faded out
        self.release_log = math.log(SILENT) / max(1.0, release * rate)  # log of the per-sample decay
        self.fade_log = math.log(SILENT) / max(1.0, fade * rate)
        # voice state
        self.active = np.zeros(n, bool)
        self.state = np.zeros(n, np.int8)
        self.channel = np.zeros(n, np.int16)
        self.key = np.zeros(n, np.int16)
        self.serial_of = np.zeros(n, np.int64)
        self.start_frame = np.zeros(n, np.int64)
        self.key_down = np.zeros(n, bool)
        self.sostenuto = np.zeros(n, bool)
        self.slot = np.zeros((n, 2), np.int64)  # bank slots of the two layers (0: silence)
        self.weight = np.zeros((n, 2), np.float32)
        self.length = np.zeros(n, np.float64)
        self.pos = np.zeros(n, np.float64)
        self.ratio = np.ones(n, np.float64)
        self.speed = np.ones(n, np.float64)  # playback rate: ratio x pitch bend
        self.level = np.ones(n, np.float64)
        self.log_decay = np.zeros(n, np.float64)
        # changes that take effect inside the next stretch rendered (frames after its start):
        # a voice that starts later (note-on) and an envelope that starts decaying later (release
        # or fade-out of a steady voice). The engine applies note-ons and -offs this way instead
        # of rendering every voice up to their sample.
        self.delay = np.zeros(n, np.int64)
        self.env_at = np.zeros(n, np.int64)
        self.speed_at = np.full(n, -1, np.int64)  # a pitch-bend change: the new speed from this frame (-1: none)
        self.speed_to = np.ones(n, np.float64)
        self.gain = np.zeros((n, 2), np.float64)  # current left/right gains
        self.target = np.zeros((n, 2), np.float64)
        self.ramp_left = np.zeros(n, np.int64)
        self.can_loop = np.zeros(n, bool)
        self.looping = np.zeros(n, bool)
        self.loop_start = np.zeros(n, np.float64)
        self.loop_len = np.ones(n, np.float64)
        self.xfade = np.ones(n, np.float64)
        # mix and scratch
        self.mix_l = np.zeros(self.max_block, np.float32)
        self.mix_r = np.zeros(self.max_block, np.float32)
        # frames per pass: the whole block up to MAX_CHUNK (longer passes amortise the fixed
        # cost of a pass; the scratch then takes about 100 bytes x voices x chunk)
        self.chunk = c = max(1, min(self.max_block, MAX_CHUNK))
        self._k = np.arange(c, dtype=np.float64)  # 0 .. c-1
        self._k1 = self._k + 1.0
        self._kint = np.arange(c, dtype=np.int64)
        # flat scratch: a (rows, frames) view of the first rows x frames entries is contiguous
        n = 2 * n  # one row per layer
        self._p = np.zeros(n * c)  # playback positions
        self._t = np.zeros(n * c)  # float64 scratch
        self._i = np.zeros(n * c, np.int64)  # sample indices
        self._j = np.zeros(n * c, np.int64)  # flat bank indices
        self._frac = np.zeros(n * c, np.float32)
        self._y = np.zeros(n * c, np.float32)  # voice signals
        self._y2 = np.zeros(n * c, np.float32)  # the loop's other read
        self._hi = np.zeros(n * c, np.float32)
        self._w = np.zeros(n * c, np.float32)  # crossfade, fade, envelope or gain
        self._stereo = np.zeros(2 * c, np.float32)
        for buf in (self._p, self._t, self._i, self._j, self._frac, self._y, self._y2, self._hi, self._w):
            buf.fill(0)  # touch every page now: a first write in the audio callback would page-fault
        self._mono = np.zeros(c, np.float32)
        # envelope rows by kind (0 steady, 1 release, 2 fade-out): decay^(k+1), k = 0 .. c-1
        self._env = np.exp(np.outer([0.0, self.release_log, self.fade_log], self._k1)).astype(np.float32)

    # Queries ----------------------------------------------------------------------------
    def sounding(self) -> int:
        """Voices that count against the polyphony limit (all but those fading out)."""
        return int(np.count_nonzero(self.active & (self.state != FADING)))

    def voices(self, channel: int | None = None, key: int | None = None, state: int | None = None) -> np.ndarray:
        """Indices of the active voices matching the filters."""
        mask = self.active.copy()
        if channel is not None:
            mask &= self.channel == channel
        if key is not None:
            mask &= self.key == key
        if state is not None:
            mask &= self.state == state
        return np.flatnonzero(mask)

    def keys(self) -> list[int]:
        """Keys of the sounding voices (not fading out), sorted: for tests and status."""
        return sorted(int(k) for k in self.key[self.active & (self.state != FADING)])

    def loudness(self) -> np.ndarray:
        """Rough current amplitude of every voice, for stealing."""
        return self.level * self.weight.sum(axis=1) * self.target.max(axis=1)

    # Allocation and stealing ------------------------------------------------------------
    def allocate(self, now: int, bank) -> tuple[int, bool]:
        """A voice for a new note (stealing one if needed) and whether one was stolen."""
        stolen = False
        if self.sounding() >= self.polyphony:
            victim = self.victim(now)
            if victim >= 0:
                self.fade_out(victim)
                stolen = True
        free = np.flatnonzero(~self.active)
        if len(free):
            return int(free[0]), stolen
        # every voice busy (fading ones included): cut the quietest fading voice
        fading = np.flatnonzero(self.state == FADING)
        if len(fading):
            quiet = int(fading[np.argmin(self.loudness()[fading])])
        else:
            quiet = max(self.victim(now), 0)
        self.stop(quiet, bank)
        return quiet, True

    def victim(self, now: int) -> int:
        """The voice to steal: released first, then sustained, then the oldest and quietest; never the newest."""
        newest = self.serial if self.polyphony > 1 else -1
        eligible = self.active & (self.state != FADING) & (self.serial_of != newest)
        if not eligible.any():
            return -1
        category = np.where(self.state == RELEASED, 0.0, np.where(self.state == SUSTAINED, 1.0, 2.0))
        age = (now - self.start_frame) / self.rate
        score = category * 1e6 + self.loudness() / (1.0 + np.maximum(age, 0.0))
        score[~eligible] = np.inf
        return int(np.argmin(score))

    def start(self, i: int, channel: int, key: int, now: int, delay: int = 0) -> None:
        self.serial += 1
        self.active[i] = True
        self.state[i] = HELD
        self.channel[i], self.key[i], self.serial_of[i] = channel, key, self.serial
        self.start_frame[i] = now
        self.pos[i] = 0.0
        self.key_down[i] = True
        self.sostenuto[i] = False
        self.level[i] = 1.0
        self.log_decay[i] = 0.0
        self.delay[i] = delay
        self.env_at[i] = 0
        self.speed_at[i] = -1
        self.ramp_left[i] = 0
        self.looping[i] = False
        self.can_loop[i] = False

    def set_layers(self, i: int, bank, slot0: int, w0: float, slot1: int, w1: float, ratio: float, bend: float) -> None:
        slot1 = slot1 if slot1 > 0 and w1 > 0.0 else 0
        self.slot[i] = (slot0, slot1)
        self.weight[i] = (w0, w1 if slot1 else 0.0)
        n = bank.lengths[slot0] if not slot1 else min(bank.lengths[slot0], bank.lengths[slot1])
        self.length[i] = n
        bank.users[slot0] += 1
        if slot1:
            bank.users[slot1] += 1
        self.ratio[i] = ratio
        self.speed[i] = ratio * bend

    def stop(self, i: int, bank) -> None:
        """The voice is silent: free it and its bank slots."""
        if self.active[i]:
            self.active[i] = False
            for s in self.slot[i]:
                if s > 0:
                    bank.users[s] -= 1
            self.slot[i] = 0

    def setup_loop(self, i: int, bank, pitch: float, allowed: bool) -> None:
        """Decide whether the note sustains (two short energy windows) and place its loop."""
        self.can_loop[i] = False
        n = int(self.length[i])
        if not allowed or n < self.rate // 2:
            return
        start, end = int(LOOP_START * n), int(LOOP_END * n)
        win = min(2048, (end - start) // 4)
        x = bank.data[self.slot[i, 0]]
        body = x[int(0.15 * n) : int(0.15 * n) + win]
        tail = x[end - win : end]
        e_body, e_tail = float(np.dot(body, body)), float(np.dot(tail, tail))
        if e_body <= 0.0 or e_tail < e_body * SUSTAIN_DROP * SUSTAIN_DROP:
            return
        period = self.rate * self.ratio[i] / (440.0 * 2.0 ** ((pitch - 69.0) / 12.0))  # in source samples
        length = end - start
        if period < length / 2:
            length = max(1, round(length / period)) * period
        xfade = float(min(int(0.1 * self.rate), int(length // 3)))
        self.loop_start[i] = end - length
        self.loop_len[i] = length
        self.xfade[i] = xfade
        self.can_loop[i] = xfade >= 16 and end - length >= xfade

    # Envelope and gain changes ----------------------------------------------------------
    def release(self, i: int, at: int = 0) -> None:
        """Key up: decay from ``at`` frames into the next stretch (``at`` > 0: the voice must be steady)."""
        if self.state[i] in (HELD, SUSTAINED):
            self.state[i] = RELEASED
            self.log_decay[i] = self.release_log
            self.env_at[i] = at

    def fade_out(self, i: int, at: int = 0) -> None:
        self.state[i] = FADING
        self.log_decay[i] = self.fade_log
        self.env_at[i] = at

    def set_speed(self, voices: np.ndarray, bend: float, at: int = 0) -> bool:
        """Pitch bend: playback speed ratio x ``bend`` from ``at`` frames into the next stretch.
        False (nothing changed) when one of the voices already has a speed change pending."""
        if at > 0:
            if (self.speed_at[voices] >= 0).any():
                return False
            self.speed_to[voices] = self.ratio[voices] * bend
            self.speed_at[voices] = at
        else:
            self.speed[voices] = self.ratio[voices] * bend
            self.speed_at[voices] = -1
        return True

    def steady(self, voices: np.ndarray) -> bool:
        """Whether these voices can take a change inside the next stretch: sounding from its start,
        not decaying and with no change pending."""
        return not (self.delay[voices].any() or self.env_at[voices].any() or self.log_decay[voices].any())

    def set_gain(self, i: int, left: float, right: float, immediate: bool = False) -> None:
        self.target[i] = (left, right)
        if immediate:
            self.gain[i] = (left, right)
            self.ramp_left[i] = 0
        elif left != self.gain[i, 0] or right != self.gain[i, 1]:
            self.ramp_left[i] = self.ramp

    # Rendering --------------------------------------------------------------------------
    def render(self, bank, a: int, b: int) -> None:
        """Mix every active voice into ``mix_l/mix_r[a:b]`` and advance it by ``b - a`` frames."""
        if bank is None:
            return
        bank.attached = True
        while a < b:
            m = min(self.chunk, b - a)
            idx = np.flatnonzero(self.active)
            if not len(idx):
                return
            self._render(bank, idx, a, m)
            a += m

    def _render(self, bank, idx: np.ndarray, a: int, m: int) -> None:
        """Render ``m`` frames of the voices ``idx`` into the mix at ``a``: one row per layer played."""
        layers = self.weight[idx]
        rv, rl = np.nonzero(layers > 0.0)  # row -> (voice among idx, layer)
        r = len(rv)
        stride = bank.stride
        base = self.slot[idx[rv], rl] * stride  # flat offset of each row's note
        pos, speed, length = self.pos[idx], self.speed[idx], self.length[idx]
        delay = self.delay[idx]
        delayed = bool(delay.any())
        if delayed:  # voices starting inside this stretch: positions count from their start
            played = np.maximum(m - delay, 0)
            end = pos + speed * played
            pos = pos - speed * delay  # where the voice would be at frame 0 (masked below)
        else:
            end = pos + speed * m
        speed_at = self.speed_at[idx]
        bent = speed_at >= 0
        bends = bool(bent.any())
        if bends:  # a pitch-bend change inside this stretch: the new speed from speed_at on
            change = np.where(bent & (speed_at < m), self.speed_to[idx] - speed, 0.0)
            bend_at = np.where(bent, speed_at, m)
            end = end + change * np.maximum(m - bend_at, 0)
        ls, ll, xf = self.loop_start[idx], self.loop_len[idx], self.xfade[idx]
        looping = self.looping[idx]
        looping |= self.can_loop[idx] & (self.state[idx] <= SUSTAINED) & (end >= ls + ll - xf)
        self.looping[idx] = looping
        loops = bool(looping.any())
        p, t, y, w = (x[: r * m].reshape(r, m) for x in (self._p, self._t, self._y, self._w))
        j = self._j[: r * m].reshape(r, m)
        flat = bank.data.reshape(-1)
        # whole-sample steps from whole-sample positions (no bend, no re-pitch): one read, no interpolation
        exact = not loops and not bends and bool(np.all(speed == 1.0)) and bool(np.all(pos == np.floor(pos)))
        if exact and m >= SLICE_FRAMES:  # long stretches (offline): copy each row's samples as a slice
            size = len(flat)
            for row, o in enumerate((base + pos.astype(np.int64)[rv]).tolist()):
                lo, hi = max(o, 0), min(o + m, size)  # before a note's start or past its end: zeroed below
                y[row, lo - o : hi - o] = flat[lo:hi]
        elif exact:
            np.add((base + pos.astype(np.int64)[rv])[:, None], self._kint[:m], out=j)
            np.take(flat, j, out=y, mode="clip")  # before a note's start or past its end: zeroed below
        else:
            # playback positions, wrapped into the loop for looping voices
            np.multiply(speed[rv, None], self._k[:m], out=p)
            p += pos[rv, None]
            if bends:
                np.subtract(self._k[:m], bend_at[rv, None], out=t)
                np.maximum(t, 0.0, out=t)
                t *= change[rv, None]
                p += t
            if loops:
                span = np.where(looping, ll, FAR)[rv, None]
                np.subtract(p, ls[rv, None], out=t)
                t /= span
                np.floor(t, out=t)
                np.maximum(t, 0.0, out=t)
                t *= span
                p -= t
            self._read(flat, stride, base, p, y)
        if loops:
            # crossfade: the read one loop earlier, weighted 0 before the last xfade samples of the loop, 1 at its end
            xf = np.where(looping, xf, 1.0)
            np.subtract(p, np.where(looping, ls + ll - xf, FAR)[rv, None], out=t)
            t /= xf[rv, None]
            np.clip(t, 0.0, 1.0, out=w)
            np.subtract(p, np.where(looping, ll, 0.0)[rv, None], out=t)
            y2 = self._y2[: r * m].reshape(r, m)
            self._read(flat, stride, base, t, y2)
            y2 -= y
            y2 *= w
            y += y2
        if delayed:  # silence before a voice's start
            np.subtract(self._k1[:m], delay[rv, None], out=t)
            np.clip(t, 0.0, 1.0, out=w)
            y *= w
        # the last end_fade samples of a note fade out (reading past the end gives zeros)
        near = ~looping & (end > length - 1 - self.end_fade)
        if near.any():
            if exact:
                np.subtract(np.where(near, length - 1 - pos, FAR)[rv, None], self._k[:m], out=t)
            else:
                np.subtract(np.where(near, length - 1, FAR)[rv, None], p, out=t)
            t *= 1.0 / self.end_fade
            np.clip(t, 0.0, 1.0, out=w)
            y *= w
        # release and fade envelopes: level x decay^(k+1) (the level goes into the mix coefficients)
        level, log_decay = self.level[idx], self.log_decay[idx]
        if log_decay.any():
            env_at = self.env_at[idx]
            kind = (log_decay == self.release_log) + 2 * (log_decay == self.fade_log)
            table = self._env
            np.take(table[:, :m], kind[rv], axis=0, out=w)
            if env_at.any():  # a release or fade-out starting inside the stretch: steady until then
                for row in np.flatnonzero(env_at[rv]).tolist():
                    d = min(int(env_at[rv[row]]), m)  # later than this pass: steady throughout
                    w[row, :d] = 1.0
                    w[row, d:] = table[kind[rv[row]], : m - d]
            y *= w
            self.level[idx] = level * np.exp(log_decay * np.maximum(m - env_at, 0))
            self.env_at[idx] = np.maximum(env_at - m, 0)
        # gains and the stereo mix
        coef = (layers[rv, rl] * level[rv])[:, None]  # layer weight x level, per row
        ramp = self.ramp_left[idx]
        gain, target = self.gain[idx], self.target[idx]
        if ramp.any():
            # gains move linearly towards their targets, reaching them after ``ramp`` samples
            steps = np.maximum(ramp, 1).astype(np.float64)
            np.minimum(self._k1[:m], steps[rv, None], out=t)
            t /= steps[rv, None]
            mono = self._mono[:m]
            for c, mix in ((0, self.mix_l), (1, self.mix_r)):
                np.multiply(t, (target[:, c] - gain[:, c])[rv, None] * coef, out=w)
                w += (gain[:, c][rv, None] * coef).astype(np.float32)
                w *= y
                np.sum(w, axis=0, out=mono)
                mix[a : a + m] += mono
            done = np.minimum(m, ramp)
            gain += (target - gain) * (done / steps)[:, None]
            ramp = ramp - done
            gain[ramp <= 0] = target[ramp <= 0]
            self.gain[idx] = gain
            self.ramp_left[idx] = np.maximum(ramp, 0)
        else:
            g = (gain[rv] * coef).T.astype(np.float32)  # (2, rows) x (rows, frames): one matrix product
            out = self._stereo[: 2 * m].reshape(2, m)
            np.matmul(g, y, out=out)
            self.mix_l[a : a + m] += out[0]
            self.mix_r[a : a + m] += out[1]
        # advance; stop the voices that ended or decayed to silence
        if loops:
            q = end - ls
            end = np.where(looping & (q >= 0), ls + np.mod(q, np.where(looping, ll, 1.0)), end)
        self.pos[idx] = end
        if delayed:
            self.delay[idx] = np.maximum(delay - m, 0)
        if bends:
            now = bent & (speed_at < m)
            self.speed[idx[now]] = self.speed_to[idx[now]]
            self.speed_at[idx] = np.where(now, -1, np.where(bent, speed_at - m, -1))
        ended = (~looping & (end >= length - 1)) | (self.level[idx] < SILENT)
        for i in idx[ended]:
            self.stop(int(i), bank)

    def _read(self, flat: np.ndarray, stride: int, base: np.ndarray, p: np.ndarray, out: np.ndarray) -> None:
        """``out`` = each row's note (flat offset ``base``) at fractional positions ``p``, linearly interpolated."""
        r, m = p.shape
        i, j, frac, hi = (x[: r * m].reshape(r, m) for x in (self._i, self._j, self._frac, self._hi))
        np.copyto(i, p, casting="unsafe")  # truncation = floor for positions >= 0
        np.clip(i, 0, stride - 2, out=i)
        np.subtract(p, i, out=frac)
        np.add(i, base[:, None], out=j)
        np.take(flat, j, out=out, mode="clip")  # indices are in range; "raise" would buffer
        j += 1
        np.take(flat, j, out=hi, mode="clip")
        hi -= out
        hi *= frac
        out += hi
