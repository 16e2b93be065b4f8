"""The trainer: splits, corpora, the three stages, resume, DDP under torchrun, export, evaluation."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest
import torch
from train_fixtures import GM, ROOT, needs_fonts, read_log, tiny_recipe

from sing_synth import dsp
from sing_synth import preset as presets
from train.config import load_recipe
from train.data.nsynth import NSynthCorpus
from train.data.splits import load_split, make_split, save_split, split_notes
from train.solver import Trainer, weights_digest


def test_split_keeps_every_pair_in_one_split(tmp_path):
    pairs = [(i, p) for i in range(30) for p in range(20, 80)]
    split = make_split(pairs, seed=7)
    sets = {k: set(v) for k, v in split.items()}
    assert not sets["train"] & sets["valid"] and not sets["train"] & sets["test"] and not sets["valid"] & sets["test"]
    assert set().union(*sets.values()) == set(pairs)
    assert len(sets["test"]) == len(sets["valid"]) == 180
    notes = [(i, p, v) for i, p in pairs for v in range(5)]
    by_split = split_notes(split, notes)
    for name, ns in by_split.items():  # every velocity of a pair lands in the pair's split
        assert {(i, p) for i, p, _ in ns} == sets[name]
        assert len(ns) == 5 * len(sets[name])
    save_split(split, tmp_path / "split.json", seed=7)
    assert load_split(tmp_path / "split.json") == split
    assert make_split(pairs, seed=7) == split and make_split(pairs, seed=8) != split


def write_nsynth(root: Path) -> dict:
    """A small dataset in NSynth's published layout: examples.json + audio/*.wav (16-bit, 16 kHz)."""
    (root / "audio").mkdir(parents=True)
    examples = {}
    for inst, (name, fam) in {3: ("flute_acoustic_003", "flute"), 17: ("bass_synthetic_017", "bass")}.items():
        for pitch in (48, 60):
            for vel in (25, 100, 127):
                note = f"{name}-{pitch:03d}-{vel:03d}"
                t = np.arange(64000) / 16000
                x = 0.3 * (vel / 127) * np.sin(2 * np.pi * dsp.midi_to_hz(pitch) * t)
                with wave.open(str(root / "audio" / f"{note}.wav"), "wb") as w:
                    w.setnchannels(1)
                    w.setsampwidth(2)
                    w.setframerate(16000)
                    w.writeframes(dsp.float_to_pcm16(x).tobytes())
                examples[note] = {"instrument": inst, "instrument_str": name, "instrument_family_str": fam,
                                  "pitch": pitch, "velocity": vel, "sample_rate": 16000}
    (root / "examples.json").write_text(json.dumps(examples))
    return examples


def test_nsynth_reader_reads_the_published_layout(tmp_path):
    write_nsynth(tmp_path / "nsynth-test")
    corpus = NSynthCorpus(tmp_path / "nsynth-test")
    assert [(i.id, i.name, i.family, i.pitch_range) for i in corpus.instruments] == [
        (3, "flute_acoustic_003", "flute", (48, 60)), (17, "bass_synthetic_017", "bass", (48, 60))]
    assert len(corpus.notes()) == 12 and (3, 60, 4) in corpus.notes() and (3, 60, 3) in corpus.notes() and (3, 60, 1) not in corpus.notes()
    wav = corpus.load(3, 60, 4)  # velocity 127 -> class 4
    assert wav.shape == (64000,) and wav.dtype == np.float32
    assert abs(np.abs(wav).max() - 0.3) < 1e-3  # int16 / 32767 level convention
    assert abs(dsp.cents(dsp.estimate_f0(wav[:8000], 16000), dsp.midi_to_hz(60))) < 5
    with pytest.raises(FileNotFoundError, match="examples.json"):
        NSynthCorpus(tmp_path / "missing")


@needs_fonts
def test_soundfont_corpus_renders_the_requested_pitch(tmp_path):
    from train.data.soundfont import SoundFontCorpus

    corpus = SoundFontCorpus([GM], pitch_min=40, pitch_max=84, max_instruments=1, cache_dir=tmp_path)
    piano = corpus.instruments[0]
    assert piano.gm_program == 0 and not piano.drum_kit and piano.family == "piano"
    assert piano.pitch_range == (40, 84)
    for pitch in (45, 60, 76):
        wav = corpus.load(0, pitch, 3)
        assert wav.shape == (64000,)
        f0 = dsp.estimate_f0(wav[4000:12000], 16000)
        assert abs(dsp.cents(f0, dsp.midi_to_hz(pitch))) < 30, (pitch, f0)
    loud, soft = corpus.load(0, 60, 4), corpus.load(0, 60, 0)
    assert np.abs(loud).max() > 2 * np.abs(soft).max()  # velocity layers keep their levels
    assert np.abs(loud[-2000:]).max() < 0.1 * np.abs(loud).max()  # released after 3 s
    assert (tmp_path / next(p.name for p in tmp_path.iterdir())).suffix == ".json"  # probe cached


