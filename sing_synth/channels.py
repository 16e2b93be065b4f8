"""MIDI channel state and the mapping from (channel, program, key, velocity) to rendered notes.

One place decides which rendered notes a note-on plays, so that the engine and the list of
notes a song needs (``midi_file.needed_notes``) always agree: :meth:`InstrumentMap.playing`
(the channel's instrument, or its morph position) and :func:`note_layers`.
"""

from __future__ import annotations

import math

from . import dsp
from . import events as ev

DRUM_CHANNEL = 9  # channel 10 in MIDI's 1-based numbering
SOFT_PEDAL = 0.7  # the soft pedal (CC67) plays notes at 70% of their velocity: softer and duller
GM_REVERB, GM_CHORUS = 40, 0  # General MIDI's default effect sends (CC91, CC93)
NULL_RPN = 127


NO_SOURCES: dict[int, int] = {}  # an instrument without a tuning map


class InstrumentMap:
    """General MIDI program/bank/kit -> preset instrument id, precomputed (lookups never allocate).

    ``morph``: a :class:`~sing_synth.morph.MorphControl` whose positions the channels playing its
    first instrument play; a position's playable range is the one its corners share."""

    def __init__(self, preset, instrument=None, morph=None) -> None:
        self.velocities = tuple(preset.velocities)
        self.ranges = {i.id: (int(i.pitch_range[0]), int(i.pitch_range[1])) for i in preset.instruments}
        # keys the model plays out of tune: the in-tune key each is played from (``Instrument.played_from``)
        self.sources = {i.id: i.sources() for i in preset.instruments if i.played_from}
        self.morph = morph
        if morph is not None:
            corners = [self.ranges[i] for i in morph.morph.corners]
            lo, hi = max(r[0] for r in corners), min(r[1] for r in corners)
            shared = (lo, hi) if lo <= hi else corners[0]
            self.ranges.update(dict.fromkeys(morph.morph.blends(), shared))
        self.drum_ids = {i.id for i in preset.instruments if i.drum_kit}
        self.has_drums = bool(self.drum_ids)
        self.override = None
        if instrument is not None:
            found = instrument if hasattr(instrument, "id") else preset.instrument(instrument)
            self.override = int(found.id)
        banks = sorted({int(i.gm_bank) for i in preset.instruments} | {0})
        self._tables: dict[tuple[bool, int, int], int] = {}
        for drums in (False, True):
            for bank in banks:
                for program in range(128):
                    found = preset.gm_instrument(program, bank, drums)
                    self._tables[(drums, bank, program)] = -1 if found is None else int(found.id)

    def resolve(self, channel: int, program: int, bank_msb: int = 0, bank_lsb: int = 0) -> int:
        """Instrument id for a channel's program and bank (-1: nothing to play, e.g. no drum kit)."""
        drums = channel == DRUM_CHANNEL
        if not drums and self.override is not None:
            return self.override
        bank = bank_msb or bank_lsb
        found = self._tables.get((drums, bank, program))
        if found is None:  # a bank the preset does not have: General MIDI bank 0
            found = self._tables[(drums, 0, program)]
        return found

    def playing(self, channel: Channel) -> int:
        """The instrument a note started on ``channel`` plays: the channel's, or its morph position."""
        return channel.instrument if self.morph is None else self.morph.playing(channel)

    def move(self, channel: Channel, cc: int, value: int, source=None) -> bool | None:
        """A controller that may move the channel's morph position: None when it is not the morph's,
        else whether the position moved (see ``MorphControl.move``)."""
        return None if self.morph is None else self.morph.move(channel, cc, value, source)

    def source_pitch(self, instrument: int, pitch: int) -> tuple[int, float] | None:
        """The pitch to render and the playback-rate ratio: outside the playable range, the nearest
        playable pitch re-pitched (melodic) or nothing (drum kits); a key the preset's tuning map
        plays from another key (out of tune in the model), that key re-pitched."""
        lo, hi = self.ranges.get(instrument, (0, 127))
        if lo <= pitch <= hi:
            src = pitch
        elif instrument in self.drum_ids:
            return None
        else:
            src = lo if pitch < lo else hi
        src = self.sources.get(instrument, NO_SOURCES).get(src, src)
        return (pitch, 1.0) if src == pitch else (src, dsp.semitone_ratio(pitch - src))


def note_layers(imap: InstrumentMap, instrument: int, key: int, velocity: float, soft: bool = False):
    """``(source_pitch, ratio, low_class, high_class, low_weight, high_weight)`` for a note-on, or None.

    The weights come from ``dsp.velocity_blend``; a zero weight means that class is not needed.
    """
    src = imap.source_pitch(instrument, key)
    if src is None:
        return None
    if soft:
        velocity = velocity * SOFT_PEDAL
    lo, hi, wlo, whi = dsp.velocity_blend(velocity, imap.velocities)
    if hi == lo:
        wlo, whi = wlo + whi, 0.0
    return src[0], src[1], lo, hi, wlo, whi


