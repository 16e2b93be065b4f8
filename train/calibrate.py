"""A preset's level calibration: the gain per (instrument, pitch) that brings generated notes to
the level of their training recordings.

Why: the spectral loss settles on notes quieter than their recordings where the model is unsure
of its partials (the L1 optimum is a median, DESIGN.md section 7), by an amount that depends on
the instrument and the register, and a General MIDI song needs its instruments at their
relative levels. The gain is measured on *training* notes only (the split's test pitches never
enter it) and stored in the weights (``Sing.level_db``), so the preset's sha256, and every note
cache keyed by it, change with it.

- Melodic instruments: per octave band, up to ``per_band`` training notes (seeded pitches and
  velocity classes); the band's gain is minus the median of generated RMS over real RMS (dB),
  interpolated linearly in pitch between the bands' centres, held flat past the outer ones.
- Drum kits: each key is a different sound, so each training key gets its own gain, minus the
  mean peak difference of its velocity classes 75 and 127 (the evaluation's drum section plays
  velocity 100); a key held out of training gets its kit's median.
Every gain is clipped to +-``limit_db`` (+-``drum_limit_db`` for kit keys: the network's hits
come out as much as 25 dB under their recordings' peaks, smeared rather than missing).
``python -m train calibrate PRESET`` (run by ``export``).
"""

from __future__ import annotations

import numpy as np
import torch

from sing_synth import dsp, preset_write
from sing_synth import preset as presets
from sing_synth.renderer import NoteRenderer

from . import breakdown as bd
from .data import preset_corpus

DRUM_CLASSES = (2, 4)  # velocity 75 and 127
SILENT_REAL_DB = -70.0  # a real note this quiet (RMS) says nothing about the level


def band_index(pitch: int) -> int:
    bands = bd.OCTAVE_BANDS
    return min(max((pitch - bands[0][0]) // 12, 0), len(bands) - 1)


def interpolate(band_gain: dict[int, float], n_pitches: int) -> np.ndarray:
    """Per-pitch gains from per-band ones (linear between band centres, flat beyond)."""
    if not band_gain:
        return np.zeros(n_pitches, dtype=np.float32)
    bands = sorted(band_gain)
    centres = [bd.OCTAVE_BANDS[b][0] + 5.5 for b in bands]
    return np.interp(np.arange(n_pitches), centres, [band_gain[b] for b in bands]).astype(np.float32)


def plan(preset, corpus, train_pairs, per_band: int, seed: int) -> tuple[list, list]:
    """The notes to measure: ``(melodic notes, drum notes)``, each ``(instrument, pitch, vclass)``."""
    rng = np.random.default_rng(seed)
    by_inst: dict[int, list[int]] = {}
    for i, p in train_pairs:
        by_inst.setdefault(i, []).append(p)
    kits = {i.id for i in preset.instruments if i.drum_kit}
    melodic, drums = [], []
    n_classes = len(preset.velocities)
    for inst in preset.instruments:
        pitches = sorted(by_inst.get(inst.id, []))
        if inst.id in kits:
            drums += [(inst.id, p, v) for p in pitches for v in DRUM_CLASSES if v < n_classes]
            continue
        bands: dict[int, list[int]] = {}
        for p in pitches:
            bands.setdefault(band_index(p), []).append(p)
        for ps in bands.values():
            for p in rng.choice(ps, size=min(per_band, len(ps)), replace=False):
                melodic.append((inst.id, int(p), int(rng.integers(0, n_classes))))
    return melodic, drums


def measure(renderer, corpus, notes, level, batch: int = 256) -> list[float]:
    """``level(generated) - level(real)`` per note (NaN where the real note is silent)."""
    out = []
    for k in range(0, len(notes), batch):
        chunk = notes[k : k + batch]
        gen, real = renderer.render_model_rate(chunk), corpus.load_batch(chunk)
        for g, r in zip(gen, real):
            out.append(np.nan if dsp.rms_db(r) < SILENT_REAL_DB else level(g) - level(r))
    return out


def gains(preset, model, corpus, train_pairs, per_band: int = 2, limit_db: float = 20.0, seed: int = 0,
          device: str = "auto", progress=None, drum_limit_db: float = 30.0) -> tuple[np.ndarray, dict]:
    """The calibration table ``(n_instruments, n_pitches)`` in dB of ``model`` (the preset's
    network; its ``level_db`` is set to 0 to measure the network itself) and a summary."""
    c = preset.config
    model.level_db.zero_()
    renderer = NoteRenderer(preset, device=device, batch_size=32, model=model)
    melodic, drums = plan(preset, corpus, train_pairs, per_band, seed)
    table = np.zeros((c.n_instruments, c.n_pitches), dtype=np.float32)
    if progress:
        progress(f"calibrating: {len(melodic)} melodic and {len(drums)} drum notes")
    rms = measure(renderer, corpus, melodic, dsp.rms_db)
    by_band: dict[int, dict[int, list[float]]] = {}
    for (i, p, _), d in zip(melodic, rms):
        if np.isfinite(d):
            by_band.setdefault(i, {}).setdefault(band_index(p), []).append(d)
    for i, bands in by_band.items():
        table[i] = interpolate({b: float(np.clip(-np.median(ds), -limit_db, limit_db)) for b, ds in bands.items()}, c.n_pitches)
    peaks = measure(renderer, corpus, drums, bd.peak_db)
    per_key: dict[int, dict[int, list[float]]] = {}
    for (i, p, _), d in zip(drums, peaks):
        if np.isfinite(d):
            per_key.setdefault(i, {}).setdefault(p, []).append(d)
    for i, keys in per_key.items():
        key_gain = {p: float(np.clip(-np.mean(ds), -drum_limit_db, drum_limit_db)) for p, ds in keys.items()}
        table[i] = float(np.median(list(key_gain.values())))
        for p, g in key_gain.items():
            table[i, p] = g
    summary = {
        "melodic_notes": len(melodic),
        "drum_notes": len(drums),
        "median_level_before_db": float(np.nanmedian(rms)) if rms else None,
        "median_drum_peak_before_db": float(np.nanmedian(peaks)) if peaks else None,
        "limit_db": limit_db,
        "drum_limit_db": drum_limit_db,
        "seed": seed,
    }
    return table, summary


def calibrate(preset_dir, per_band: int = 2, limit_db: float = 20.0, seed: int = 0, device: str = "auto",
              progress=None, drum_limit_db: float = 30.0) -> dict:
    """Measure and store the calibration of the preset in ``preset_dir``; returns the summary."""
    preset = presets.load(preset_dir)
    corpus, split = preset_corpus(preset, "calibrate")
    model = preset.load_model("cpu")
    table, summary = gains(preset, model, corpus, split["train"], per_band, limit_db, seed, device, progress, drum_limit_db)
    model.level_db.copy_(torch.from_numpy(table))
    training = dict(preset.training)
    training["calibration"] = summary
    # the metrics described the uncalibrated weights: `python -m train evaluate --update-preset` remeasures
    preset_write.save(preset.path, model, preset.instruments, name=preset.name, description=preset.description,
                 training=training, velocities=preset.velocities)
    return summary
