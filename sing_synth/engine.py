"""The synth engine: 16 MIDI channels, voices, mixer, effects and limiter, shared by live play and file rendering.

``Engine.process(out)`` fills a whole ``(frames, 2)`` float32 block: it applies every queued
event whose time (in engine frames) falls inside the block at its exact sample offset, mixes
the voices, adds the returns of the reverb and chorus buses (``effects``: each channel sends
to them at its CC91 and CC93 levels; off unless ``effects`` turns them on) and runs a soft
limiter. Live play feeds the queue from the MIDI thread and calls
``process`` from the audio callback; offline rendering pushes the file's events and calls it
in a loop. The voices' state lives in a ``VoicePool`` (``voices``), the ``Mixer`` (``mixer``)
renders them, the ``Limiter`` (``limiter``) makes the output block. Real-time contract of ``process``: no torch, no disk, no logging, no blocking lock,
and work bounded by the polyphony limit whatever arrives on MIDI: at most ``max_events`` events
are applied per block (the rest wait for the next one), the voices are rendered in at most
``max_splits + 1`` stretches per block (a flood of events at more distinct samples than that
applies the rest at the last split), and all voices are mixed together by a fixed number of
NumPy calls (see ``mixer``). Every array it works in is made in ``__init__``: what a block
allocates is Python's and NumPy's small change (scalars, a reduction's few hundred bytes).

Channel 10 (index 9) plays the preset's drum kit. ``instrument`` overrides the General MIDI
program of every melodic channel. Pitches outside an instrument's playable range are played
by re-pitching the nearest playable pitch; drum notes outside the kit's range are skipped.
``morph``: its controllers move a channel's position (no sounding voice changes: the block is
not split), which the channel's next note-ons play (:class:`~sing_synth.morph.MorphControl`).
"""

from __future__ import annotations

import numpy as np

from . import events as ev
from .channels import Channel, InstrumentMap, note_layers
from .effects import Effects, EffectSettings
from .limiter import Limiter
from .mixer import Mixer
from .note_source import COMMON_CLASSES, NoteSource
from .voices import FADING, HELD, SUSTAINED, VoicePool

__all__ = ["Engine"]


