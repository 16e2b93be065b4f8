"""Untrained presets for tests and benchmarks: seeded, so every run has the same weights.

Weights do not change speed, and the tiny size makes the whole command line testable in
seconds; the tests that measure pitch or loudness play synthetic tones instead.
"""

from __future__ import annotations

from pathlib import Path

from .. import preset as presets
from .. import preset_write
from ..preset import Instrument, Preset

# the tests' tiny preset: a General MIDI piano, strings and bass, and a drum kit
TINY_INSTRUMENTS = [
    Instrument(0, "tiny piano", family="keyboard", gm_program=0, pitch_range=(21, 108)),
    Instrument(1, "tiny strings", family="string", gm_program=48, pitch_range=(28, 96)),
    Instrument(2, "tiny bass", family="bass", gm_program=33, pitch_range=(24, 72)),
    Instrument(3, "tiny kit", family="drums", gm_program=0, drum_kit=True, pitch_range=(35, 81)),
]


def general_midi_instruments() -> list[Instrument]:
    """One instrument per General MIDI program, and a drum kit: every channel of a GM song plays."""
    table = [Instrument(p, f"GM {p}", gm_program=p) for p in range(128)]
    table.append(Instrument(128, "GM kit", family="drums", gm_program=0, drum_kit=True, pitch_range=(27, 87)))
    return table


def untrained_preset(directory: str | Path, instruments=TINY_INSTRUMENTS, size: str = "tiny",
                     name: str | None = None, seed: int = 0) -> Preset:
    """Save an untrained SING preset of ``size`` (tiny, small, paper) in ``directory`` and load it."""
    import torch

    from ..model import Sing, SingConfig

    directory = Path(directory)
    torch.manual_seed(seed)
    model = Sing(SingConfig.named(size, n_instruments=len(instruments)))
    return presets.load(preset_write.save(directory, model, list(instruments), name=name or directory.name))
