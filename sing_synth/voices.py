"""Pre-allocated voices: playback with interpolation, envelopes, crossfaded loops, and stealing.

A voice plays one note: one or two layers (the two velocity classes of the MIDI velocity, see
``dsp.velocity_blend``) of a rendered note at a playback rate (pitch bend, stand-in re-pitch).
Voices render lazily into the block: each keeps a cursor, and the engine renders a voice up
to the sample offset of an event that changes it before applying the event, so every change
takes effect at its exact sample. Every buffer is allocated once, in :class:`VoicePool`.

Envelopes are click-free: a key release decays exponentially from the current level (to
-80 dB in ``release`` seconds), a stolen or retriggered voice fades out in ``fade`` seconds,
gain changes (volume, pan, expression) are ramped over ``ramp`` seconds. A held key longer
than the generated note keeps sounding for sustaining instruments: once the playhead reaches
the end of the steady part it loops a whole number of periods of the note's pitch, crossfaded.
"""

from __future__ import annotations

import math

import numpy as np

HELD, SUSTAINED, RELEASED, FADING = 0, 1, 2, 3
SILENT = 1e-4  # -80 dB: a decaying voice below this level is finished
# The model's notes are 4 s with the key held 3 s (NSynth): the steady part lies before that.
LOOP_START, LOOP_END = 0.40, 0.70  # fractions of the note length
SUSTAIN_DROP = 0.25  # a note is "sustaining" when its level at LOOP_END is within -12 dB of its body


class Voice:
    """State of one voice (plain attributes; lives in the pool for the whole session)."""

    __slots__ = (
        "active", "state", "channel", "key", "serial", "start_frame", "cursor",
        "src0", "src1", "w0", "w1", "length", "pos", "ratio", "rate",
        "key_down", "sostenuto", "level", "decay", "table",
        "gl", "gr", "tl", "tr", "ramp_left",
        "can_loop", "looping", "loop_start", "loop_len", "xfade",
    )  # fmt: skip

    def __init__(self) -> None:
        self.active = False
        self.state = HELD
        self.channel = self.key = self.serial = self.start_frame = self.cursor = 0
        self.src0 = self.src1 = None
        self.w0 = self.w1 = 0.0
        self.length = 0
        self.pos = 0.0
        self.ratio = self.rate = 1.0
        self.key_down = self.sostenuto = False
        self.level = 1.0
        self.decay = 1.0
        self.table = None
        self.gl = self.gr = self.tl = self.tr = 0.0
        self.ramp_left = 0
        self.can_loop = self.looping = False
        self.loop_start = self.loop_len = 0.0
        self.xfade = 1.0

    @property
    def loudness(self) -> float:
        """Rough current amplitude, for stealing."""
        return self.level * (self.w0 + self.w1) * max(self.tl, self.tr)


