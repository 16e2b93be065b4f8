"""Morphing between instruments: grid positions, virtual ids, blended notes from the renderer, the
controllers that move a channel's position, the stand-ins of positions, the notes a song needs."""

from __future__ import annotations

import mido
import numpy as np
import pytest
import torch
from engine_fixtures import tiny_preset, write_midi  # noqa: F401

from sing_synth import midi_file
from sing_synth.channels import Channel, InstrumentMap
from sing_synth.errors import ConfigError
from sing_synth.losses import spectral_loss
from sing_synth.morph import VIRTUAL_BASE, Morph, MorphControl, check_controllers
from sing_synth.note_source import standin
from sing_synth.renderer import NoteRenderer
from sing_synth.testing.presets import untrained_preset


def test_positions_are_quantised_and_corners_are_the_instruments_themselves():
    line = Morph((0, 2), steps=16)
    assert line.quantise(0.0) == (0, 0) and line.quantise(1.0) == (16, 0) and line.quantise(0.49) == (8, 0)
    assert line.quantise(-3) == (0, 0) and line.quantise(7) == (16, 0)
    assert line.instrument(0) == 0 and line.instrument(16) == 2  # exactly A and B
    mid = line.instrument(8)
    assert mid >= VIRTUAL_BASE and line.weights(8) == [(0, 0.5), (2, 0.5)]
    assert Morph((0, 2), steps=16).instrument(8) == mid  # stable: the disk cache keys notes by it
    assert Morph((2, 0), steps=16).instrument(8) != mid and Morph((0, 2), steps=8).instrument(4) != mid
    square = Morph((0, 1, 2, 3), steps=4)
    assert [square.instrument(*q) for q in ((0, 0), (4, 0), (0, 4), (4, 4))] == [0, 1, 2, 3]
    assert dict(square.weights(1, 2)) == pytest.approx({0: 0.375, 1: 0.125, 2: 0.375, 3: 0.125})
    assert len(square.blends()) == 25 - 4 and len(line.blends()) == 17 - 2


def test_bad_morphs_are_refused():
    for corners in ((0,), (0, 1, 2), (1, 1)):
        with pytest.raises(ConfigError):
            Morph(corners)
    with pytest.raises(ConfigError, match="steps"):
        Morph((0, 1), steps=0)


def test_blended_notes_move_from_a_to_b(tmp_path):
    preset = untrained_preset(tmp_path / "p")
    torch.manual_seed(0)
    r = NoteRenderer(preset, device="cpu", batch_size=8)
    line = Morph((0, 1), steps=8)
    r.add_blends(line.blends())
    notes = [(line.instrument(q), 60, 3) for q in range(9)]
    wav = torch.from_numpy(r.render_model_rate(notes))
    a, b = torch.from_numpy(r.render_model_rate([(0, 60, 3), (1, 60, 3)]))
    assert torch.equal(wav[0], a) and torch.equal(wav[8], b)  # the ends are A and B exactly
    to_a = [float(spectral_loss(w[None], a[None])) for w in wav]
    to_b = [float(spectral_loss(w[None], b[None])) for w in wav]
    assert to_a[0] == 0 and to_b[-1] == 0
    # moving along the line leaves A and approaches B (untrained weights: compare ends and middle)
    assert to_a[0] < to_a[4] < to_a[8] and to_b[0] > to_b[4] > to_b[8]
    assert np.corrcoef(range(9), to_a)[0, 1] > 0.9 and np.corrcoef(range(9), to_b)[0, 1] < -0.9


# Played from MIDI controllers -------------------------------------------------------------------
def test_controllers_are_checked():
    assert check_controllers((16, 17), square=False) == (16,) and check_controllers([1], square=False) == (1,)
    assert check_controllers((16, 17), square=True) == (16, 17)
    for ccs, square, message in [
        ((200,), False, "out of range"), ((-1,), False, "out of range"), ((7,), False, "already has a meaning"),
        ((64,), False, "already has a meaning"), ((91,), False, "already has a meaning"),
        ((16,), True, "takes 2 controllers"), ((16, 17, 18), False, "takes 1 controller"),
        ((16, 16), True, "must differ"),
    ]:  # fmt: skip
        with pytest.raises(ConfigError, match=message) as err:
            check_controllers(ccs, square)
        assert err.value.setting == "morph_cc"


