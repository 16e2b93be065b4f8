"""Pre-allocated voices: their state, allocation and stealing, envelope, gain and bend changes.

A voice plays one note: two layers (the two velocity classes of the MIDI velocity, see
``dsp.velocity_blend``; an unused layer reads the bank's silent slot 0 with weight 0) of a
rendered note held in :class:`~sing_synth.bank.NoteBank` slots, at a playback rate (pitch bend,
stand-in re-pitch). The pool keeps every voice's state in arrays whose first ``n`` entries are
the sounding voices (a voice that stops is replaced by the last one), so the mixer
(:mod:`sing_synth.mixer`) works on views of them. The pool changes state; the mixer renders it.

Changes take effect at their sample: a voice can start ``delay`` frames into the next stretch
the mixer renders (note-on), start decaying, or change from one decay to another (a released
note retriggered fades out), ``env_at`` frames in (note-off, fade-out), its gains can start a
ramp ``ramp_at`` frames in, and a channel's pitch bend can change at frame ``kink`` of it (see
:meth:`VoicePool.set_bend`).

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
FAR = 1e30  # a position no voice reaches (no loop)
NO_CHANGE = 1 << 40  # a channel's pitch-change frame when none is pending


def pool_size(polyphony: int) -> int:
    """Voices of a pool for ``polyphony``: extra voices let stolen ones fade out instead of being cut."""
    return polyphony + max(4, polyphony // 2)


class VoicePool:
    """A fixed set of voices (state arrays, the active ones first), allocation and stealing."""

    def __init__(
        self,
        polyphony: int,
        rate: int,
        release: float = 0.25,
        fade: float = 0.015,
        ramp: float = 0.005,
    ) -> None:
        if polyphony < 1:
            raise ValueError("polyphony must be at least 1")
        self.polyphony = int(polyphony)
        self.rate = int(rate)
        self.size = n = pool_size(self.polyphony)
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
        self.pending: list[int] = []  # channels with a change pending
        # whether some voice may be starting, decaying or ramping its gains (cheaper than asking the
        # arrays); the mixer clears them when it finds none
        self.starts = self.decays = self.ramps = self.unloops = False
        self.send_ramps = False  # the same for the effect sends
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
        self.kind = np.zeros(n, np.int64)  # envelope kind (from env_at on)
        self.kind0 = np.zeros(n, np.int64)  # envelope kind before env_at (STEADY unless it was decaying)
        # a voice that starts (note-on) or starts decaying (release or fade-out of a steady voice)
        # this many frames into the next stretch: the engine applies note-ons and -offs this way
        # instead of rendering every voice up to their sample
        self.delay = np.zeros(n, np.int64)
        self.env_at = np.zeros(n, np.int64)
        self.gain = np.zeros((n, 2), np.float64)  # current left/right gains
        self.target = np.zeros((n, 2), np.float64)
        self.ramp_left = np.zeros(n, np.int64)
        self.ramp_at = np.zeros(n, np.int64)  # a ramp starting this many frames into the next stretch
        # reverb and chorus send gains (see ``effects``), ramped as the gains but on their own
        # (a send change never touches the dry mix)
        self.send = np.zeros((n, 2), np.float64)
        self.send_target = np.zeros((n, 2), np.float64)
        self.send_ramp = np.zeros(n, np.int64)
        self.send_at = np.zeros(n, np.int64)
        self.looping = np.zeros(n, bool)
        # released inside the next stretch before it ever looped: it may still reach its loop end
        # (and loop on) before the release; otherwise it plays on to its end
        self.unloop = np.zeros(n, bool)
        self.loop_end = np.full(n, FAR)  # where the playhead jumps back (FAR: it plays on to the end)
        self.loop_len = np.zeros(n, np.float64)
        self._fields = [
            self.state, self.channel, self.key, self.serial_of, self.start_frame, self.key_down, self.sostenuto,
            self.slot, self.weight, self.last, self.pos, self.ratio, self.level, self.kind, self.kind0, self.delay, self.env_at,
            self.gain, self.target, self.ramp_left, self.ramp_at, self.looping, self.unloop, self.loop_end, self.loop_len,
            self.send, self.send_target, self.send_ramp, self.send_at,
        ]  # fmt: skip
        self._mask, self._mask2 = np.zeros(n, bool), np.zeros(n, bool)  # scratch of voices()

    # Queries ----------------------------------------------------------------------------
    def sounding(self) -> int:
        """Voices that count against the polyphony limit (all but those fading out)."""
        return self.n - self.fading

    def voices(self, channel: int | None = None, key: int | None = None, state: int | None = None) -> np.ndarray:
        """Indices of the active voices matching the filters (valid until a voice starts or stops)."""
        n = self.n
        mask, other = self._mask[:n], self._mask2[:n]
        first = True
        for values, want in ((self.channel, channel), (self.key, key), (self.state, state)):
            if want is not None:
                np.equal(values[:n], want, out=mask if first else other)
                if not first:
                    mask &= other
                first = False
        if first:
            mask.fill(True)
        return mask.nonzero()[0]

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
        self.kind[i] = self.kind0[i] = STEADY
        self.delay[i] = delay
        self.starts |= delay > 0
        self.env_at[i] = 0
        self.ramp_left[i] = self.send_ramp[i] = 0
        self.ramp_at[i] = self.send_at[i] = 0
        self.looping[i] = self.unloop[i] = False
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
        self.kind0[i] = self.kind[i] if at > 0 else STEADY  # the envelope until ``at``
        self.kind[i] = kind
        self.env_at[i] = at
        self.decays = True
        if not self.looping[i]:  # only a held key loops: a released note plays on to its end
            if at > 0 and self.loop_end[i] < FAR:
                self.unloop[i] = self.unloops = True  # unless it reaches its loop end first (the mixer)
            else:
                self.loop_end[i] = FAR

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
            self.pending.append(channel)
        else:
            self.factor[channel] = self.next_factor[channel] = factor
            if self.kink[channel] != NO_CHANGE:
                self.kink[channel] = NO_CHANGE
                self.pending.remove(channel)
        return True

    def steady(self, voices: np.ndarray) -> bool:
        """Whether these voices can take an envelope change inside the next stretch: none pending
        there (a voice starting in the stretch may be released in it, one decaying from its start
        may change its decay)."""
        return not self.env_at[voices].any()

    def set_gain(self, i: int, left: float, right: float, immediate: bool = False, at: int = 0) -> None:
        """New left/right gains: at once, or ramped from ``at`` frames into the next stretch (``at`` >
        0: the voice must not be ramping already, see :meth:`ramping`)."""
        self.target[i] = (left, right)
        if immediate:
            self.gain[i] = (left, right)
            self.ramp_left[i] = 0
        elif left != self.gain[i, 0] or right != self.gain[i, 1]:
            self.ramp_left[i] = self.ramp
            self.ramp_at[i] = at
            self.ramps = True

    def ramping(self, voices: np.ndarray) -> bool:
        """Whether any of these voices is ramping its gains (a second ramp could not start inside the
        next stretch)."""
        return bool(self.ramps and self.ramp_left[voices].any())

    def set_send(self, i: int, reverb: float, chorus: float, immediate: bool = False, at: int = 0) -> None:
        """New reverb and chorus send gains: at once, or ramped from ``at`` frames into the next
        stretch like the gains (``at`` > 0: the voice's sends must not be ramping already)."""
        self.send_target[i] = (reverb, chorus)
        if immediate:
            self.send[i] = (reverb, chorus)
            self.send_ramp[i] = 0
        elif reverb != self.send[i, 0] or chorus != self.send[i, 1]:
            self.send_ramp[i] = self.ramp
            self.send_at[i] = at
            self.send_ramps = True

    def send_ramping(self, voices: np.ndarray) -> bool:
        """Whether any of these voices is ramping its sends."""
        return bool(self.send_ramps and self.send_ramp[voices].any())

    def advance_bends(self, m: int) -> None:
        """The mixer rendered ``m`` frames: pending bend changes move ``m`` frames closer, or take effect."""
        for ch in self.pending[::-1]:
            if self.kink[ch] < m:
                self.factor[ch] = self.next_factor[ch]
                self.kink[ch] = NO_CHANGE
                self.pending.remove(ch)
            else:
                self.kink[ch] -= m
