"""More training for a finished run: a new run from its weights (start_from), dead decoder
channels revived (revive_every), and the lowest band's fundamentals (diagnose --f0-band)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from train_fixtures import needs_fonts, read_log, tiny_recipe

from train.config import Recipe, load_recipe
from train.solver import Trainer, weights_digest


@needs_fonts
def test_a_new_run_starts_from_a_finished_runs_weights_and_split(tmp_path):
    first = Trainer(tiny_recipe(), tmp_path / "first", quiet=True)
    assert first.fit() is True
    shipped = weights_digest(first.model)
    from train.diagnose import f0_report, partials

    report = f0_report(tmp_path / "first", 60, 72, count=8)  # E17's table: one row per counted note
    counted = int(report.split(", ")[1].split(" of ")[0])
    assert len(report.splitlines()) == 3 + counted and "frame rate 62.5 Hz" in report
    t = np.arange(16000 * 2) / 16000
    tone = np.sin(2 * np.pi * 100 * t) + 0.1 * np.sin(2 * np.pi * 200 * t)
    p1, p2, p3 = partials(tone, 100.0, 16000)
    assert p1 - p2 == pytest.approx(20, abs=0.5) and p1 - p3 > 60
    more = dict(tiny_recipe().to_dict(), start_from=str(tmp_path / "first"), seed=1,
                stages={"end_to_end": {"steps": 4, "lr": 0.001, "batch": 8, "crop": 16, "revive_every": 2}})
    second = Trainer(Recipe(**more), tmp_path / "second", quiet=True)
    assert weights_digest(second.model) == shipped  # the finished weights, not an initialisation
    assert (second.stage_index, second.step) == (0, 0)
    assert second.split == first.split
    assert second.fit() is True
    assert weights_digest(second.model) != shipped
    assert len(read_log(tmp_path / "second")[-1]["revived"]) == 3  # the decoder's layers, checked at steps 0 and 2
    ckpt = torch.load(tmp_path / "second" / "checkpoint.pt", weights_only=True)
    assert [h["run"] for h in ckpt["history"]] == [str(tmp_path / "first")]
    assert set(ckpt["history"][0]["elapsed"]) == {"autoencoder", "sequence", "end_to_end"}
    other = dict(more, split_seed=7)
    with pytest.raises(ValueError, match="another split_seed"):
        Trainer(Recipe(**other), tmp_path / "third", quiet=True)
    assert not (tmp_path / "third" / "split.json").exists()  # nothing written for a refused source
    grain = dict(more, model={"size": "tiny", "kernel_size": 2048, "pad": 2816})  # init.widen_grain
    grown = Trainer(Recipe(**grain), tmp_path / "grown", quiet=True)
    labels = [torch.tensor(v) for v in ([1, 4, 2], [0, 1, 3], [60, 66, 72])]
    with torch.no_grad():
        assert torch.allclose(grown.model(*labels), first.model(*labels), atol=1e-6)
    wider = dict(more, model={"size": "tiny", "channels": 64})
    with pytest.raises(ValueError, match="more than a longer grain"):
        Trainer(Recipe(**wider), tmp_path / "wider", quiet=True)
    shutil.rmtree(tmp_path / "first")  # as in a fresh clone: the source run and the split files are not there
    (tmp_path / "second" / "split.json").unlink()
    again = Trainer(load_recipe(tmp_path / "second" / "recipe.yaml"), tmp_path / "second", quiet=True)
    assert weights_digest(again.model) == weights_digest(second.model)  # resumes its own checkpoint
    assert again.split == second.split  # the same seed over the same data
    (tmp_path / "second" / "split.json").unlink()
    from train.data.splits import load_split
    from train.export import export

    out = export(tmp_path / "second", tmp_path / "preset")  # and exports without the split file
    assert load_split(out / "split.json") == second.split


def test_a_longer_grain_changes_no_note_and_no_frame():
    """``widen_grain``: a kernel of 1,024 -> 2,048 samples with pad grown by half as much; the
    decoder's notes and the encoder's latents stay the same (the frames do not move)."""
    from sing_synth.model import Encoder, Sing, SingConfig
    from train.init import grain_growth, widen_grain

    torch.manual_seed(0)
    old = SingConfig.tiny()
    model, encoder = Sing(old).eval(), Encoder(old).eval()
    note = torch.randn(2, old.note_samples) * 0.1
    labels = [torch.tensor(v) for v in ([1, 4], [0, 3], [30, 90])]
    with torch.no_grad():
        notes, latents = model(*labels), encoder(torch.nn.functional.pad(note, (old.pad, old.pad)))
    new = SingConfig.from_dict(dict(old.to_dict(), kernel_size=2048, pad=old.pad + 512))
    assert grain_growth(old, new) == 512 and new.n_steps == old.n_steps
    model2, encoder2 = Sing(new).eval(), Encoder(new).eval()
    model2.load_state_dict(widen_grain(model.state_dict(), old, new))
    encoder2.load_state_dict(widen_grain(encoder.state_dict(), old, new))
    with torch.no_grad():
        assert torch.allclose(model2(*labels), notes, atol=1e-6)
        assert torch.allclose(encoder2(torch.nn.functional.pad(note, (new.pad, new.pad))), latents, atol=1e-5)
    for bad in ({"kernel_size": 2048, "pad": 3072}, {"kernel_size": 512, "pad": 2048}, {"channels": 64}):
        with pytest.raises(ValueError, match="only kernel_size"):
            grain_growth(old, SingConfig.from_dict(dict(old.to_dict(), **bad)))


def test_revive_gives_dead_channels_inputs_without_changing_the_output():
    from sing_synth.model import Decoder, SingConfig
    from train.init import revive

    torch.manual_seed(0)
    decoder = Decoder(SingConfig.tiny())
    latent = torch.randn(6, 40, decoder.config.latent_dim)
    with torch.no_grad():
        decoder.context.bias[:5] = -1e3  # five channels of the first layer never fire
        decoder.rewrite[1].bias[-3:] = -1e3  # nor three of the last hidden layer
        before = decoder(latent)
        alive_before = (decoder.hidden(latent) > 0).flatten(0, 1).any(0)
    counts = revive(decoder, latent)
    assert counts[0] >= 5 and counts[2] >= 3, counts
    with torch.no_grad():
        after = decoder(latent)
        alive = (decoder.hidden(latent) > 0).flatten(0, 1).any(0)
    assert torch.allclose(after, before, atol=1e-6)  # zero outgoing weights: the same notes
    assert int(alive.sum()) > int(alive_before.sum()) and bool(alive[-3:].all())
    assert revive(decoder, latent) == [0, 0, 0]  # nothing left to revive


def test_a_drum_gain_lets_the_loss_see_a_noise_bed_under_a_hit():
    """E22: a kit note made of a hit and a steady noise bed 60 dB under it costs next to nothing
    more than the clean hit at the paper's level; 30 dB more gain for that note makes the bed cost.
    A gain per note (a tensor) weighs each note as its own number would."""
    from train.stages import reconstruction_loss

    rng = np.random.default_rng(0)
    hit = np.zeros(16000, np.float32)
    hit[:800] = rng.standard_normal(800).astype(np.float32) * np.exp(-np.arange(800) / 150) * 0.5
    bed = hit + (rng.standard_normal(16000) * 10 ** (-60 / 20) * 0.5).astype(np.float32)
    y, x = torch.from_numpy(hit)[None], torch.from_numpy(bed)[None]
    plain, gained = (float(reconstruction_loss("spectral", x, y, gain_db=g)) for g in (0.0, 30.0))
    assert plain < 0.002 and gained > 20 * plain
    pair_x, pair_y = torch.cat([x, y]), torch.cat([y, y * 0.5])
    per_note = float(reconstruction_loss("spectral", pair_x, pair_y, gain_db=torch.tensor([30.0, 0.0])))
    alone = [float(reconstruction_loss("spectral", pair_x[k : k + 1], pair_y[k : k + 1], gain_db=g)) for k, g in ((0, 30.0), (1, 0.0))]
    assert per_note == pytest.approx(sum(alone) / 2, rel=1e-5)
    with pytest.raises(ValueError, match="only the end_to_end stage"):
        Recipe(stages={"autoencoder": {"drum_gain_db": 20.0}})


def test_a_tail_gain_lets_the_loss_hear_a_release_cut_short():
    """E25: a decaying tone whose release falls 3x too fast costs little more than the true one at
    the paper's level, where the release sinks under the loss's floor; with tail_gain_db each
    frame counts as if it were as loud as the note's loudest one (up to the cap), so the short
    release costs. The loudest frame keeps its level; a silent frame gets the whole cap."""
    from train.stages import loudest_frame, power_spectrogram, reconstruction_loss, tail_gains

    t = np.arange(3 * 16000) / 16000
    tone = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    true_note = torch.from_numpy(tone * np.exp(-t / 0.4).astype(np.float32))[None]  # -22 dB a second
    short = torch.from_numpy(tone * np.exp(-t / (0.4 / 3)).astype(np.float32))[None]
    loudest = loudest_frame(true_note)
    gains = tail_gains(power_spectrogram(true_note).sum(1), loudest, 30.0)
    assert float(gains[0, 0]) == pytest.approx(1.0, rel=0.05) and float(gains[0, -1]) == pytest.approx(1000.0)
    plain = float(reconstruction_loss("spectral", short, true_note))
    tailed = float(reconstruction_loss("spectral", short, true_note, tail_db=30.0, loudest=loudest))
    assert tailed > 2 * plain, (plain, tailed)
    same = float(reconstruction_loss("spectral", true_note, true_note, tail_db=30.0, loudest=loudest))
    assert same == 0.0
    # the gains applied by hand: the same loss
    by_hand = (torch.log1p(power_spectrogram(short) * gains[:, None]) - torch.log1p(power_spectrogram(true_note) * gains[:, None]))
    assert tailed == pytest.approx(float(by_hand.abs().mean()), rel=1e-6)
    # a stage's loss: the notes marked (the end-to-end stage's drum kits) are left out of the tail gain
    from train.config import StageConfig
    from train.stages import stage_loss

    cfg = StageConfig(tail_gain_db=30.0)
    assert float(stage_loss(cfg, short, true_note, loudest=loudest)) == pytest.approx(tailed, rel=1e-5)
    kept_out = float(stage_loss(cfg, short, true_note, loudest=loudest, no_tail=torch.tensor([True])))
    assert kept_out == pytest.approx(plain, rel=1e-5)
    with pytest.raises(ValueError, match="tail_gain_db must be 0 or more"):
        Recipe(stages={"end_to_end": {"tail_gain_db": -3.0}})


@needs_fonts
def test_a_tail_gain_run_trains_and_finds_each_notes_loudest_frame_once(tmp_path):
    """The stages hand the loss each note's loudest frame from the trainer's per-note store: the
    same figure as the whole padded note gives, made once per note whatever its batches."""
    from train.stages import loudest_frame

    trainer = Trainer(tiny_recipe(autoencoder={"steps": 3, "batch": 8, "crop": 16, "tail_gain_db": 20.0},
                                  sequence={"steps": 2, "batch": 8},
                                  end_to_end={"steps": 3, "batch": 8, "crop": 16, "tail_gain_db": 20.0}),
                      tmp_path / "run", quiet=True)  # fmt: skip
    assert trainer.fit()
    log = read_log(tmp_path / "run")
    assert {e["stage"] for e in log} == {"autoencoder", "sequence", "end_to_end"}
    assert all(np.isfinite(e["train_loss"]) and np.isfinite(e["valid"]) for e in log)
    seen = dict(trainer._loudest)
    assert 8 <= len(seen) <= (3 + 3) * 8
    notes = list(seen)[:5]
    direct = loudest_frame(trainer.padded(notes))
    assert torch.allclose(trainer.loudest(notes, trainer.padded(notes)), direct, rtol=1e-5)
    assert trainer._loudest == seen  # nothing computed again
    calls = []
    trainer._loudest.clear()
    import train.solver

    real = train.solver.loudest_frame
    train.solver.loudest_frame = lambda x: calls.append(len(x)) or real(x)
    try:
        trainer.loudest(notes + notes[:2], trainer.padded(notes + notes[:2]))
        trainer.loudest(notes, trainer.padded(notes))
    finally:
        train.solver.loudest_frame = real
    assert calls == [7]  # the batch's notes computed once (a repeated note twice in that batch), then none
