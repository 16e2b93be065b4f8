"""Diagnose a training run from its checkpoint: what the model makes of validation notes, by group.

``python -m train diagnose RUN_DIR`` draws the same number of validation notes from every group
(the drum kits and each melodic octave band), makes them with the stage the run has reached
(the autoencoder's reconstruction, or generation once the end-to-end stage has begun) and prints
per group: the paper's spectral L1, the median level against the real note (over the 4 s and
over the decay, 1-3 s), silent notes, pitch
accuracy (project's estimator), and how alive the decoder's last hidden layer is (share of its
channel-frames above zero). Meant for short experiments (train/EXPERIMENTS.md).
"""

from __future__ import annotations

import json

import numpy as np
import torch

from sing_synth import dsp

from . import breakdown as bd
from .config import load_recipe
from .solver import Trainer, note_group


def hidden_activity(decoder, latent: torch.Tensor) -> torch.Tensor:
    """Per note, the (frames, channels) activations of the decoder's last hidden layer."""
    return decoder.hidden(latent)


def _open(run_dir) -> tuple[Trainer, bool]:
    """The run's trainer at its checkpoint, and whether its notes are made by generation."""
    recipe = load_recipe(f"{run_dir}/recipe.yaml")
    trainer = Trainer(recipe, run_dir, quiet=True)
    stages = [name for name, _ in recipe.stage_list()]
    generating = "end_to_end" in stages and (
        trainer.stage_index > stages.index("end_to_end")
        or (trainer.stage_index == stages.index("end_to_end") and trainer.step > 0)
        or trainer.inherited
    )
    return trainer, generating


def _pick(pool: list, count: int, rng) -> list:
    return [pool[k] for k in sorted(rng.choice(len(pool), size=min(count, len(pool)), replace=False))]


@torch.no_grad()
def _make(trainer: Trainer, generating: bool, notes) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
    """``notes`` as the run makes them: the made and the real waveforms, and the decoder's latents."""
    c, model = trainer.config, trainer.model.eval()
    padded = trainer.padded(notes)
    latent = model.generator(*trainer.labels(notes))[0] if generating else trainer.encoder(padded)
    gen = model.decode(latent).numpy()
    return gen, padded[:, c.pad : c.pad + c.note_samples].numpy(), latent


def f0_report(run_dir, low: int = 24, high: int = 35, count: int = 64, seed: int = 0) -> str:
    """Where the fundamentals of a pitch range's melodic validation notes land (experiment E17):
    per note, the project's estimate for the real and the generated note and the levels of the
    first three partials; a summary counts the generated estimates in tune, at the decoder's frame
    rate (sample rate / stride) or half of it, and elsewhere."""
    trainer, generating = _open(run_dir)
    c, rate = trainer.config, trainer.config.sample_rate
    pool = [n for n in trainer.notes["valid"] if low <= n[1] <= high and not trainer.corpus.instruments[n[0]].drum_kit]
    notes = _pick(pool, count, np.random.default_rng(seed))
    gen, real, _ = _make(trainer, generating, notes)
    frame_rate = rate / c.stride
    lines = ["| instrument | pitch | Hz | real f0 | generated f0 | partials 1-3 real dB | partials 1-3 generated dB |",
             "|---|---|---|---|---|---|---|"]
    counts = {"in tune": 0, "frame rate or half": 0, "elsewhere": 0}
    for k, (i, p, _v) in enumerate(notes):
        f, fr, fg = dsp.midi_to_hz(p), bd.project_f0(real[k], rate), bd.project_f0(gen[k], rate)
        if not bd.in_tune(fr, p):
            continue
        if bd.in_tune(fg, p):
            counts["in tune"] += 1
        elif any(fg and abs(dsp.cents(fg, m * frame_rate)) <= 50 for m in (0.5, 1.0)):
            counts["frame rate or half"] += 1
        else:
            counts["elsewhere"] += 1
        parts = [" / ".join(f"{x:.0f}" for x in partials(w[k], f, rate)) for w in (real, gen)]
        lines.append(f"| {trainer.corpus.instruments[i].name} | {p} | {f:.1f} | {fr:.1f} | {fg:.1f} | {parts[0]} | {parts[1]} |")
    head = (f"{run_dir}: pitches {low}-{high}, {sum(counts.values())} of {len(notes)} notes whose real recording is in tune; "
            f"generated f0: " + ", ".join(f"{k} {v}" for k, v in counts.items()) + f" (frame rate {frame_rate:g} Hz)")
    return "\n".join([head, *lines])


