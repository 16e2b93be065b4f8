"""MIDI channel state and the one rule that maps a note-on to rendered notes."""

import math

import pytest
from engine_fixtures import INSTRUMENTS, KIT, PIANO, SAW, SINE, weightless_preset

from sing_synth import dsp
from sing_synth import events as ev
from sing_synth.channels import DRUM_CHANNEL, SOFT_PEDAL, Channel, InstrumentMap, note_keys, note_layers
from sing_synth.preset import Instrument


def test_programs_banks_kits_and_the_override():
    instruments = [*weightless_preset().instruments, Instrument(4, "bank 8 saw", gm_program=1, gm_bank=8)]
    imap = InstrumentMap(weightless_preset(instruments))
    assert [imap.resolve(0, p) for p in (0, 1, 2)] == [SINE, SAW, PIANO]
    assert imap.resolve(0, 1, bank_msb=8) == 4 and imap.resolve(0, 1, bank_lsb=8) == 4
    assert imap.resolve(0, 1, bank_msb=5) == SAW  # a bank the preset lacks: General MIDI bank 0
    assert imap.resolve(DRUM_CHANNEL, 0) == KIT and imap.resolve(DRUM_CHANNEL, 40) == KIT  # kit 0 stands in
    assert imap.resolve(0, 99) == SINE  # a program the preset lacks: its first melodic instrument
    override = InstrumentMap(weightless_preset(), instrument="plucked")
    assert override.resolve(3, 1) == PIANO and override.resolve(DRUM_CHANNEL, 0) == KIT  # drums keep the kit
    no_kit = InstrumentMap(weightless_preset([i for i in instruments if not i.drum_kit]))
    assert no_kit.resolve(DRUM_CHANNEL, 0) == -1 and not no_kit.has_drums


def test_pitches_outside_the_range_are_re_pitched_or_skipped():
    imap = InstrumentMap(weightless_preset())
    assert imap.source_pitch(PIANO, 60) == (60, 1.0)
    assert imap.source_pitch(PIANO, 100) == (96, dsp.semitone_ratio(4))  # range 36-96: four semitones up
    assert imap.source_pitch(PIANO, 30) == (36, dsp.semitone_ratio(-6))
    assert imap.source_pitch(KIT, 20) is None  # a drum outside the kit is skipped, not re-pitched


def tuned_preset():
    """The test preset with a tuning map on the piano (range 36-96): 36-40 from 41, 60 from 62, 96 from 95."""
    from dataclasses import replace

    piano = replace(INSTRUMENTS[PIANO], played_from=((36, 40, 41), (60, 60, 62), (96, 96, 95)))
    return weightless_preset([piano if i.id == PIANO else i for i in INSTRUMENTS])


def test_keys_of_the_tuning_map_are_played_from_their_source_re_pitched():
    imap = InstrumentMap(tuned_preset())
    assert imap.source_pitch(PIANO, 38) == (41, dsp.semitone_ratio(-3))
    assert imap.source_pitch(PIANO, 60) == (62, dsp.semitone_ratio(-2))
    assert imap.source_pitch(PIANO, 61) == (61, 1.0)  # in tune: its own note
    assert imap.source_pitch(PIANO, 30) == (41, dsp.semitone_ratio(-11))  # below the range: the lowest key's source
    assert imap.source_pitch(PIANO, 100) == (95, dsp.semitone_ratio(5))
    assert imap.source_pitch(SINE, 38) == (38, 1.0)  # no map
    assert note_keys(imap, PIANO, 60, 100) == [(PIANO, 62, 3)]


def test_note_layers_blend_two_classes_and_the_soft_pedal_plays_softer():
    imap = InstrumentMap(weightless_preset())
    assert note_layers(imap, SINE, 60, 100) == (60, 1.0, 2, 3, 0.0, 1.0)  # a class velocity: its class alone
    pitch, ratio, lo, hi, wlo, whi = note_layers(imap, SINE, 60, 90)
    assert (lo, hi) == (2, 3) and wlo == pytest.approx(0.4) and whi == pytest.approx(0.6)
    soft = note_layers(imap, SINE, 60, 100, soft=True)  # 70 of 127: between classes 50 and 75
    assert soft[2:4] == (1, 2) and soft[5] == pytest.approx((100 * SOFT_PEDAL - 50) / 25)
    assert note_layers(imap, SINE, 60, 10)[2:] == (0, 0, pytest.approx(0.4), 0.0)  # below 25: the lowest, scaled
    assert note_keys(imap, SINE, 60, 90) == [(SINE, 60, 2), (SINE, 60, 3)]
    assert note_keys(imap, SINE, 60, 100) == [(SINE, 60, 3)]
    assert note_keys(imap, KIT, 10, 100) == [] and note_layers(imap, KIT, 10, 100) is None


def test_controllers_and_resets_follow_general_midi():
    c = Channel(0)
    assert (c.volume, c.pan, c.expression, c.bend_range, c.drums) == (100, 64, 127, 2.0, False)
    assert Channel(DRUM_CHANNEL).drums
    for cc, value in ((ev.CC_VOLUME, 90), (ev.CC_PAN, 10), (ev.CC_EXPRESSION, 80), (ev.CC_SOFT, 64)):
        assert not c.set_controller(cc, value)
    assert (c.volume, c.pan, c.expression, c.soft) == (90, 10, 80, True)
    c.reset_controllers()  # CC121 resets expression and pedals, not volume or pan
    assert (c.volume, c.pan, c.expression, c.soft) == (90, 10, 127, False)
    c.reset_all()
    assert (c.volume, c.pan) == (100, 64)


def test_rpn0_sets_the_bend_range_and_nrpn_data_is_ignored():
    c = Channel(0)
    assert not c.set_controller(ev.CC_DATA_MSB, 12)  # no RPN selected yet (the null RPN)
    c.set_controller(ev.CC_RPN_MSB, 0)
    c.set_controller(ev.CC_RPN_LSB, 0)
    assert c.set_controller(ev.CC_DATA_MSB, 12) and c.bend_range == 12.0
    assert c.set_controller(ev.CC_DATA_LSB, 50) and c.bend_range == 12.5
    c.set_controller(ev.CC_NRPN_MSB, 0)
    assert not c.set_controller(ev.CC_DATA_MSB, 1) and c.bend_range == 12.5
    assert c.bend_factor(16383) == pytest.approx(dsp.semitone_ratio(12.5))
    assert c.bend_factor(0) == pytest.approx(dsp.semitone_ratio(-12.5))
    assert c.bend_factor(ev.BEND_CENTER) == 1.0 and c.bend_factor() == 1.0


def test_gains_are_equal_power_with_the_gm_volume_curve():
    c = Channel(0)
    left, right = c.gains()
    assert left == right == pytest.approx((100 / 127) ** 2 * math.sqrt(0.5))
    for pan in (1, 30, 64, 100, 127):
        c.pan = pan
        left, right = c.gains()
        assert left**2 + right**2 == pytest.approx(((100 / 127) ** 2) ** 2)
    c.pan = 0
    assert c.gains()[1] == 0.0  # hard left
    c.pan, c.expression = 64, 0
    assert c.gains() == (0.0, 0.0)