class VoicePool:
    """A fixed set of voices, the scratch buffers to render them, and the stealing policy."""

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
        # extra slots let stolen voices fade out instead of being cut
        self.voices = [Voice() for _ in range(self.polyphony + max(4, self.polyphony // 2))]
        self.serial = 0
        self.ramp = max(1, int(ramp * rate))
        self.end_fade = max(1, int(0.01 * rate))  # the last 10 ms of every note are faded out
        n = self.max_block
        self.release_decay = SILENT ** (1.0 / max(1.0, release * rate))
        self.fade_decay = SILENT ** (1.0 / max(1.0, fade * rate))
        k = np.arange(n, dtype=np.float64)
        self.release_table = (self.release_decay ** (k + 1)).astype(np.float32)
        self.fade_table = (self.fade_decay ** (k + 1)).astype(np.float32)
        self.ramp64 = k
        self.ramp32 = (k + 1).astype(np.float32)
        self.mix_l = np.zeros(n, np.float32)
        self.mix_r = np.zeros(n, np.float32)
        f32 = lambda: np.zeros(n, np.float32)  # noqa: E731
        self._y, self._b, self._w = f32(), f32(), f32()  # voice signal, loop's other read, crossfade
        self._a, self._g = f32(), f32()  # envelope and gain scratch
        self._ra, self._rb, self._rf32 = f32(), f32(), f32()  # interpolation scratch
        self._pos, self._pos2 = np.zeros(n, np.float64), np.zeros(n, np.float64)
        self._f64, self._rf = np.zeros(n, np.float64), np.zeros(n, np.float64)
        self._i0, self._i1 = np.zeros(n, np.int64), np.zeros(n, np.int64)

    # Allocation and stealing ------------------------------------------------------------
    def sounding(self) -> int:
        """Voices that count against the polyphony limit (all but those fading out)."""
        return sum(1 for v in self.voices if v.active and v.state != FADING)

    def allocate(self, offset: int, now: int) -> tuple[Voice, bool]:
        """A voice for a new note at ``offset`` (stealing one if needed) and whether one was stolen."""
        stolen = False
        if self.sounding() >= self.polyphony:
            victim = self.victim(now)
            if victim is not None:
                self.render(victim, victim.cursor, offset)
                self.fade_out(victim)
                stolen = True
        for v in self.voices:
            if not v.active:
                return v, stolen
        # every slot busy (fading voices included): cut the quietest fading voice at this sample
        quiet = min((v for v in self.voices if v.state == FADING), key=lambda v: v.loudness, default=None)
        if quiet is None:
            quiet = self.victim(now) or self.voices[0]
        self.render(quiet, quiet.cursor, offset)
        quiet.active = False
        return quiet, True

    def victim(self, now: int) -> Voice | None:
        """The voice to steal: released first, then sustained, then the oldest and quietest; never the newest."""
        newest = self.serial if self.polyphony > 1 else -1
        best, best_score = None, None
        for v in self.voices:
            if not v.active or v.state == FADING or v.serial == newest:
                continue
            category = 0 if v.state == RELEASED else (1 if v.state == SUSTAINED else 2)
            age = (now - v.start_frame) / self.rate
            score = (category, v.loudness / (1.0 + age))
            if best_score is None or score < best_score:
                best, best_score = v, score
        return best

    def start(self, v: Voice, channel: int, key: int, offset: int, now: int) -> None:
        self.serial += 1
        v.active = True
        v.state = HELD
        v.channel, v.key, v.serial = channel, key, self.serial
        v.start_frame = now
        v.cursor = offset
        v.pos = 0.0
        v.key_down = True
        v.sostenuto = False
        v.level = 1.0
        v.decay = 1.0
        v.table = None
        v.ramp_left = 0
        v.looping = False

    def set_layers(self, v: Voice, src0, w0: float, src1, w1: float, ratio: float, bend: float) -> None:
        v.src0, v.w0 = src0, float(w0)
        v.src1, v.w1 = src1, float(w1)
        v.length = len(src0) if src1 is None else min(len(src0), len(src1))
        v.ratio = float(ratio)
        v.rate = v.ratio * bend

    def setup_loop(self, v: Voice, pitch: float, allowed: bool) -> None:
        """Decide whether the note sustains (two short energy windows) and place its loop."""
        v.can_loop = False
        n = v.length
        if not allowed or n < self.rate // 2:
            return
        start, end = int(LOOP_START * n), int(LOOP_END * n)
        win = min(2048, (end - start) // 4)
        x = v.src0
        body = x[int(0.15 * n) : int(0.15 * n) + win]
        tail = x[end - win : end]
        e_body, e_tail = float(np.dot(body, body)), float(np.dot(tail, tail))
        if e_body <= 0.0 or e_tail < e_body * SUSTAIN_DROP * SUSTAIN_DROP:
            return
        period = self.rate * v.ratio / (440.0 * 2.0 ** ((pitch - 69.0) / 12.0))  # in source samples
        length = end - start
        if period < length / 2:
            length = max(1, round(length / period)) * period
        v.loop_start = float(end - length)
        v.loop_len = float(length)
        v.xfade = float(min(int(0.1 * self.rate), int(length // 3)))
        v.can_loop = v.xfade >= 16 and v.loop_start >= v.xfade

    # Envelope and gain changes ----------------------------------------------------------
    def release(self, v: Voice) -> None:
        if v.state in (HELD, SUSTAINED):
            v.state = RELEASED
            v.decay = self.release_decay
            v.table = self.release_table

    def fade_out(self, v: Voice) -> None:
        v.state = FADING
        v.decay = self.fade_decay
        v.table = self.fade_table

    def set_gain(self, v: Voice, left: float, right: float, immediate: bool = False) -> None:
        v.tl, v.tr = left, right
        if immediate:
            v.gl, v.gr, v.ramp_left = left, right, 0
        elif left != v.gl or right != v.gr:
            v.ramp_left = self.ramp

    # Rendering --------------------------------------------------------------------------
    def render(self, v: Voice, a: int, b: int) -> None:
        """Mix voice ``v`` into ``mix_l/mix_r[a:b]`` and move its cursor to ``b``."""
        n = b - a
        if not v.active or n <= 0:
            return
        v.cursor = b
        y = self._y
        rate = v.rate
        # constant gains are folded into the layer weights (one multiply less per sample)
        scale = 1.0 if v.ramp_left > 0 else (v.gl if v.gl != 0.0 else v.gr)
        if not v.looping and v.can_loop and v.state in (HELD, SUSTAINED):
            if v.pos + rate * n >= v.loop_start + v.loop_len - v.xfade:
                v.looping = True
        if v.looping:
            m = n
            self._loop_positions(v, n)
            self._read(v, self._pos, m, y, scale)
            w = self._w[:m]
            # crossfade weight: 0 before the last xfade samples of the loop, rising to 1 at its end
            np.subtract(self._pos[:m], v.loop_start + v.loop_len - v.xfade, out=self._f64[:m])
            self._f64[:m] *= 1.0 / v.xfade
            np.clip(self._f64[:m], 0.0, 1.0, out=self._f64[:m])
            np.copyto(w, self._f64[:m], casting="unsafe")
            np.subtract(self._pos[:m], v.loop_len, out=self._pos2[:m])
            self._read(v, self._pos2, m, self._b, scale)
            self._b[:m] -= y[:m]
            self._b[:m] *= w
            y[:m] += self._b[:m]
            p = v.pos + rate * n - v.loop_start
            v.pos = v.loop_start + (p % v.loop_len if p >= 0 else p)
        elif rate == 1.0 and v.pos == int(v.pos):
            p = int(v.pos)
            m = max(0, min(n, v.length - p))
            if m:
                np.multiply(v.src0[p : p + m], v.w0 * scale, out=y[:m])
                if v.src1 is not None:
                    np.multiply(v.src1[p : p + m], v.w1 * scale, out=self._a[:m])
                    y[:m] += self._a[:m]
            v.pos += m
        else:
            m = n if rate <= 0 else max(0, min(n, math.ceil((v.length - 1 - v.pos) / rate)))
            if m:
                np.multiply(self.ramp64[:m], rate, out=self._pos[:m])
                self._pos[:m] += v.pos
                self._read(v, self._pos, m, y, scale)
            v.pos += rate * m
        ended = m < n
        if m and not v.looping and v.pos > v.length - self.end_fade:
            self._fade_end(v, m)
        if m and v.table is not None:
            np.multiply(v.table[:m], v.level, out=self._a[:m])
            y[:m] *= self._a[:m]
            v.level *= v.decay**m
            ended = ended or v.level < SILENT
        if m and scale != 0.0:
            self._mix(v, a, m, scale)
        if ended:
            v.active = False

    def _fade_end(self, v: Voice, m: int) -> None:
        """Fade the last ``end_fade`` source samples of a note, so a note that stops before
        silence does not click (``v.pos`` has already moved past the ``m`` samples in ``_y``)."""
        pos, f = self._pos[:m], self._f64[:m]
        np.multiply(self.ramp64[:m], v.rate, out=pos)
        pos += v.pos - v.rate * m
        np.subtract(v.length - 1, pos, out=f)
        f *= 1.0 / self.end_fade
        np.clip(f, 0.0, 1.0, out=f)
        np.copyto(self._w[:m], f, casting="same_kind")
        self._y[:m] *= self._w[:m]

    def _loop_positions(self, v: Voice, n: int) -> None:
        """Playback positions for ``n`` samples, wrapped into the loop ``[start, start + len)``."""
        pos, t = self._pos[:n], self._f64[:n]
        np.multiply(self.ramp64[:n], v.rate, out=pos)
        pos += v.pos
        np.subtract(pos, v.loop_start, out=t)
        t *= 1.0 / v.loop_len
        np.floor(t, out=t)
        np.maximum(t, 0.0, out=t)
        t *= v.loop_len
        pos -= t

    def _read(self, v: Voice, pos: np.ndarray, m: int, out: np.ndarray, scale: float) -> None:
        """``out[:m]`` = ``scale`` x the voice's layers at fractional positions ``pos[:m]`` (linear interpolation)."""
        i0, i1, f64, lo, hi = self._i0[:m], self._i1[:m], self._rf[:m], self._ra[:m], self._rb[:m]
        frac = self._rf32[:m]
        last = v.length - 1
        np.floor(pos[:m], out=f64)
        np.copyto(i0, f64, casting="unsafe")
        np.subtract(pos[:m], f64, out=f64)
        np.copyto(frac, f64, casting="same_kind")  # mixed float32 x float64 ufuncs allocate: convert once
        np.clip(i0, 0, last, out=i0)
        np.add(i0, 1, out=i1)
        np.minimum(i1, last, out=i1)
        y = out[:m]
        y[:] = 0.0
        for src, w in ((v.src0, v.w0), (v.src1, v.w1)):
            if src is None or w == 0.0:
                continue
            np.take(src, i0, out=lo, mode="clip")  # indices are in range; "raise" would buffer
            np.take(src, i1, out=hi, mode="clip")
            hi -= lo
            hi *= frac
            lo += hi
            lo *= w * scale
            y += lo

    def _mix(self, v: Voice, a: int, m: int, scale: float) -> None:
        """Add the voice's signal (already multiplied by ``scale``) to the stereo mix with its gains."""
        y = self._y[:m]
        ml, mr = self.mix_l[a : a + m], self.mix_r[a : a + m]
        t = self._a[:m]
        if v.ramp_left > 0:
            # gains move linearly towards their targets, reaching them after ``ramp`` samples
            k = min(m, v.ramp_left)
            g = self._g[:m]
            np.minimum(self.ramp32[:m], float(k), out=g)
            g *= 1.0 / v.ramp_left
            step = k / v.ramp_left
            for target, current, mix in ((v.tl, v.gl, ml), (v.tr, v.gr, mr)):
                np.multiply(g, target - current, out=t)
                t += current
                t *= y
                mix += t
            v.gl += (v.tl - v.gl) * step
            v.gr += (v.tr - v.gr) * step
            v.ramp_left -= k
            if v.ramp_left <= 0:
                v.gl, v.gr, v.ramp_left = v.tl, v.tr, 0
            return
        for gain, mix in ((v.gl, ml), (v.gr, mr)):
            if gain == scale:
                mix += y
            elif gain != 0.0:
                np.multiply(y, gain / scale, out=t)
                mix += t
