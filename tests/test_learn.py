"""Learning a new instrument from recordings (sing_synth.learn) with a small seeded model."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile
import torch

from sing_synth import dsp
from sing_synth import preset as presets
from sing_synth.learn import LearnError, learn, parse_name, read_recordings
from sing_synth.losses import spectral_loss
from sing_synth.testing.presets import untrained_preset


def test_file_names_give_pitch_and_velocity():
    assert parse_name("cello_C4_v100") == (60, 100)
    assert parse_name("Eb3") == (51, None)
    assert parse_name("F#2-vel64") == (42, 64)
    assert parse_name("note-60") == (60, None)
    assert parse_name("cello") == (None, None)


def _write(directory, name, wav, rate):
    soundfile.write(str(directory / name), wav, rate)


def test_recordings_are_brought_to_the_corpus_format(tmp_path):
    rate = 22050
    t = np.arange(int(5 * rate)) / rate
    _write(tmp_path, "a_C4.wav", 0.2 * np.sin(2 * np.pi * dsp.midi_to_hz(60) * t), rate)
    _write(tmp_path, "b_60_v50.flac", 0.05 * np.sin(2 * np.pi * dsp.midi_to_hz(60) * t), rate)
    _write(tmp_path, "unnamed.wav", 0.3 * np.sin(2 * np.pi * dsp.midi_to_hz(69) * t[: rate * 2]), rate)
    recs = {r.path.name: r for r in read_recordings(tmp_path, 16000, 64000, (24, 96))}
    assert {n: (r.pitch, r.pitch_from) for n, r in recs.items()} == {
        "a_C4.wav": (60, "name"), "b_60_v50.flac": (60, "name"), "unnamed.wav": (69, "audio")}
    assert all(r.audio.shape == (64000,) and r.audio.dtype == np.float32 for r in recs.values())
    # per pitch, the loudest note peaks at -1 dBFS and the quieter one keeps its level against it
    assert np.abs(recs["a_C4.wav"].audio).max() == pytest.approx(0.89, rel=1e-3)
    assert np.abs(recs["b_60_v50.flac"].audio).max() == pytest.approx(0.89 / 4, rel=2e-2)
    assert recs["b_60_v50.flac"].vclass == 1 and recs["a_C4.wav"].velocity_from == "level"
    assert not recs["unnamed.wav"].audio[40000:].any()  # 2 s padded to 4 s with silence


@pytest.mark.parametrize("case,message", [
    ("empty", "no audio files"), ("silent", "silent"), ("high", "outside the model's range"),
    ("unreadable", "cannot read"), ("noise", "cannot tell the pitch"),
])
def test_bad_recordings_get_one_clear_error(tmp_path, case, message):
    rate = 16000
    t = np.arange(rate * 2) / rate
    if case == "silent":
        _write(tmp_path, "C4.wav", np.zeros_like(t), rate)
    elif case == "high":
        _write(tmp_path, "C8.wav", 0.3 * np.sin(2 * np.pi * 440 * t), rate)
    elif case == "unreadable":
        (tmp_path / "C4.wav").write_bytes(b"RIFF not really a wave file")
    elif case == "noise":
        _write(tmp_path, "take.wav", np.random.default_rng(0).uniform(-0.5, 0.5, len(t)), rate)
    with pytest.raises(LearnError, match=message):
        read_recordings(tmp_path, 16000, 64000, (24, 96))


@pytest.fixture
def base(tmp_path):
    return untrained_preset(tmp_path / "base").path


def test_learn_writes_a_preset_whose_new_instrument_is_closer_to_the_recordings(tmp_path, base):
    """The base model is small and untrained, but the fit only moves one embedding: the learned
    instrument must sound closer to the recordings than the instrument it started from."""
    p = presets.load(base)
    model = p.load_model()
    # recordings: notes of a blend of two of the base instruments (a sound the table does not hold)
    table = model.generator.instrument.weight.detach()
    target_emb = 0.5 * (table[0] + table[1]) + 0.8 * torch.randn_like(table[0])
    pitches = [60, 63, 67, 70]
    with torch.no_grad():
        wavs = model(torch.full((4,), 3), target_emb.expand(4, -1), torch.tensor(pitches)).numpy()
    rec = tmp_path / "rec"
    rec.mkdir()
    for pitch, wav in zip(pitches, wavs):
        _write(rec, f"note_{pitch}_v100.wav", wav / np.abs(wav).max() * 0.89, p.sample_rate)
    out = learn(rec, "My Blend", base=base, output=tmp_path / "learned", max_steps=60)
    learned = presets.load(out)
    new = learned.instrument("My Blend")
    assert new.id == len(p.instruments) and len(learned.instruments) == len(p.instruments) + 1
    info = learned.training["learned"]
    assert info["base_sha256"] == p.sha256 and info["recorded_pitches"] == pitches
    assert info["loss_end"] < info["loss_start"]
    m2 = learned.load_model()
    v, pt = torch.full((4,), 3), torch.tensor(pitches)
    target = torch.from_numpy(np.stack([w / np.abs(w).max() * 0.89 for w in wavs]).astype(np.float32))
    start = learned.instrument(info["started_from"]).id
    with torch.no_grad():
        after = float(spectral_loss(m2(v, torch.full((4,), new.id), pt), target))
        before = float(spectral_loss(m2(v, torch.full((4,), start), pt), target))
        # the other instruments are untouched
        assert torch.equal(m2.generator.instrument.weight[: len(p.instruments)], table)
    assert after < before


def test_learn_refuses_a_missing_base_and_a_taken_name(tmp_path, base):
    rec = tmp_path / "rec"
    rec.mkdir()
    t = np.arange(16000) / 16000
    _write(rec, "C4.wav", 0.3 * np.sin(2 * np.pi * 261.6 * t), 16000)
    with pytest.raises(LearnError, match="base preset"):
        learn(rec, "X", base=tmp_path / "nowhere", output=tmp_path / "o")
    taken = presets.load(base).instruments[0].name
    with pytest.raises(LearnError, match="already has an instrument"):
        learn(rec, taken, base=base, output=tmp_path / "o")


def test_the_learn_and_morph_commands(tmp_path, base):
    import subprocess
    import sys

    from sing_synth.audio_file import read_wav

    rec = tmp_path / "rec"
    rec.mkdir()
    t = np.arange(32000) / 16000
    for name, pitch in (("C4", 60), ("E4", 64)):
        _write(rec, f"{name}.wav", 0.3 * np.sin(2 * np.pi * dsp.midi_to_hz(pitch) * t), 16000)
    run = lambda *a: subprocess.run([sys.executable, "-m", "sing_synth", *a], capture_output=True, text=True, timeout=300)  # noqa: E731
    r = run("learn", str(rec), "--name", "Sine", "--preset", str(base), "-o", str(tmp_path / "mine"), "--max-steps", "5")
    assert r.returncode == 0, r.stderr
    assert "learned from 2 notes" in r.stdout and presets.load(tmp_path / "mine").instrument("Sine")
    r = run("note", "--preset", str(tmp_path / "mine"), "--instrument", "Sine", "--morph", "tiny piano",
            "--position", "0.25", "-o", str(tmp_path / "m.wav"), "--rate", "16000")
    assert r.returncode == 0, r.stderr
    assert "Sine / tiny piano at 0.25" in r.stdout and read_wav(tmp_path / "m.wav")[0].any()
    r = run("note", "--preset", str(base), "--instrument", "0", "--morph", "1", "2", "--position", "0.5")
    assert r.returncode != 0 and r.stderr.count("\n") == 1 and "2 or 4 instruments" in r.stderr
    r = run("learn", str(tmp_path / "empty"), "--name", "X", "--preset", str(base))
    assert r.returncode != 0 and r.stderr.count("\n") == 1 and "not a directory" in r.stderr
