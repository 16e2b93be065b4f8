"""The shipped default preset `sing-gm`: it loads, its notes are audible, in tune and follow velocity."""

import numpy as np
import pytest
from engine_fixtures import one_thread  # noqa: F401

from sing_synth import dsp
from sing_synth import preset as presets
from sing_synth.renderer import NoteRenderer

# General MIDI programs of a few families: piano, organ, guitar, strings, brass, reed, pipe, lead
PITCHED = {0: "piano", 19: "organ", 24: "guitar", 40: "violin", 56: "trumpet", 65: "saxophone", 73: "flute", 80: "lead"}
PITCHES = (48, 60, 72)


@pytest.fixture(scope="module")
def gm():
    return presets.load(presets.DEFAULT_PRESET)


@pytest.fixture(scope="module")
def notes(gm):
    renderer = NoteRenderer(gm, device="cpu", batch_size=32)
    keys = [(gm.gm_instrument(prog).id, p, v) for prog in PITCHED for p in PITCHES for v in (0, 4)]
    return dict(zip(keys, renderer.render_model_rate(keys)))


def test_default_preset_is_a_general_midi_bank(gm):
    assert gm.name == "sing-gm" and len(gm.instruments) == 669
    assert gm.instrument(412).id == 412
    assert all(gm.gm_instrument(p).gm_program == p for p in range(128))
    kit = gm.gm_instrument(0, drums=True)
    assert kit.drum_kit and "Standard" in kit.name
    assert gm.training["complete"] in (True, False) and gm.metrics["test"]["spectral_l1"] > 0


def test_notes_are_audible_and_finite(notes):
    for key, wav in notes.items():
        assert np.isfinite(wav).all(), key
        assert dsp.rms_db(wav[: 16000 * 3]) > -60, key  # audible while the key is held (velocity 25 included)
        assert np.abs(wav).max() < 2.0, key


def test_notes_are_louder_at_higher_velocity(notes, gm):
    louder = [dsp.rms_db(notes[(i, p, 4)][:48000]) > dsp.rms_db(notes[(i, p, 0)][:48000])
              for (i, p, v) in notes if v == 0]
    assert all(louder), louder


def test_notes_have_the_requested_pitch(notes, gm):
    """Fundamental within 50 cents of the target, measured 0.25-1.25 s into the note."""
    results = {}
    for (i, p, v), wav in notes.items():
        f0 = dsp.estimate_f0(wav[4000:20000], gm.sample_rate)
        results[(gm.instruments[i].name, p, v)] = round(dsp.cents(f0, dsp.midi_to_hz(p))) if f0 else None
    in_tune = [c is not None and abs(c) <= 50 for c in results.values()]
    # measured 45 of 48 (93.8%) for the shipped weights; over all test notes the report gives 58%
    assert np.mean(in_tune) >= 0.9, results




def test_the_demo_song_renders_with_the_default_preset(tmp_path, one_thread):  # noqa: F811
    from pathlib import Path

    from sing_synth.audio_file import read_wav
    from sing_synth.render import render_file

    song = Path(__file__).resolve().parent.parent / "examples" / "demo.mid"
    result = render_file(song, tmp_path / "demo.wav", None, rate=22050)
    audio, rate = read_wav(tmp_path / "demo.wav")
    assert rate == 22050 and result.notes_rendered == result.notes_needed > 50
    assert 60 < len(audio) / rate < 75  # the song is 63 s; the file ends when the sound has died away
    assert np.isfinite(audio).all() and np.abs(audio).max() <= 1.0
    second = (len(audio) // rate) - 2
    loud = [dsp.rms_db(audio[s * rate : (s + 1) * rate]) > -50 for s in range(1, second)]
    assert np.mean(loud) > 0.9  # music all the way through, not a few notes
    assert result.stats["notes_missing"] == 0
