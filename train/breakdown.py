"""Per-note measures of generated notes against their real recordings, and their breakdown by
family, octave band and velocity class, so that no failure hides in an average.

Each note gets: the paper's spectral L1 and waveform MSE; its level, generated against real
(RMS over the 4 s, in dB); its tail, the same over 1-3 s (how the decay holds up; only where the
real note still sounds there, above -60 dBFS RMS); whether it is silent (peak under -80 dBFS); and, for pitched
instruments, whether its fundamental is within 50 cents of the target by two estimators: the
project's (``sing_synth.dsp.estimate_f0``, a YIN-like autocorrelation) and Praat's (through
``parselmouth``, an independent and widely used implementation). A note counts for an
estimator's pitch accuracy only when that estimator finds the real recording in tune.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch

from sing_synth import dsp
from sing_synth.losses import spectral_loss, waveform_mse

F0_SEGMENT = (4000, 20000)  # 0.25 s to 1.25 s: past the attack, before the release
SILENT_PEAK_DB = -80.0
LEVEL_FLOOR_DB = -120.0
TAIL = (1.0, 3.0)  # seconds: the decay, past the attack and before the note's end
TAIL_MIN_DB = -60.0
OCTAVE_BANDS = tuple((lo, lo + 11) for lo in range(24, 96, 12))  # 24-35 ... 84-95
UNPITCHED = ("drums", "percussive", "sound effects")


def band_of(pitch: int) -> str:
    """The octave band label of a pitch ("24-35" ... "84-95"; outside: "<24" / ">95")."""
    if pitch < OCTAVE_BANDS[0][0]:
        return f"<{OCTAVE_BANDS[0][0]}"
    for lo, hi in OCTAVE_BANDS:
        if pitch <= hi:
            return f"{lo}-{hi}"
    return f">{OCTAVE_BANDS[-1][1]}"


def peak_db(x: np.ndarray) -> float:
    return 20 * math.log10(max(float(np.abs(x).max()) if len(x) else 0.0, 1e-6))


def level_db(gen: np.ndarray, real: np.ndarray) -> float:
    """Generated RMS over real RMS in dB (floored at -120 dB for a silent output)."""
    g, r = dsp.rms_db(gen), dsp.rms_db(real)
    return max(g - r, LEVEL_FLOOR_DB)


def tail_db(gen: np.ndarray, real: np.ndarray, rate: int) -> float | None:
    """Generated RMS over real RMS in dB over ``TAIL`` (None where the real note is quiet there)."""
    a, b = int(TAIL[0] * rate), int(TAIL[1] * rate)
    if dsp.rms_db(real[a:b]) < TAIL_MIN_DB:
        return None
    return level_db(gen[a:b], real[a:b])


def project_f0(x: np.ndarray, rate: int) -> float:
    return dsp.estimate_f0(x[F0_SEGMENT[0] : F0_SEGMENT[1]], rate)


def praat_f0(x: np.ndarray, rate: int) -> float:
    """Median voiced F0 of Praat's autocorrelation pitch tracker over the steady segment (0: none)."""
    import parselmouth  # the trainer's optional extra: pip install praat-parselmouth

    seg = np.asarray(x[F0_SEGMENT[0] : F0_SEGMENT[1]], dtype=np.float64)
    if not np.any(seg):
        return 0.0
    pitch = parselmouth.Sound(seg, sampling_frequency=rate).to_pitch_ac(
        time_step=0.01, pitch_floor=25.0, pitch_ceiling=min(5000.0, rate / 2 - 1)
    )
    f = pitch.selected_array["frequency"]
    f = f[f > 0]
    return float(np.median(f)) if len(f) >= 10 else 0.0


ESTIMATORS = {"project": project_f0, "praat": praat_f0}


def in_tune(f0: float, pitch: int, cents: float = 50.0) -> bool:
    """Whether a fundamental ``f0`` (0: none found) is within ``cents`` of MIDI ``pitch``."""
    return f0 > 0 and abs(dsp.cents(f0, dsp.midi_to_hz(pitch))) <= cents


@dataclass
class NoteMeasure:
    instrument: int
    pitch: int
    vclass: int
    family: str
    l1: float
    mse: float
    level_db: float
    tail_db: float | None
    peak_db: float
    real_peak_db: float
    silent: bool
    pitch_project: bool | None  # None: not counted (unpitched, or the real note not in tune)
    pitch_praat: bool | None


