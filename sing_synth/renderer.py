"""Note rendering: batches of (instrument, pitch, velocity class) through the model.

Runs on CUDA when ``torch.cuda.is_available()`` and on the CPU otherwise (``device``
overrides), under ``torch.inference_mode``, in float32, bfloat16 (CPU or CUDA) or float16
(CUDA). Notes come out as float32 NumPy arrays of 4 s, resampled once from the model rate
(16 kHz) to the output rate with libsoxr's high-quality resampler.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch

from . import dsp, limits
from .errors import ConfigError, InstrumentError
from .preset import Preset

PRECISIONS = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def pick_device(device: str | None = None) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ConfigError(f"unknown device {device!r}: use cpu, cuda or cuda:N", "model_device") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device cuda requested but no CUDA GPU is available; use the CPU", "model_device")
    return dev


def pick_dtype(precision: str, device: torch.device) -> torch.dtype:
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}: use one of {', '.join(PRECISIONS)}", "precision")
    if precision == "float16" and device.type != "cuda":
        raise ConfigError("float16 is for CUDA only; on the CPU use bfloat16 or float32", "precision")
    return PRECISIONS[precision]


def free_cores() -> int:
    """CPU cores not busy with other work (cores minus the 1-minute load average, at least 1).

    Torch's intra-op threads wait for each other at every operation: one thread more than the
    free cores stalls the model many times over on a busy machine (bench/RESULTS.md), one thread
    less costs at most its share.
    An explicit ``OMP_NUM_THREADS`` is a cap."""
    cores = limits.cores()
    try:
        busy = os.getloadavg()[0]
    except OSError:
        busy = 0.0
    free = max(1, min(cores, int(cores - busy + 0.5)))
    cap = os.environ.get("OMP_NUM_THREADS", "")
    return min(free, int(cap)) if cap.isdigit() and int(cap) > 0 else free


class NoteRenderer:
    """Renders notes of one preset at one output rate."""

    def __init__(
        self,
        preset: Preset,
        device: str | None = None,
        precision: str = "float32",
        batch_size: int = 16,
        output_rate: int | None = None,
        model=None,
        threads: int | None = None,
    ):
        self.preset = preset
        self.threads = int(threads) if threads else None  # the thread that renders applies it (set_threads)
        if threads:
            # For the calling thread (OpenMP settings are per thread): a renderer built in one
            # thread and used in another gets ``set_threads(self.threads)`` there (NoteCache does).
            # On a busy machine (or beside a live audio thread) fewer intra-op threads than cores
            # avoids stalls where one thread waits for a descheduled other.
            torch.set_num_threads(int(threads))
        self.device = pick_device(device)
        self.dtype = pick_dtype(precision, self.device)
        self.batch_size = max(1, int(batch_size))
        self.model_rate = preset.sample_rate
        self.output_rate = int(output_rate or preset.sample_rate)
        model = model if model is not None else preset.load_model(self.device)
        self.model = model.to(self.device, self.dtype).eval()
        self.ids = {i.id for i in preset.instruments}
        self.blends: dict[int, list[tuple[int, float]]] = {}  # virtual id -> (instrument, weight)

    def add_blends(self, blends: dict[int, list[tuple[int, float]]]) -> None:
        """Make virtual instrument ids playable: each is a weighted blend of the preset's
        instruments' embeddings (:mod:`sing_synth.morph`)."""
        for vid, weights in blends.items():
            for i, _ in weights:
                if i not in self.ids:
                    raise InstrumentError(f"no instrument {i} in preset {self.preset.name!r} to blend", "morph")
            self.blends[int(vid)] = [(int(i), float(w)) for i, w in weights]

    def set_threads(self, threads: int) -> None:
        """Torch intra-op threads for the calls made from now on by the calling thread."""
        torch.set_num_threads(int(threads))

    @property
    def note_samples(self) -> int:
        """Length of a rendered note at the output rate."""
        return self.preset.note_samples(self.output_rate)

    def check(self, instrument: int, pitch: int, vclass: int) -> None:
        if instrument not in self.ids and instrument not in self.blends:
            raise InstrumentError(f"no instrument {instrument} in preset {self.preset.name!r}", "instrument")
        if not 0 <= pitch < self.preset.config.n_pitches:
            raise ConfigError(f"pitch {pitch} out of range 0-{self.preset.config.n_pitches - 1}")
        if not 0 <= vclass < self.preset.config.n_velocities:
            raise ConfigError(f"velocity class {vclass} out of range 0-{self.preset.config.n_velocities - 1}")

    def render_model_rate(self, notes: Sequence[tuple[int, int, int]]) -> np.ndarray:
        """``(N, note_samples)`` float32 at the model's rate for ``(instrument, pitch, vclass)`` triples."""
        for note in notes:
            self.check(*note)
        out = np.zeros((len(notes), self.preset.config.note_samples), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(notes), self.batch_size):
                chunk = torch.tensor(notes[start : start + self.batch_size], dtype=torch.long, device=self.device)
                instruments, gain_db = chunk[:, 0], None
                if self.blends and any(int(i) in self.blends for i in instruments):
                    instruments, gain_db = self._embeddings(instruments, chunk[:, 1])
                wav = self.model(chunk[:, 2], instruments, chunk[:, 1], gain_db)
                out[start : start + len(chunk)] = wav.float().cpu().numpy()
        return out

    def _embeddings(self, ids: torch.Tensor, pitches: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Instrument embeddings of ``ids``, blends resolved, and their calibrated gains at
        ``pitches`` (a blend's gain is its parts' gains, weighted alike)."""
        table, levels = self.model.generator.instrument.weight, self.model.level_db
        rows, gains = [], []
        for i, p in zip(ids.tolist(), pitches.tolist()):
            parts = self.blends.get(i, [(i, 1.0)])
            rows.append(sum(w * table[j] for j, w in parts))
            gains.append(sum(w * levels[j, p] for j, w in parts))
        return torch.stack(rows), torch.stack(gains)

    def warm_up(self) -> None:
        """Run the model once on one note: what its first call sets up (kernels, buffers) is then done."""
        self.render_model_rate([(next(iter(self.ids)), 60, 0)])

    def resample(self, wav: np.ndarray) -> np.ndarray:
        """Notes at the model's rate (``render_model_rate``) to the output rate."""
        return dsp.resample(wav, self.model_rate, self.output_rate)

    def render(self, notes: Sequence[tuple[int, int, int]]) -> np.ndarray:
        """``(N, samples)`` float32 at the output rate."""
        notes = [tuple(int(v) for v in n) for n in notes]
        if not notes:
            return np.zeros((0, self.note_samples), dtype=np.float32)
        return self.resample(self.render_model_rate(notes))

    def render_velocity(self, instrument: int, pitch: int, velocity: int) -> np.ndarray:
        """One note at a MIDI velocity 1-127, blending the two nearest classes (see :mod:`dsp`)."""
        lo, hi, wlo, whi = dsp.velocity_blend(velocity, self.preset.velocities)
        notes = self.render([(instrument, pitch, lo), (instrument, pitch, hi)])
        return wlo * notes[0] + whi * notes[1]