@needs_fonts
def test_three_stages_run_and_learn(tmp_path):
    trainer = Trainer(tiny_recipe(), tmp_path / "run", quiet=True)
    assert trainer.fit() is True
    log = read_log(tmp_path / "run")
    assert [e["stage"] for e in log] == ["autoencoder"] * 3 + ["sequence"] * 2 + ["end_to_end"]
    ae = [e["valid"] for e in log if e["stage"] == "autoencoder"]
    seq = [e["valid"] for e in log if e["stage"] == "sequence"]
    assert ae[-1] < ae[0] and seq[-1] < seq[0], (ae, seq)
    assert trainer.stage_index == 3


@needs_fonts
def test_interrupted_run_resumes_from_its_checkpoint(tmp_path):
    e2e = {"steps": 6, "lr": 0.001, "batch": 8, "crop": 16, "decay_steps": 4, "lr_final": 1e-4}
    recipe = tiny_recipe(end_to_end=e2e)
    straight = Trainer(recipe, tmp_path / "straight", quiet=True)
    straight.fit()
    first = Trainer(recipe, tmp_path / "resumed", quiet=True)
    assert first.fit(max_steps=37) is False  # stops inside the sequence stage
    again = Trainer(recipe, tmp_path / "resumed", quiet=True)
    assert (again.stage_index, again.step) == (1, 7)
    assert again.fit(max_steps=16) is False  # and inside the end-to-end stage's learning-rate decay
    third = Trainer(recipe, tmp_path / "resumed", quiet=True)
    assert (third.stage_index, third.step) == (2, 3)
    assert third.fit() is True
    assert weights_digest(third.model) == weights_digest(straight.model)


def test_learning_rate_is_constant_then_falls_linearly():
    from train.config import StageConfig

    cfg = StageConfig(steps=10, lr=1e-3, decay_steps=4, lr_final=1e-4)
    rates = [cfg.lr_at(s) for s in range(10)]
    assert rates[:6] == [1e-3] * 6
    assert rates[6:] == pytest.approx([7.75e-4, 5.5e-4, 3.25e-4, 1e-4])
    assert StageConfig(steps=10, lr=1e-3).lr_at(9) == 1e-3


@needs_fonts
def test_torchrun_two_processes_hold_identical_weights(tmp_path):
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")
    recipe = tmp_path / "r.yaml"
    recipe.write_text((ROOT / "train" / "configs" / "tiny.yaml").read_text())
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [torchrun, "--standalone", "--nproc_per_node", "2", "-m", "train", "fit", str(recipe),
           "--run-dir", str(tmp_path / "run")]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    digests = [(tmp_path / "run" / f"weights-rank{r}.sha256").read_text() for r in (0, 1)]
    assert digests[0] == digests[1]
    ckpt = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert ckpt["stage_index"] == 3


@needs_fonts
def test_export_and_evaluate_write_a_preset_and_report(tmp_path):
    from train.evaluate import evaluate
    from train.export import export

    trainer = Trainer(tiny_recipe(), tmp_path / "run", quiet=True)
    trainer.fit()
    out = export(tmp_path / "run", tmp_path / "preset", command="test")
    p = presets.load(out)
    assert len(p.instruments) == 4 and p.training["complete"] and p.training["command"] == "test"
    assert set(p.training["wall_time_s"]) == {"autoencoder", "sequence", "end_to_end"}
    model = p.load_model()
    assert weights_digest(model) == weights_digest(trainer.model)
    report = evaluate(out, notes=8, update_preset=True)
    data = json.loads((report.parent / "report.json").read_text())
    for key in ("spectral_l1", "waveform_mse"):
        assert np.isfinite(data["test"]["sing"]["overall"][key]) and np.isfinite(data["test"]["baseline"]["overall"][key])
    # the breakdown covers every note once per grouping, and the per-note records agree with it
    records = data["test"]["notes"]
    assert len(records) == data["test"]["sing"]["overall"]["notes"] == 8
    for grouping in ("family", "octave", "velocity"):
        assert sum(g["notes"] for g in data["test"]["sing"][grouping].values()) == 8
    assert np.mean([r["l1"] for r in records]) == pytest.approx(data["test"]["sing"]["overall"]["spectral_l1"])
    # no tuning map (export() alone does not tune): the notes as played are the model's own
    assert data["test"]["played"]["overall"] == data["test"]["sing"]["overall"]
    # the re-pitch baseline of a note whose own pitch is in training is near the real note's level
    assert abs(data["test"]["baseline"]["overall"]["level_db_median"]) < 6
    assert "By octave, test notes" in report.read_text() and "pitch baseline (project / Praat)" in report.read_text()
    assert (report.parent / "spectrograms.png").stat().st_size > 1000
    assert (report.parent / "embeddings.png").stat().st_size > 1000
    assert presets.load(out).metrics["test"]["spectral_l1"] == data["test"]["sing"]["overall"]["spectral_l1"]


