"""Morphing between instruments: grid positions, virtual ids, and blended notes from the renderer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sing_synth.errors import ConfigError
from sing_synth.losses import spectral_loss
from sing_synth.morph import VIRTUAL_BASE, Morph
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