def test_controller_values_move_a_channel_on_the_grid():
    control = MorphControl(Morph((0, 2), steps=16))
    assert control.index[0] == 0 and control.index[127] == 16 and control.index[64] == 8
    c = Channel(0)
    c.instrument = 0
    assert control.move(c, 7, 100) is None  # not the morph's controller
    assert control.move(c, 16, 64) is True and (c.morph_x, c.morph_y) == (8, 0)
    assert control.move(c, 16, 65) is False  # the same grid position
    assert control.playing(c) == control.morph.instrument(8)
    c.instrument = 1  # a channel playing another instrument is not morphed
    assert control.playing(c) == 1
    c.instrument = 0
    c.reset_controllers()  # CC121 and resets: back to position 0, the first instrument itself
    assert control.playing(c) == 0
    square = MorphControl(Morph((0, 1, 2, 3), steps=4), ccs=(20, 21))
    assert square.move(c, 21, 127) and square.move(c, 20, 127) is True and square.playing(c) == 3
    with pytest.raises(ConfigError, match="128 values") as err:  # finer than a controller can reach
        MorphControl(Morph((0, 1), steps=200))
    assert err.value.setting == "morph_steps"


def test_a_positions_stand_in_is_the_nearest_position_made_at_that_pitch():
    line = Morph((0, 1), steps=8)
    pos = [line.instrument(q) for q in range(9)]
    near = line.neighbours()
    slots = {(0, 60, 3): 1, (pos[2], 60, 3): 2, (pos[7], 62, 3): 3, (1, 50, 3): 4}
    assert standin(slots, pos[4], 60, 3, near[pos[4]]) == (2, 1.0)  # position 2 beats the corner A
    assert standin(slots, pos[1], 60, 3, near[pos[1]]) == (1, 1.0)  # A (distance 1) beats position 2
    assert standin(slots, pos[6], 62, 1, near[pos[6]]) == (3, 1.0)  # another class at that pitch
    # nothing at that pitch: the position's own nearest pitch, else the nearest corner's, re-pitched
    assert standin(slots, pos[7], 63, 3, near[pos[7]]) == (3, pytest.approx(2 ** (1 / 12)))
    assert standin(slots, pos[6], 52, 3, near[pos[6]]) == (4, pytest.approx(2 ** (2 / 12)))
    assert standin({}, pos[3], 60, 3, near[pos[3]]) is None
    assert standin(slots, 2, 60, 3) is None  # outside the morph: never another instrument


def test_the_notes_a_song_needs_follow_each_channels_position(tiny_preset, tmp_path):  # noqa: F811
    control = MorphControl(Morph((0, 1), steps=4))
    ids = control.ids[0]
    cc = lambda t, ch, v: [mido.Message("control_change", channel=ch, control=16, value=v, time=t)]  # noqa: E731
    on = lambda t, ch, p: [mido.Message("note_on", channel=ch, note=p, velocity=100, time=t),  # noqa: E731
                           mido.Message("note_off", channel=ch, note=p, velocity=0, time=10)]
    track = [*on(0, 0, 60), *cc(0, 0, 64), *on(0, 0, 60), *cc(0, 1, 127), *on(0, 1, 62), *on(0, 0, 61),
             *cc(0, 9, 127), *on(0, 9, 36), mido.Message("control_change", channel=0, control=121, value=0),
             *on(0, 0, 63), *cc(0, 0, 32), *on(0, 0, 64)]  # fmt: skip
    song = midi_file.read(write_midi(tmp_path / "song.mid", [track]), 16000)
    needed = midi_file.needed_notes(song, InstrumentMap(tiny_preset, 0, control))
    assert needed == [(0, 60, 3), (ids[2], 60, 3), (1, 62, 3), (ids[2], 61, 3), (3, 36, 3), (0, 63, 3), (ids[1], 64, 3)]
    assert midi_file.needed_notes(song, InstrumentMap(tiny_preset, 0)) == [
        (0, 60, 3), (0, 62, 3), (0, 61, 3), (3, 36, 3), (0, 63, 3), (0, 64, 3)]  # fmt: skip