def note_keys(imap: InstrumentMap, instrument: int, key: int, velocity: float, soft: bool = False) -> list:
    """The ``(instrument, pitch, vclass)`` rendered notes a note-on plays."""
    layers = note_layers(imap, instrument, key, velocity, soft)
    if layers is None:
        return []
    pitch, _, lo, hi, wlo, whi = layers
    keys = [(instrument, pitch, lo)] if wlo > 0.0 else []
    if whi > 0.0:
        keys.append((instrument, pitch, hi))
    return keys


class Channel:
    """The state of one MIDI channel (General MIDI defaults)."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.drums = index == DRUM_CHANNEL
        self.instrument = -1
        self.reset_all()

    def reset_all(self) -> None:
        """Power-on state (and a GM/GS reset's): program 0, bank 0, volume 100, centred, reverb send
        40, chorus send 0, bend range +-2 semitones."""
        self.program = 0
        self.bank_msb = self.bank_lsb = 0
        self.volume = 100
        self.pan = 64
        self.reverb, self.chorus = GM_REVERB, GM_CHORUS
        self.bend_range = 2.0
        self.last_pitch, self.last_class = -1, 0  # the last note-on's rendered pitch and main class
        self.reset_controllers()

    def reset_controllers(self) -> None:
        """CC121 (General MIDI RP-015): bend, expression, pedals and RPN selection; not volume, pan,
        bank or the effect sends (CC91-95), which RP-015 leaves alone; the morph position goes back
        to (0, 0), as the performance controllers do."""
        self.expression = 127
        self.morph_x = self.morph_y = 0  # grid indices of the morph position (see ``morph``)
        self.sustain = self.sostenuto = self.soft = False
        self.bend = ev.BEND_CENTER
        self.rpn_msb = self.rpn_lsb = NULL_RPN
        self.nrpn = False

    def set_controller(self, cc: int, value: int) -> bool:
        """Store a controller; True when the pitch-bend range changed."""
        if cc == ev.CC_VOLUME:
            self.volume = value
        elif cc == ev.CC_PAN:
            self.pan = value
        elif cc == ev.CC_EXPRESSION:
            self.expression = value
        elif cc == ev.CC_REVERB:
            self.reverb = value
        elif cc == ev.CC_CHORUS:
            self.chorus = value
        elif cc == ev.CC_BANK_MSB:
            self.bank_msb = value
        elif cc == ev.CC_BANK_LSB:
            self.bank_lsb = value
        elif cc == ev.CC_SOFT:
            self.soft = value >= 64
        elif cc == ev.CC_RPN_MSB:
            self.rpn_msb, self.nrpn = value, False
        elif cc == ev.CC_RPN_LSB:
            self.rpn_lsb, self.nrpn = value, False
        elif cc in (ev.CC_NRPN_MSB, ev.CC_NRPN_LSB):
            self.nrpn = True
        elif cc in (ev.CC_DATA_MSB, ev.CC_DATA_LSB) and not self.nrpn and self.rpn_msb == 0 and self.rpn_lsb == 0:
            semitones, cents = divmod(round(self.bend_range * 100), 100)
            if cc == ev.CC_DATA_MSB:
                semitones = value
            else:
                cents = min(value, 99)
            self.bend_range = semitones + cents / 100.0
            return True
        return False

    def level(self) -> float:
        """Volume and expression as 40 log10 curves (General MIDI's)."""
        return (self.volume / 127.0) ** 2 * (self.expression / 127.0) ** 2

    def gains(self) -> tuple[float, float]:
        """Left and right gains: volume and expression as 40 log10 curves, equal-power pan."""
        g = self.level()
        if self.pan == 64:
            return g * math.sqrt(0.5), g * math.sqrt(0.5)
        theta = (max(self.pan, 1) - 1) / 126.0 * (math.pi / 2)
        return g * math.cos(theta), g * math.sin(theta)

    def sends(self) -> tuple[float, float]:
        """Reverb and chorus send gains: the level (volume, expression) times CC91 and CC93, linear
        (as the SoundFont 2 default modulators; the pan does not move a mono send)."""
        g = self.level()
        return g * self.reverb / 127.0, g * self.chorus / 127.0

    def bend_factor(self, bend: int | None = None) -> float:
        """Playback-rate factor of the pitch bend ``bend`` (default: the current one; full scale =
        ``bend_range`` semitones)."""
        d = (self.bend if bend is None else bend) - ev.BEND_CENTER
        semis = self.bend_range * (d / 8191.0 if d > 0 else d / 8192.0)
        return dsp.semitone_ratio(semis)
