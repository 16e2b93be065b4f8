"""What MIDI events do to the voices: notes, pedals, controllers, programs and resets.

The :class:`Performer` holds the 16 channels' MIDI state and applies each event to the
:class:`~sing_synth.voices.VoicePool` that the engine mixes, at the voices' render point
(:meth:`~Performer.apply`) or, where the voices it changes allow it, a number of frames after
it without splitting the block (:meth:`~Performer.inline`). It runs in the audio callback, under
the engine's real-time contract (see ``engine``): no torch, no disk, no blocking lock.
"""

from __future__ import annotations

from . import events as ev
from .channels import Channel, InstrumentMap, note_layers
from .note_source import COMMON_CLASSES, NoteSource
from .voices import FADING, HELD, SUSTAINED, VoicePool


class Performer:
    """16 channels of MIDI state playing ``pool`` with notes from ``source``.

    ``effects``: the effect buses a system reset silences; ``sends``: whether the voices' effect
    sends are heard (without effects, a send change leaves the voices alone). ``frame`` (an
    argument of :meth:`apply` and :meth:`inline`): the engine time of the render point, for
    stealing ages.
    """

    def __init__(self, imap: InstrumentMap, source: NoteSource, pool: VoicePool, effects=(), sends: bool = False) -> None:
        self.imap = imap
        self.source = source
        self.pool = pool
        self.effects = [fx for fx in effects if fx is not None]
        self.sends = bool(sends)
        self.channels = [Channel(i) for i in range(16)]
        self.notes_played = 0
        self.notes_missing = 0  # note-ons with neither the note nor a stand-in in the source
        self.notes_skipped = 0  # note-ons on a channel without an instrument (drums without a kit)
        self.voices_stolen = 0
        for ch in self.channels:
            ch.reset_all()
            ch.instrument = imap.resolve(ch.index, ch.program, ch.bank_msb, ch.bank_lsb)

    def inline(self, kind: int, ch: int, a: int, b: int, at: int, frame: int) -> bool:
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
            self._note_on(ch, a, b, at, frame)
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
        sustain pedal (a pedal up releases the pedalled voices at its sample), applied like ``inline``."""
        c, pool = self.channels[ch], self.pool
        sends = self.sends  # without effects, a send change does not ramp the voices
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

    def apply(self, kind: int, ch: int, a: int, b: int, frame: int) -> None:
        """Apply an event at the voices' render point (they have been rendered up to its sample)."""
        if kind == ev.NOTE_ON and b > 0:
            self._note_on(ch, a, b, 0, frame)
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
            for fx in self.effects:
                fx.reset()  # as FluidSynth's system reset: the tails stop too
            for c in self.channels:
                self._all_sound_off(c.index)
                c.reset_all()
                c.instrument = self.imap.resolve(c.index, c.program, c.bank_msb, c.bank_lsb)
                self._update_rates(c)

    def _note_on(self, ch: int, key: int, velocity: int, at: int, frame: int) -> None:
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
        now = frame + at  # approximate (the render point): for stealing ages only
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
        if not self.sends:  # without effects, nothing listens to the sends
            return
        reverb, chorus = c.sends()
        for i in self.pool.voices(channel=c.index):
            self.pool.set_send(i, reverb, chorus)

    def _update_rates(self, c: Channel) -> None:
        self.pool.set_bend(c.index, c.bend_factor())


