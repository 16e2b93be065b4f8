"""NSynth in its published layout: ``examples.json`` + ``audio/<note_str>.wav`` (16 kHz, 4 s, int16).

Uses the fields ``instrument`` (the id, 0-1005 in the full dataset), ``instrument_str``,
``instrument_family_str``, ``pitch`` and ``velocity`` (mapped to the nearest of the five classes).
Waveforms follow the model's level convention: int16 / 32767, no other normalisation.
"""

from __future__ import annotations

import json
import wave
from pathlib import Path

import numpy as np

from sing_synth.dsp import VELOCITY_CLASSES, pcm16_to_float, velocity_class
from sing_synth.preset import Instrument

UNPITCHED_FAMILIES = ("mallet",)  # NSynth's families are all pitched except some mallets; keep it simple


class NSynthCorpus:
    """Notes of one or more NSynth split directories (each holding examples.json and audio/)."""

    kind = "nsynth"

    def __init__(self, roots, note_samples: int = 64000, velocities=VELOCITY_CLASSES):
        roots = [Path(r) for r in ([roots] if isinstance(roots, (str, Path)) else roots)]
        self.roots = roots
        self.note_samples = note_samples
        self.velocities = tuple(velocities)
        self._files: dict[tuple[int, int, int], Path] = {}
        info: dict[int, tuple[str, str]] = {}
        for root in roots:
            meta = root / "examples.json"
            if not meta.is_file():
                raise FileNotFoundError(f"{meta} not found: point the recipe at an NSynth split directory")
            for name, ex in json.loads(meta.read_text()).items():
                inst = int(ex["instrument"])
                key = (inst, int(ex["pitch"]), velocity_class(int(ex["velocity"]), self.velocities))
                self._files[key] = root / "audio" / f"{name}.wav"
                info[inst] = (str(ex["instrument_str"]), str(ex["instrument_family_str"]))
        ranges: dict[int, list[int]] = {}
        for inst, pitch, _ in self._files:
            ranges.setdefault(inst, []).append(pitch)
        self.instruments = [
            Instrument(id=i, name=info[i][0], family=info[i][1], source="nsynth", pitch_range=(min(ranges[i]), max(ranges[i])))
            for i in sorted(info)
        ]
        self._by_id = {i.id: i for i in self.instruments}

    def load(self, instrument: int, pitch: int, vclass: int) -> np.ndarray:
        path = self._files[(instrument, pitch, vclass)]
        with wave.open(str(path), "rb") as w:
            if w.getsampwidth() != 2 or w.getnchannels() != 1:
                raise ValueError(f"{path}: expected 16-bit mono PCM as in NSynth")
            data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        out = np.zeros(self.note_samples, dtype=np.float32)
        n = min(len(data), self.note_samples)
        out[:n] = pcm16_to_float(data[:n])
        return out

    def load_batch(self, notes) -> np.ndarray:
        return np.stack([self.load(*n) for n in notes]) if len(notes) else np.zeros((0, self.note_samples), np.float32)

    def notes(self) -> list[tuple[int, int, int]]:
        return sorted(self._files)

    def pairs(self) -> list[tuple[int, int]]:
        return sorted({(i, p) for i, p, _ in self._files})

    def pitched(self, instrument: int) -> bool:
        return self._by_id[instrument].family not in UNPITCHED_FAMILIES

    def describe(self) -> dict:
        return {"kind": self.kind, "roots": [str(r) for r in self.roots], "instruments": len(self.instruments),
                "pairs": len(self.pairs()), "notes": len(self._files), "level": "int16 / 32767"}