class Engine:
    """16 channels of MIDI state driving a voice pool; see the module docstring for the contract.

    ``instruments`` is a :class:`~sing_synth.preset.Preset` (with ``instrument``, an optional
    instrument id overriding the program of melodic channels, and ``morph``) or a ready :class:`InstrumentMap`.
    ``effects``: the reverb and chorus buses (:class:`~sing_synth.effects.EffectSettings`; None:
    both off, the dry engine). ``stems``: MIDI channels (0-15) whose share of each block is also
    kept apart, in ``stems`` (channels, 2, frames): the channel's voices and their own reverb and
    chorus (a lane of the effects each, see ``effects``), after the master gain and the limiter's
    gain but before its soft knee, so they add up to the mix wherever the knee leaves it alone.
    Offline only (it allocates).
    """

    def __init__(
        self,
        instruments,
        source: NoteSource,
        rate: int = 44100,
        instrument: int | None = None,
        polyphony: int = 64,
        gain: float = 0.5,
        max_block: int = 4096,
        queue_size: int = 4096,
        max_events: int = 512,
        max_splits: int = 32,
        release: float = 0.25,
        threshold: float = 0.85,
        limiter_release: float = 0.3,
        chunk: int | None = None,
        effects: EffectSettings | None = None,
        stems=None,
        morph=None,
        limiter_block: int | None = None,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        if getattr(source, "rate", rate) != rate:
            raise ValueError(f"the note source holds {source.rate} Hz notes for a {rate} Hz engine")
        imap = instruments if isinstance(instruments, InstrumentMap) else InstrumentMap(instruments, instrument, morph)
        self.imap = imap
        self.source = source
        if imap.morph is not None:
            source.add_morph(imap.morph.morph)  # its positions stand in for each other
        self.rate = int(rate)
        self.max_block = int(max_block)
        self.queue = ev.EventQueue(queue_size)
        self.max_events = int(max_events)  # per block: later ones wait for the next block
        # per block, the voices are rendered up to at most this many distinct event times; a flood
        # of events at more times than that applies the rest at the last one (bounded work)
        self.max_splits = int(max_splits)
        self.pool = VoicePool(polyphony, self.rate, release=release)
        settings = effects if effects is not None else EffectSettings.dry()
        settings.check()
        self.effects = Effects(settings, self.rate, self.max_block) if settings.enabled else None
        # chunk: frames mixed per pass (offline: longer)
        self.mixer = Mixer(self.pool, self.max_block, chunk, sends=self.effects is not None, lanes=stems)
        self._buses = self.mixer.sends[None], self.mixer.mix[None]  # (lanes, 2, frames) views for the effects
        self.stem_channels = list(stems) if stems is not None else []
        self.stems = self.mixer.stems if stems is not None else None
        self.stem_effects = (
            Effects(settings, self.rate, self.max_block, lanes=len(self.stem_channels))
            if stems is not None and settings.enabled and self.stem_channels
            else None
        )
        # the limiter rides its gain per block of at most this many frames (offline: shorter than the
        # blocks mixed, as the output's blocks would be)
        self.limiter_block = min(self.max_block, int(limiter_block or self.max_block))
        self.limiter = Limiter(self.rate, self.limiter_block, gain, threshold, limiter_release)
        self.channels = [Channel(i) for i in range(16)]
        self.frame = 0  # engine time: frames processed so far
        self._ev = [0.0, 0, 0, 0, 0]
        # statistics (read them from another thread without locking: plain ints)
        self.notes_played = 0
        self.notes_missing = 0  # note-ons with neither the note nor a stand-in in the source
        self.notes_skipped = 0  # note-ons on a channel without an instrument (drums without a kit)
        self.voices_stolen = 0
        self.max_voices = 0
        for ch in self.channels:
            ch.reset_all()
            ch.instrument = imap.resolve(ch.index, ch.program, ch.bank_msb, ch.bank_lsb)

    # Input ------------------------------------------------------------------------------
    def push(self, kind: int, channel: int, a: int = 0, b: int = 0, time: float = -1.0) -> bool:
        """Queue an event (producer side); ``time`` in engine frames, < 0 meaning at the next block."""
        return self.queue.push(kind, channel, a, b, time)

    @property
    def active_voices(self) -> int:
        """Voices counting against the polyphony limit (fading-out stolen voices excluded)."""
        return self.pool.sounding()

    @property
    def sounding(self) -> bool:
        """Whether anything may still sound: a voice, or an effect's tail."""
        return self.pool.n > 0 or any(fx is not None and fx.active for fx in (self.effects, self.stem_effects))

    # Processing -------------------------------------------------------------------------
    def process(self, out: np.ndarray) -> None:
        """Fill ``out`` (frames, 1 or 2 channels, float32) with the next block of audio."""
        frames = out.shape[0]
        done = 0
        while done < frames:
            n = min(self.max_block, frames - done)
            self._process_chunk(out[done : done + n], n)
            done += n

    def _process_chunk(self, out: np.ndarray, n: int) -> None:
        pool, mixer, fx = self.pool, self.mixer, self.effects
        mixer.mix[:, :n] = 0.0
        if fx is not None:
            mixer.sends[:, :n] = 0.0
        if self.stems is not None:
            mixer.stems[:, :, :n] = 0.0
            mixer.stem_sends[:, :, :n] = 0.0
        end = self.frame + n
        q, e = self.queue, self._ev
        budget = self.max_events
        done = 0  # frames rendered so far: the voices are rendered up to each event's sample
        splits = 0
        while budget > 0 and q.peek_time() < end:
            budget -= 1
            q.pop_into(e)
            t = e[0]
            offset = min(max(int(t) - self.frame, 0), n - 1) if t >= self.frame else 0
            if offset > done:
                if self._inline(e[1], e[2], e[3], e[4], offset - done):
                    continue
                if splits < self.max_splits:
                    mixer.render(self.source.bank, done, offset)
                    done = offset
                    splits += 1
            self._apply(e[1], e[2], e[3], e[4])
        mixer.render(self.source.bank, done, n)
        bank = self.source.bank
        if bank is not None:
            bank.epoch += 1
        self.max_voices = max(self.max_voices, pool.sounding())
        if fx is not None:
            sends, mix = self._buses
            fx.process(sends[:, :, :n], mix[:, :, :n])
        stems = None
        if self.stems is not None:
            stems = mixer.stems[:, :, :n]
            if self.stem_effects is not None:
                self.stem_effects.process(mixer.stem_sends[:, :, :n], stems)
        step = self.limiter_block
        for a in range(0, n, step):
            b = min(a + step, n)
            self.limiter.process(mixer.mix[:, a:b], out[a:b], None if stems is None else stems[:, :, a:b])
        self.frame = end

    # Events -----------------------------------------------------------------------------
    def _inline(self, kind: int, ch: int, a: int, b: int, at: int) -> bool:
        """Apply a note-on or -off, a pitch bend, or a gain or sustain-pedal change ``at`` frames
        after the voices' render point without rendering them up to it first, when the voices it
        changes allow it (see ``VoicePool.steady``, ``set_bend``, ``ramping``)."""
        pool = self.pool
        if kind == ev.NOTE_ON and b > 0:
            if pool.sounding() >= pool.polyphony or pool.n >= pool.size:  # it would steal a voice
                return False
            same = pool.voices(channel=ch, key=a)
            if not pool.steady(same[pool.state[same] != FADING]):
                return False
            self._note_on(ch, a, b, at)
            return True
        if kind == ev.NOTE_OFF or kind == ev.NOTE_ON:
            if not pool.steady(pool.voices(channel=ch, key=a, state=HELD)):
                return False
            self._note_off(ch, a, at)
            return True
        if kind == ev.PITCH_BEND:
            c = self.channels[ch]
            if not pool.set_bend(ch, c.bend_factor(a), at):
                return False
            c.bend = a
            return True
        if kind == ev.CONTROL:
            return self.imap.move(self.channels[ch], a, b, self.source) is not None or self._inline_control(ch, a, b, at)
        return False

    def _inline_control(self, ch: int, cc: int, value: int, at: int) -> bool:
        """A volume, pan, expression or effect send change (a gain ramp starting at its sample) or a
        sustain pedal (a pedal up releases the pedalled voices at its sample), applied like ``_inline``."""
        c, pool = self.channels[ch], self.pool
        sends = self.effects is not None  # without effects, a send change does not ramp the voices
        if cc in (ev.CC_VOLUME, ev.CC_PAN, ev.CC_EXPRESSION, ev.CC_REVERB, ev.CC_CHORUS):
            voices = pool.voices(channel=ch)
            gains = cc in (ev.CC_VOLUME, ev.CC_PAN, ev.CC_EXPRESSION)
            if not (gains or sends):  # a send without effects: applied as any other controller
                return False
            if (gains and pool.ramping(voices)) or (sends and pool.send_ramping(voices)):
                return False
            c.set_controller(cc, value)
            gl, gr = c.gains()
            reverb, chorus = c.sends()
            for i in voices:
                if gains:
                    pool.set_gain(i, gl, gr, at=at)
                if sends:
                    pool.set_send(i, reverb, chorus, at=at)
            return True
        if cc == ev.CC_SUSTAIN:
            if value >= 64 or not c.sustain:  # pedal down, or up while up: nothing sounds different yet
                c.sustain = value >= 64
                return True
            pedalled = pool.voices(channel=ch, state=SUSTAINED)
            pedalled = pedalled[~pool.sostenuto[pedalled]]
            if not pool.steady(pedalled):
                return False
            c.sustain = False
            for i in pedalled:
                pool.release(i, at)
            return True
        return False

    def _apply(self, kind: int, ch: int, a: int, b: int) -> None:
        """Apply an event at the voices' render point (they have been rendered up to its sample)."""
        if kind == ev.NOTE_ON and b > 0:
            self._note_on(ch, a, b, 0)
        elif kind == ev.NOTE_ON:  # velocity 0 is a note-off
            self._note_off(ch, a, 0)
        elif kind == ev.NOTE_OFF:
            self._note_off(ch, a, 0)
        elif kind == ev.CONTROL and self.imap.move(self.channels[ch], a, b, self.source) is None:
            self._control(ch, a, b)
        elif kind == ev.PROGRAM:
            c = self.channels[ch]
            c.program = a
            inst = self.imap.resolve(ch, a, c.bank_msb, c.bank_lsb)
            if inst >= 0 and inst != c.instrument:
                # a new instrument: ask for its middle note now, so that the notes played next have a
                # neighbour to stand in for them (a live cache then schedules the whole instrument)
                src = self.imap.source_pitch(inst, 60)
                if src is not None:
                    self.source.request(inst, src[0], min(COMMON_CLASSES[0], len(self.imap.velocities) - 1))
            c.instrument = inst
        elif kind == ev.PITCH_BEND:
            c = self.channels[ch]
            c.bend = a
            self._update_rates(c)
        elif kind == ev.RESET:
            for fx in (self.effects, self.stem_effects):
                if fx is not None:
                    fx.reset()  # as FluidSynth's system reset: the tails stop too
            for c in self.channels:
                self._all_sound_off(c.index)
                c.reset_all()
                c.instrument = self.imap.resolve(c.index, c.program, c.bank_msb, c.bank_lsb)
                self._update_rates(c)

    def _note_on(self, ch: int, key: int, velocity: int, at: int) -> None:
        c = self.channels[ch]
        pool = self.pool
        for i in pool.voices(channel=ch, key=key):  # a repeated key retriggers: the old voice fades out quickly
            if pool.state[i] != FADING:
                pool.fade_out(i, at)
        inst = self.imap.playing(c)
        layers = note_layers(self.imap, inst, key, velocity, c.soft) if inst >= 0 else None
        if layers is None:
            self.notes_skipped += 1
            return
        src_pitch, ratio, lo, hi, wlo, whi = layers
        c.last_pitch, c.last_class = src_pitch, (lo if wlo >= whi else hi)
        source = self.source
        x0 = source.find(inst, src_pitch, lo) if wlo > 0.0 else -1
        x1 = source.find(inst, src_pitch, hi) if whi > 0.0 else -1
        if (wlo > 0.0 and x0 < 0) or (whi > 0.0 and x1 < 0):
            if wlo > 0.0 and x0 < 0:
                source.request(inst, src_pitch, lo)
            if whi > 0.0 and x1 < 0:
                source.request(inst, src_pitch, hi)
            if x0 < 0 and x1 < 0:
                found = source.standin(inst, src_pitch, lo if wlo >= whi else hi)
                if found is None:
                    self.notes_missing += 1
                    return
                x0, ratio, wlo, x1, whi = found[0], ratio * found[1], wlo + whi, -1, 0.0
            elif x0 < 0:
                x0, wlo, x1, whi = x1, wlo + whi, -1, 0.0
            else:
                wlo, x1, whi = wlo + whi, -1, 0.0
        elif x0 < 0:
            x0, wlo, x1, whi = x1, whi, -1, 0.0
        bank = source.bank
        now = self.frame + at  # approximate (the render point): for stealing ages only
        i, stolen = pool.allocate(now, bank)
        self.voices_stolen += stolen
        pool.start(i, ch, key, now, delay=at)
        pool.set_layers(i, bank, x0, wlo, x1, whi, ratio, loop=not c.drums)
        gl, gr = c.gains()
        pool.set_gain(i, gl, gr, immediate=True)
        reverb, chorus = c.sends()
        pool.set_send(i, reverb, chorus, immediate=True)
        self.notes_played += 1

    def _note_off(self, ch: int, key: int, at: int) -> None:
        c = self.channels[ch]
        for i in self.pool.voices(channel=ch, key=key, state=HELD):
            self._key_up(c, i, at)

    def _key_up(self, c: Channel, i: int, at: int = 0) -> None:
        pool = self.pool
        pool.key_down[i] = False
        if c.sustain or pool.sostenuto[i]:
            pool.state[i] = SUSTAINED
        else:
            pool.release(i, at)

    def _control(self, ch: int, cc: int, value: int) -> None:
        c = self.channels[ch]
        pool = self.pool
        if cc == ev.CC_SUSTAIN:
            c.sustain = value >= 64
            if not c.sustain:
                self._release_pedalled(c)
        elif cc == ev.CC_SOSTENUTO:
            down = value >= 64
            if down and not c.sostenuto:
                for i in pool.voices(channel=ch, state=HELD):
                    if pool.key_down[i]:
                        pool.sostenuto[i] = True
            elif not down and c.sostenuto:
                pool.sostenuto[pool.voices(channel=ch)] = False
                self._release_pedalled(c)
            c.sostenuto = down
        elif cc in (ev.CC_VOLUME, ev.CC_PAN, ev.CC_EXPRESSION):
            c.set_controller(cc, value)
            self._update_gains(c)
        elif cc in (ev.CC_REVERB, ev.CC_CHORUS):
            c.set_controller(cc, value)
            self._update_sends(c)
        elif cc == ev.CC_ALL_SOUND_OFF:
            self._all_sound_off(ch)
        elif cc == ev.CC_RESET_CONTROLLERS:
            pedal = c.sustain or c.sostenuto
            c.reset_controllers()
            pool.sostenuto[pool.voices(channel=ch)] = False
            if pedal:
                self._release_pedalled(c)
            self._update_gains(c)
            self._update_rates(c)
        elif cc >= ev.CC_ALL_NOTES_OFF:
            for i in pool.voices(channel=ch, state=HELD):
                self._key_up(c, i)
        elif cc in (ev.CC_BANK_MSB, ev.CC_BANK_LSB):
            c.set_controller(cc, value)  # takes effect at the next program change
        else:
            if c.set_controller(cc, value):  # RPN 0 data entry changed the bend range
                self._update_rates(c)

    def _release_pedalled(self, c: Channel) -> None:
        if c.sustain:
            return
        pool = self.pool
        for i in pool.voices(channel=c.index, state=SUSTAINED):
            if not pool.sostenuto[i]:
                pool.release(i)

    def _all_sound_off(self, ch: int) -> None:
        pool = self.pool
        for i in pool.voices(channel=ch):
            if pool.state[i] != FADING:
                pool.fade_out(i)

    def _update_gains(self, c: Channel) -> None:
        gl, gr = c.gains()
        for i in self.pool.voices(channel=c.index):
            self.pool.set_gain(i, gl, gr)
        self._update_sends(c)  # the sends follow the volume and expression

    def _update_sends(self, c: Channel) -> None:
        if self.effects is None:  # without effects, nothing listens to the sends
            return
        reverb, chorus = c.sends()
        for i in self.pool.voices(channel=c.index):
            self.pool.set_send(i, reverb, chorus)

    def _update_rates(self, c: Channel) -> None:
        self.pool.set_bend(c.index, c.bend_factor())

