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


# Issue 11: the voice of the whole keyboard and of the drum kits. The weights shipped on
# 2026-12-05 still fail these: some keys of some kits (the upper keys of "FluidR3_GM: Standard"
# among them) come out near the decoder's bias, and the model's own notes in the 24-35 band are out
# of tune (21% of test notes in tune; as played, through the preset's tuning map, 97%: the test
# after the next). They are strict expected failures until a preset passes; one that passes turns
# them into errors (XPASS), so the marks cannot outlive the fix.
VOICE_NOT_YET = pytest.mark.xfail(strict=True, raises=AssertionError,
                                  reason="issue 11: quiet kit keys and the lowest band out of tune (train/EXPERIMENTS.md)")
COMMON = {0: "piano", 24: "guitar", 33: "bass", 48: "strings", 61: "brass", 73: "pipe", 16: "organ", 80: "synth lead"}
BANDS = [(lo, lo + 11) for lo in range(24, 96, 12)]
GM_DRUM_KEYS = range(35, 82)


@pytest.fixture(scope="module")
def real_kits(tmp_path_factory):
    """Kit name -> GM keys 35-81 at which the real kit (rendered from its SoundFont) sounds."""
    pytest.importorskip("tinysoundfont")
    from train.data.soundfont import DEBIAN_FONTS, SoundFontCorpus

    corpus = SoundFontCorpus(DEBIAN_FONTS, pitch_min=24, pitch_max=96, cache_dir=tmp_path_factory.mktemp("probe"))
    return {i.name: [p for p in corpus.pitches[i.id] if p in GM_DRUM_KEYS] for i in corpus.instruments if i.drum_kit}


@VOICE_NOT_YET
def test_every_drum_kit_is_audible_at_the_keys_its_real_kit_plays(gm, real_kits):
    """Velocity 100; peak above -30 dBFS (the real notes peak near -1 dBFS)."""
    renderer = NoteRenderer(gm, device="cpu", batch_size=64)
    quiet = {}
    kits = [i for i in gm.instruments if i.drum_kit]
    assert len(kits) == len(real_kits) > 70
    for kit in kits:
        keys = real_kits[kit.name]
        wavs = renderer.render_model_rate([(kit.id, k, 3) for k in keys])
        peaks = 20 * np.log10(np.abs(wavs).max(1) + 1e-9)
        low = [k for k, pk in zip(keys, peaks) if pk < -30]
        if low:
            quiet[kit.name] = low
    assert not quiet, quiet


def band_notes(gm, played: bool):
    """``{(name, key): (cents or None, RMS dB)}`` of the common instruments at the middle key of each
    octave band inside their range, velocity 100: the model's own notes, or (``played``) as the engine
    plays them, a key of the preset's tuning map from its source re-pitched."""
    from sing_synth.channels import InstrumentMap

    renderer = NoteRenderer(gm, device="cpu", batch_size=64)
    imap = InstrumentMap(gm)
    keys = []
    for prog in COMMON:
        inst = gm.gm_instrument(prog)
        lo, hi = inst.pitch_range
        keys += [(inst.id, min(max((a + b) // 2, lo), hi)) for a, b in BANDS if b >= lo and a <= hi]
    sources = [imap.source_pitch(i, k)[0] if played else k for i, k in keys]
    out = {}
    for (i, k), src, wav in zip(keys, sources, renderer.render_model_rate([(i, s, 3) for (i, _), s in zip(keys, sources)])):
        wav = dsp.repitch(wav, k - src)
        f0 = dsp.estimate_f0(wav[4000:20000], gm.sample_rate)
        out[(gm.instruments[i].name, k)] = (round(dsp.cents(f0, dsp.midi_to_hz(k))) if f0 else None, round(dsp.rms_db(wav[:48000])))
    return out


def failures(notes: dict) -> dict:
    return {key: v for key, v in notes.items() if v[0] is None or abs(v[0]) > 50 or v[1] < -40}


@VOICE_NOT_YET
def test_common_instruments_are_in_tune_and_audible_in_every_octave_band(gm):
    """The model's own notes, velocity 100, the middle of each octave band inside the instrument's range."""
    assert not failures(band_notes(gm, played=False))


def test_common_instruments_are_in_tune_and_audible_as_played_in_every_octave_band(gm):
    """The same keys as the instrument plays them: the keys of the preset's tuning map (``python -m
    train tune``) from their in-tune source, re-pitched."""
    assert not failures(band_notes(gm, played=True))


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