def partials(x: np.ndarray, f0: float, rate: int, count: int = 3) -> list[float]:
    """Peak level (dB, arbitrary reference) near each of the first partials of ``f0`` in the steady segment."""
    a, b = bd.F0_SEGMENT
    seg = np.asarray(x[a:b], dtype=np.float64) * np.hanning(b - a)
    spec = np.abs(np.fft.rfft(seg, 1 << 16))
    freqs = np.fft.rfftfreq(1 << 16, 1 / rate)
    out = []
    for h in range(1, count + 1):
        near = (freqs > h * f0 * 0.97) & (freqs < h * f0 * 1.03)
        out.append(20 * np.log10(spec[near].max() + 1e-9) if near.any() else float("nan"))
    return out


def diagnose(run_dir, per_group: int = 24, seed: int = 0) -> dict:
    trainer, generating = _open(run_dir)
    groups: dict[str, list] = {}
    for n in trainer.notes["valid"]:
        groups.setdefault(note_group(trainer.corpus.instruments[n[0]], n[1]), []).append(n)
    rng = np.random.default_rng(seed)
    families = {i.id: i.family for i in trainer.corpus.instruments}
    c = trainer.config
    report = {"run": str(run_dir), "stage_index": trainer.stage_index, "step": trainer.step,
              "made_by": "generation" if generating else "reconstruction", "groups": {}}
    ever = torch.zeros(c.channels, dtype=torch.bool)
    for name in sorted(groups):
        notes = _pick(groups[name], per_group, rng)
        gen, real, latent = _make(trainer, generating, notes)
        with torch.no_grad():
            act = hidden_activity(trainer.model.decoder, latent)
        ever |= (act > 0).flatten(0, 1).any(0)
        summary = bd.summarize(bd.measure(gen, real, notes, families, c.sample_rate, pitch=name != "drums"))
        summary["alive_share"] = float((act > 0).float().mean())
        summary["dead_notes"] = int(((act > 0).flatten(1).sum(1) == 0).sum())
        report["groups"][name] = summary
    report["channels_ever_active"] = int(ever.sum())
    report["channels"] = c.channels
    return report


def table(report: dict) -> str:
    lines = [
        f"{report['run']}: {report['made_by']} at stage {report['stage_index']} step {report['step']}; "
        f"{report['channels_ever_active']} of {report['channels']} last-layer channels ever active",
        "| group | notes | L1 | level dB | tail dB | silent | pitch | alive | dead notes |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, g in report["groups"].items():
        acc = "n/a" if g["pitch_accuracy"] is None else f"{100 * g['pitch_accuracy']:.0f}%"
        lines.append(
            f"| {name} | {g['notes']} | {g['spectral_l1']:.4f} | {g['level_db_median']:+.1f} | "
            f"{'n/a' if g['tail_db_median'] is None else format(g['tail_db_median'], '+.1f')} | {g['silent']} | "
            f"{acc} | {100 * g['alive_share']:.1f}% | {g['dead_notes']} |"
        )
    return "\n".join(lines)


def main(run_dir: str, per_group: int = 24, as_json: bool = False, f0_band: str = "") -> str:
    if f0_band:
        low, _, high = f0_band.partition("-")
        return f0_report(run_dir, int(low), int(high or low))
    report = diagnose(run_dir, per_group)
    return json.dumps(report, indent=1) if as_json else table(report)
