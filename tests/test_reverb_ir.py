"""The offline reverb (the reverb's impulse response convolved by FFT) against the block engine:
the same samples to float rounding, within 1e-6, on its own and in renders of the example songs."""

from pathlib import Path

import numpy as np
import pytest
from engine_fixtures import HarmonicSource, weightless_preset

from sing_synth import reverb_ir
from sing_synth.audio_file import read_wav
from sing_synth.effects import Effects, EffectSettings
from sing_synth.render import render_file
from sing_synth.reverb import Reverb
from sing_synth.reverb_ir import ReverbIR

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_the_convolution_gives_the_block_engines_samples_whatever_the_blocks():
    """Two lanes, blocks of every size (pieces of a partition, several partitions at once), a
    reset and silent blocks skipped on the way."""
    rate, block, n = 8000, 1024, 60000
    rng = np.random.default_rng(5)
    x = np.zeros((2, n), np.float32)
    x[:, :9000] = rng.standard_normal((2, 9000))
    x[1, :3000] = 0.0  # the second lane starts later: its output is exactly zero until then
    x[:, 45000:46000] = rng.standard_normal((2, 1000))
    want = np.zeros((2, 2, n), np.float32)
    got = np.zeros_like(want)
    block_engine, convolution = Reverb(rate, 0.3, 0.3, 0.9, block, 2), ReverbIR(rate, 0.3, 0.3, 0.9, block, 2)
    assert convolution.tail == block_engine.tail and convolution.partitions > 3
    assert 9000 + convolution.tail < 40000
    a = 0
    while a < n:
        k = int(rng.integers(1, 3 * block))
        for unit, out in ((block_engine, want), (convolution, got)):
            if a > 9000 + unit.tail and a + k < 45000:  # silent long enough: reset, skipped
                unit.reset()
                unit.idle(k)
            else:
                unit.process(x[:, a : a + k], out[:, :, a : a + k])
        a += k
    assert np.max(np.abs(want)) > 0.1
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    # exact silence where the block engine's is exact: before a lane's first input, after a reset
    assert not want[1, :, :3000].any() and not got[1, :, :3000].any()
    silent = ~want.any(axis=(0, 1))
    assert silent[9000 + block_engine.tail + 3 * block : 45000].all() and not got[:, :, silent].any()


def test_the_response_is_cut_where_what_is_left_is_below_1e_8():
    """What the cut leaves out adds less than 1e-8 of the input's peak to any output sample (the L1
    norm of the rest of the response, at the highest level)."""
    rate = 22050
    h = reverb_ir.impulse_response(rate, 0.5, 0.4, 1.0)
    n = h.shape[1]
    assert n > Reverb(rate, 0.5, 0.4, 1.0, 1).tail
    reverb = Reverb(rate, 0.5, 0.4, 1.0, 1 << 15)
    x = np.zeros((1, 3 * n), np.float32)
    x[0, 0] = 1.0
    out = np.zeros((1, 2, 3 * n), np.float32)
    reverb.process(x, out)
    np.testing.assert_array_equal(out[0, :, :n], h)
    assert np.sum(np.abs(out[0, :, n:]), axis=1).max() < 1e-8


def test_offline_effects_convolve_only_where_it_pays():
    on = EffectSettings()
    assert isinstance(Effects(on, 44100, 32768, offline=True).reverb, ReverbIR)
    assert isinstance(Effects(on, 44100, 32768).reverb, Reverb)  # live play: the block engine
    assert isinstance(Effects(EffectSettings(room_size=1.0), 44100, 32768, offline=True).reverb, Reverb)
    assert Effects(EffectSettings(reverb=False), 44100, 32768, offline=True).reverb is None


@pytest.mark.parametrize("song, stems", [("demo.mid", False), ("controllers.mid", True)])
def test_renders_of_the_example_songs_match_the_block_engine(tmp_path, monkeypatch, song, stems):
    def render(name: str) -> list[np.ndarray]:
        result = render_file(
            EXAMPLES / song, tmp_path / name, weightless_preset(), source=HarmonicSource(), fmt="float", stems=stems
        )
        return [read_wav(p)[0] for p in [result.path, *result.stems.values()]]

    convolved = render("convolved.wav")
    monkeypatch.setattr(reverb_ir, "MAX_PARTITIONS", 0)  # the block engine's reverb throughout
    block_engine = render("block.wav")
    assert len(convolved) == len(block_engine) == (3 if stems else 1)
    for got, want in zip(convolved, block_engine):
        assert got.shape == want.shape and np.max(np.abs(want)) > 0.05
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