def measure(gen: np.ndarray, real: np.ndarray, notes, families, rate: int, pitch: bool = True) -> list[NoteMeasure]:
    """One ``NoteMeasure`` per note; ``families[i]`` is instrument i's family."""
    g, r = torch.from_numpy(np.ascontiguousarray(gen)), torch.from_numpy(np.ascontiguousarray(real))
    l1 = torch.cat([spectral_loss(g[k : k + 64], r[k : k + 64], reduction="none") for k in range(0, len(g), 64)])
    mse = waveform_mse(g, r, reduction="none")
    out = []
    for k, (i, p, v) in enumerate(notes):
        fam = families[i]
        checks = {}
        for name, f0 in ESTIMATORS.items():
            if not pitch or fam in UNPITCHED or not in_tune(f0(real[k], rate), p):
                checks[name] = None
            else:
                checks[name] = in_tune(f0(gen[k], rate), p)
        out.append(NoteMeasure(
            int(i), int(p), int(v), fam, float(l1[k]), float(mse[k]), level_db(gen[k], real[k]),
            tail_db(gen[k], real[k], rate), peak_db(gen[k]), peak_db(real[k]), peak_db(gen[k]) < SILENT_PEAK_DB,
            checks["project"], checks["praat"],
        ))  # fmt: skip
    return out


def summarize(ms: list[NoteMeasure]) -> dict:
    """Aggregate figures of a group of notes."""
    def acc(key):
        counted = [getattr(m, key) for m in ms if getattr(m, key) is not None]
        return (sum(counted) / len(counted) if counted else None), len(counted)

    tails = [m.tail_db for m in ms if m.tail_db is not None]
    pp, npp = acc("pitch_project")
    pr, npr = acc("pitch_praat")
    return {
        "notes": len(ms),
        "spectral_l1": float(np.mean([m.l1 for m in ms])) if ms else None,
        "waveform_mse": float(np.mean([m.mse for m in ms])) if ms else None,
        "level_db_median": float(np.median([m.level_db for m in ms])) if ms else None,
        "tail_db_median": float(np.median(tails)) if tails else None,
        "tail_notes": len(tails),
        "silent": sum(m.silent for m in ms),
        "pitch_accuracy": pp,
        "pitched_notes": npp,
        "pitch_accuracy_praat": pr,
        "pitched_notes_praat": npr,
    }


GROUPINGS = {
    "family": lambda m: m.family,
    "octave": lambda m: band_of(m.pitch),
    "velocity": lambda m: str(m.vclass),
}


def breakdown(ms: list[NoteMeasure]) -> dict:
    """``{"overall": {...}, "family": {name: {...}}, "octave": {...}, "velocity": {...}}``."""
    out = {"overall": summarize(ms)}
    for name, key in GROUPINGS.items():
        groups: dict[str, list] = {}
        for m in ms:
            groups.setdefault(key(m), []).append(m)
        out[name] = {k: summarize(groups[k]) for k in sorted(groups, key=_order)}
    return out


def _order(label: str):
    digits = "".join(ch for ch in label.split("-")[0] if ch.isdigit())
    return (0, int(digits), label) if digits else (1, 0, label)


def as_records(ms: list[NoteMeasure]) -> list[dict]:
    return [asdict(m) for m in ms]


# Markdown -------------------------------------------------------------------------------------
def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.0f}%"


def _num(x, fmt: str) -> str:
    return "n/a" if x is None else format(x, fmt)


def group_table(title: str, sing: dict, base: dict | None, labels=None) -> list[str]:
    """Rows per group: SING beside the re-pitch baseline (when given)."""
    head = (f"| {title} | notes | L1 SING | L1 baseline | level dB SING | level dB baseline | tail dB SING | "
            "tail dB baseline | pitch SING (project / Praat) | pitch baseline (project / Praat) | silent SING |")
    lines = [head, "|" + "---|" * 11]
    for label in labels or sing:
        s, b = sing[label], (base or {}).get(label)
        lines.append(
            f"| {label} | {s['notes']} | {_num(s['spectral_l1'], '.4f')} | {_num(b and b['spectral_l1'], '.4f')} | "
            f"{_num(s['level_db_median'], '+.1f')} | {_num(b and b['level_db_median'], '+.1f')} | "
            f"{_num(s.get('tail_db_median'), '+.1f')} | {_num(b and b.get('tail_db_median'), '+.1f')} | "
            f"{_pct(s['pitch_accuracy'])} / {_pct(s['pitch_accuracy_praat'])} | "
            f"{_pct(b and b['pitch_accuracy'])} / {_pct(b and b['pitch_accuracy_praat'])} | {s['silent']} |"
        )
    return lines
