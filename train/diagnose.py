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

from . import breakdown as bd
from .config import load_recipe
from .solver import Trainer, note_group


def hidden_activity(decoder, latent: torch.Tensor) -> torch.Tensor:
    """Per note, the (frames, channels) activations of the decoder's last hidden layer."""
    return decoder.hidden(latent)


def diagnose(run_dir, per_group: int = 24, seed: int = 0) -> dict:
    recipe = load_recipe(f"{run_dir}/recipe.yaml")
    trainer = Trainer(recipe, run_dir, quiet=True)
    stages = [name for name, _ in recipe.stage_list()]
    generating = "end_to_end" in stages and (
        trainer.stage_index > stages.index("end_to_end")
        or (trainer.stage_index == stages.index("end_to_end") and trainer.step > 0)
    )
    groups: dict[str, list] = {}
    for n in trainer.notes["valid"]:
        groups.setdefault(note_group(trainer.corpus.instruments[n[0]], n[1]), []).append(n)
    rng = np.random.default_rng(seed)
    families = {i.id: i.family for i in trainer.corpus.instruments}
    model, c = trainer.model.eval(), trainer.config
    report = {"run": str(run_dir), "stage_index": trainer.stage_index, "step": trainer.step,
              "made_by": "generation" if generating else "reconstruction", "groups": {}}
    ever = torch.zeros(c.channels, dtype=torch.bool)
    for name in sorted(groups):
        pool = groups[name]
        notes = [pool[k] for k in sorted(rng.choice(len(pool), size=min(per_group, len(pool)), replace=False))]
        with torch.no_grad():
            padded = trainer.padded(notes)
            if generating:
                latent, _ = model.generator(*trainer.labels(notes))
            else:
                latent = trainer.encoder(padded)
            act = hidden_activity(model.decoder, latent)
            gen = model.decode(latent).numpy()
        ever |= (act > 0).flatten(0, 1).any(0)
        real = padded[:, c.pad : c.pad + c.note_samples].numpy()
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


def main(run_dir: str, per_group: int = 24, as_json: bool = False) -> str:
    report = diagnose(run_dir, per_group)
    return json.dumps(report, indent=1) if as_json else table(report)
