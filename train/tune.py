"""A preset's tuning map: which keys the model plays out of tune, and the nearby note that plays them instead.

Why: the model's notes are not in tune everywhere. Below about MIDI 36 most come out as grains
repeated at the decoder's frame rate, a buzz rather than a tone (train/EXPERIMENTS.md, E17), and
here and there a key higher up misses its pitch. A sampler plays such a key from a neighbouring
recording re-pitched; the engine already does that outside an instrument's ``pitch_range``.
This measures every note the instrument can play against its training recording: the model's
note and the real one at each recorded key of its range and each velocity class, each one's
fundamental by the project's estimator (``dsp.estimate_f0`` over the steady segment, as ``python -m
train evaluate`` measures pitch). A note is in tune within ``cents`` of its pitch. The model's
note is judged where the recording is in tune (the estimator reads this timbre right) or where
the recording shows no pitch but the model's note does (see :func:`judged`). A key out of tune at
half of its judged classes or more is played from the nearest key whose model notes are in tune
at every class, at most ``reach`` semitones away (the higher one on a tie), re-pitched. Other keys
stay as they are; so do drum kits and the unpitched families.

The map is stored per instrument in ``preset.yaml`` as ``played_from``: ``[first, last, source]``
runs (keys ``first``-``last`` are played from ``source``); the weights, their sha256 and every note
cache stay as they are. ``python -m train tune PRESET`` (``export`` runs it after ``calibrate``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np

from sing_synth import preset as presets
from sing_synth import preset_write
from sing_synth.renderer import NoteRenderer

from . import breakdown as bd
from .data import preset_corpus

CENTS = 50.0
REACH = 24


@dataclass
class Key:
    """One key of an instrument, over the velocity classes measured."""

    judged: int = 0  # classes where the model's note can be judged (see ``judged``)
    in_tune: int = 0  # of those, the classes whose generated note is in tune
    everywhere: int = 0  # classes whose generated note is in tune (judged or not)


def runs(mapping: dict[int, int]) -> list[list[int]]:
    """``{key: source}`` as ``[first, last, source]`` runs of consecutive keys with one source."""
    out: list[list[int]] = []
    for key in sorted(mapping):
        src = mapping[key]
        if out and out[-1][1] == key - 1 and out[-1][2] == src:
            out[-1][1] = key
        else:
            out.append([key, key, src])
    return out


def choose(keys: dict[int, Key], classes: int, reach: int = REACH) -> dict[int, int]:
    """``{key: source}``: a key whose generated notes are in tune at fewer than half of the classes
    where its real recording is measurably in tune is played from the nearest key whose generated
    notes are in tune at every class, within ``reach`` semitones, the higher one on a tie. A key with
    no such source, or no class judged, is left out."""
    good = np.array(sorted(k for k, m in keys.items() if m.everywhere == classes))
    out = {}
    if not len(good):
        return out
    for key, m in keys.items():
        if m.judged == 0 or 2 * m.in_tune >= m.judged:
            continue
        d = np.abs(good - key)
        if int(d.min()) <= reach:
            out[key] = int(good[d == d.min()].max())
    return out


def judged(real_f0: float, gen_f0: float, pitch: int, cents: float) -> bool:
    """Whether the model's note at ``pitch`` can be judged: its recording is in tune (the estimator
    reads this timbre right), or the estimator finds no pitch in the recording but one in the model's
    note (a pitch the recording does not have: the frame-rate buzz, a note a semitone off). A
    recording with a pitch elsewhere (an organ's sub-octave, say) leaves the key alone."""
    return bd.in_tune(real_f0, pitch, cents) or (real_f0 <= 0 and gen_f0 > 0)


def measure(preset, renderer, corpus, instruments, classes, cents: float = CENTS, progress=None, batch: int = 256):
    """``{instrument id: {key: Key}}`` over each instrument's recorded keys in its pitch range."""
    recorded = set(corpus.pairs())
    notes = [
        (i.id, p, v)
        for i in instruments
        for p in range(i.pitch_range[0], i.pitch_range[1] + 1)
        if (i.id, p) in recorded
        for v in classes
    ]
    out: dict[int, dict[int, Key]] = {}
    rate = preset.sample_rate
    t0 = time.time()
    for a in range(0, len(notes), batch):
        chunk = notes[a : a + batch]
        for (i, p, _), gen, real in zip(chunk, renderer.render_model_rate(chunk), corpus.load_batch(chunk)):
            k = out.setdefault(i, {}).setdefault(p, Key())
            fg, fr = bd.project_f0(gen, rate), bd.project_f0(real, rate)
            g = bd.in_tune(fg, p, cents)
            k.everywhere += g
            if judged(fr, fg, p, cents):
                k.judged += 1
                k.in_tune += g
        if progress and (a // batch) % 20 == 0:
            progress(f"tuning: {a + len(chunk)} of {len(notes)} notes measured ({time.time() - t0:.0f} s)")
    return out


def tune(preset_dir, cents: float = CENTS, reach: int = REACH, classes=None, device: str = "auto",
         progress=None, instruments=None) -> dict:
    """Measure the preset in ``preset_dir`` and store its ``played_from`` runs; returns a summary.

    ``instruments``: ids to measure (default: every pitched melodic instrument); the others keep
    no map."""
    preset = presets.load(preset_dir)
    classes = tuple(range(len(preset.velocities))) if classes is None else tuple(classes)
    pitched = [i for i in preset.instruments if not i.drum_kit and i.family not in bd.UNPITCHED]
    if instruments is not None:
        wanted = set(instruments)
        pitched = [i for i in pitched if i.id in wanted]
    corpus, _ = preset_corpus(preset, "tune")
    renderer = NoteRenderer(preset, device=device, batch_size=64)
    t0 = time.time()
    measured = measure(preset, renderer, corpus, pitched, classes, cents, progress)
    maps = {i: choose(keys, len(classes), reach) for i, keys in measured.items()}
    table = [
        replace(i, played_from=tuple(tuple(r) for r in runs(maps[i.id]))) if i.id in maps else i
        for i in preset.instruments
    ]
    keys = [m for k in measured.values() for m in k.values()]
    mapped = sum(len(m) for m in maps.values())
    summary = {
        "estimator": "project (sing_synth.dsp.estimate_f0, 0.25-1.25 s)",
        "cents": cents,
        "reach": reach,
        "velocity_classes": list(classes),
        "instruments": len(pitched),
        "keys": len(keys),
        "keys_judged": sum(m.judged > 0 for m in keys),
        "keys_in_tune": sum(m.judged > 0 and 2 * m.in_tune >= m.judged for m in keys),
        "keys_played_from_another": mapped,
        "keys_left_out_of_tune": sum(m.judged > 0 and 2 * m.in_tune < m.judged for m in keys) - mapped,
        "seconds": round(time.time() - t0, 1),
    }
    preset_write.set_instruments(preset.path, table, {"tuning": summary})
    return summary