def test_breakdown_measures_level_pitch_and_silence():
    from train import breakdown as bd

    rate = 16000
    t = np.arange(64000) / rate
    real = (0.5 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)  # A4 = pitch 69
    loud_in_tune = real.copy()
    quiet_flat = (0.05 * np.sin(2 * np.pi * 440.0 * 2 ** (-1 / 12) * t)).astype(np.float32)  # -20 dB, a semitone low
    silent = np.zeros_like(real)
    gen = np.stack([loud_in_tune, quiet_flat, silent])
    ms = bd.measure(gen, np.stack([real] * 3), [(0, 69, 3), (0, 69, 3), (1, 69, 3)], {0: "organ", 1: "drums"}, rate)
    assert ms[0].level_db == pytest.approx(0.0, abs=0.01) and ms[0].pitch_project and ms[0].pitch_praat
    assert ms[1].level_db == pytest.approx(-20.0, abs=0.1)
    assert ms[1].pitch_project is False and ms[1].pitch_praat is False
    assert ms[2].silent and ms[2].pitch_project is None  # drums are not pitch-checked
    summary = bd.breakdown(ms)
    assert summary["overall"]["silent"] == 1 and summary["overall"]["pitch_accuracy"] == 0.5
    assert set(summary["family"]) == {"organ", "drums"} and list(summary["octave"]) == ["60-71"]


def test_recipes_load_and_reject_unknown_keys(tmp_path):
    for name in ("tiny", "sing-gm", "paper"):
        assert load_recipe(name).stage_list()
    bad = tmp_path / "bad.yaml"
    bad.write_text("stages: {autoencoder: {stepz: 3}}\n")
    with pytest.raises(ValueError, match="stepz"):
        load_recipe(bad)


def test_data_init_leaves_no_decoder_channel_dead():
    from sing_synth.model import Encoder, Sing, SingConfig
    from train.diagnose import hidden_activity
    from train.init import OUTPUT_RATIO, data_init

    torch.manual_seed(0)
    c = SingConfig.named("tiny", 4)
    model, encoder = Sing(c), Encoder(c)
    t = np.arange(c.note_samples) / c.sample_rate
    rng = np.random.default_rng(0)
    notes = np.stack([0.3 * np.sin(2 * np.pi * f * t) * np.exp(-t * d) for f, d in zip(rng.uniform(50, 2000, 24), rng.uniform(0, 4, 24))])
    padded = torch.nn.functional.pad(torch.from_numpy(notes.astype(np.float32)), (c.pad, c.pad))
    with torch.no_grad():
        before = (hidden_activity(model.decoder, encoder(padded)) > 0).flatten(0, 1).any(0).sum()
    data_init(encoder, model.decoder, padded[:16], padded[:16, c.pad : c.pad + c.note_samples])
    with torch.no_grad():
        latent = encoder(padded[16:])  # notes the initialisation did not see
        alive = (hidden_activity(model.decoder, latent) > 0).flatten(0, 1).any(0).sum()
        ratio = model.decode(latent).pow(2).mean().sqrt() / padded[16:].pow(2).mean().sqrt() * (padded.shape[1] / c.note_samples) ** 0.5
    assert alive == c.channels and before < c.channels
    assert 0.3 * OUTPUT_RATIO < float(ratio) < 3 * OUTPUT_RATIO


@needs_fonts
def test_balanced_sampling_draws_every_group_alike(tmp_path):
    recipe = tiny_recipe()
    recipe.sampling = "balanced"
    recipe.data = {"kind": "soundfont", "fonts": [GM], "pitch_min": 30, "pitch_max": 90, "every": 40, "every_kit": 20}
    trainer = Trainer(recipe, tmp_path / "run", quiet=True)
    groups = trainer.train_groups
    assert len(groups) >= 5 and any(trainer.corpus.instruments[g[0][0]].drum_kit for g in groups)
    drawn = trainer.draw(np.random.default_rng(0), 6000)
    where = {n: k for k, g in enumerate(groups) for n in g}
    counts = np.bincount([where[n] for n in drawn], minlength=len(groups))
    assert counts.min() > 0.7 * 6000 / len(groups) and counts.max() < 1.3 * 6000 / len(groups)


