"""Shared by the trainer's tests: the Debian SoundFonts and a tiny recipe that trains in seconds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from train.config import Recipe

GS = "/usr/share/sounds/sf2/FluidR3_GS.sf2"
GM = "/usr/share/sounds/sf2/FluidR3_GM.sf2"
ROOT = Path(__file__).resolve().parent.parent
needs_fonts = pytest.mark.skipif(not Path(GS).is_file(), reason="Debian soundfonts not installed (.ci/run installs them)")


def tiny_recipe(**stages) -> Recipe:
    """4 instruments of FluidR3_GS (effects, pitched enough to learn from), 13 pitches."""
    default = {
        "autoencoder": {"steps": 30, "lr": 0.003, "batch": 8, "crop": 16},
        "sequence": {"steps": 20, "lr": 0.01, "batch": 8},
        "end_to_end": {"steps": 10, "lr": 0.001, "batch": 8, "crop": 16},
    }
    default.update(stages)
    return Recipe(
        name="tiny-test",
        model={"size": "tiny"},
        data={"kind": "soundfont", "fonts": [GS], "pitch_min": 60, "pitch_max": 72, "max_instruments": 4},
        log_every=10,
        checkpoint_every=10,
        valid_notes=8,
        eval_notes=16,
        stages=default,
    )


def read_log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