def test_schedules_of_the_learning_rate_and_the_quantile_weight():
    from train.config import StageConfig

    s = StageConfig(steps=100, lr=1e-3, warmup_steps=10, decay_steps=20, lr_final=1e-4, under_weight=2.0, under_weight_final=1.0)
    assert s.lr_at(0) == pytest.approx(1e-4) and s.lr_at(9) == pytest.approx(1e-3) and s.lr_at(50) == 1e-3
    assert s.lr_at(99) == pytest.approx(1e-4) and s.under_weight_at(79) == 2.0 and s.under_weight_at(99) == pytest.approx(1.0)
    assert 1.0 < s.under_weight_at(90) < 2.0
    assert StageConfig(steps=100, decay_steps=20, under_weight=2.0).under_weight_at(99) == 2.0  # no final: constant


def test_quantile_weight_charges_a_missing_note_more_than_a_spurious_one():
    from train.stages import reconstruction_loss

    y = torch.from_numpy(np.sin(np.arange(8000) * 0.3).astype(np.float32))[None] * 0.3
    quiet, loud = 0.1 * y, 3.0 * y
    plain = [float(reconstruction_loss("spectral", x, y)) for x in (quiet, loud)]
    weighted = [float(reconstruction_loss("spectral", x, y, under_weight=2.0)) for x in (quiet, loud)]
    assert weighted[0] == pytest.approx(2 * plain[0], rel=0.05)  # below the target everywhere it sounds
    assert weighted[1] < 1.2 * plain[1]  # above it: about the same


def test_long_window_term_hears_grains_that_cancel_a_low_tone():
    """A 41 Hz tone and the same tone with its phase flipped every 1024 samples (decoder grains
    that do not add up) look alike to the paper's 1024-sample window; the 4096 window tells them apart."""
    from train.stages import reconstruction_loss

    t = np.arange(32768)
    y = torch.from_numpy((0.3 * np.sin(2 * np.pi * 41 / 16000 * t)).astype(np.float32))[None]
    flips = torch.from_numpy(np.where((t // 1024) % 2 == 0, 1.0, -1.0).astype(np.float32))[None]
    x = y * flips
    short = float(reconstruction_loss("spectral", x, y))
    both = float(reconstruction_loss("spectral", x, y, long_fft=1.0))
    assert both - short > 2 * short  # the long term alone outweighs the short one twice over
    assert float(reconstruction_loss("spectral", y, y, long_fft=1.0)) == 0.0


@needs_fonts
def test_calibration_brings_a_preset_to_its_recordings_level(tmp_path):
    from train.calibrate import calibrate
    from train.data import CORPUS_CACHE, make_corpus
    from train.export import export

    recipe = tiny_recipe()
    Trainer(recipe, tmp_path / "run", quiet=True).fit()
    out = export(tmp_path / "run", tmp_path / "preset", command="test")
    corpus = make_corpus(recipe.data, cache_dir=CORPUS_CACHE)
    notes = split_notes(load_split(out / "split.json"), corpus.notes())["train"][::3]
    real = corpus.load_batch(notes)

    def level(p):
        model = p.load_model()
        with torch.no_grad():
            t = torch.tensor(notes)
            gen = model(t[:, 2], t[:, 0], t[:, 1]).numpy()
        return float(np.median([dsp.rms_db(g) - dsp.rms_db(r) for g, r in zip(gen, real)]))

    before_preset = presets.load(out)
    before = level(before_preset)
    summary = calibrate(out, per_band=4, limit_db=40.0)  # an untrained tiny model is about 34 dB quiet
    after_preset = presets.load(out)
    after = level(after_preset)
    assert summary["median_level_before_db"] == pytest.approx(before, abs=3.0)
    assert abs(after) < abs(before) - 20 and abs(after) < 6.0, (before, after)  # 4 notes a band of a 30-step model
    assert after_preset.sha256 != before_preset.sha256  # the note caches keyed by it start anew
    assert after_preset.training["calibration"]["melodic_notes"] > 0
    gains = after_preset.load_model().level_db.numpy()
    ids = [i.id for i in after_preset.instruments]
    assert np.abs(gains[ids][:, 60:73]).max() > 0 and np.abs(gains).max() <= 40.0
    from train.cli import main

    assert main(["calibrate", str(out)]) == 0  # the command line, on a preset without drum kits
    assert main(["tune", str(out)]) == 0
    tuning = presets.load(out).training["tuning"]  # its four instruments are sound effects: unpitched, not tuned
    assert tuning["instruments"] == tuning["keys"] == 0 and all(not i.played_from for i in presets.load(out).instruments)
