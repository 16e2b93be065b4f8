"""A corpus of instrument notes rendered on the fly from SoundFonts (.sf2/.sf3) with tinysoundfont.

Every preset (bank, program) of every font is one instrument, named "<font>: <preset>". Notes are
rendered as NSynth's: key held 3 s, released, 4 s in all, at 16 kHz mono, with the five NSynth
velocities. Rendering (thousands of notes per second per core) is cheaper than caching.

Level normalisation (documented contract): each (instrument, pitch) gets one gain such that its
velocity-127 note peaks at -1 dBFS over its first second; the other velocities get the same gain,
so velocity layers keep their relative levels. Levels between SoundFont presets differ by tens of
dB, and the spectral loss has a floor near -48 dBFS (the 1 in log(1 + |STFT|^2)): quiet notes
would sit under it and teach the model silence. A pitch is playable when its velocity-127 probe
peaks above -60 dBFS before normalisation.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sing_synth.dsp import VELOCITY_CLASSES
from sing_synth.preset import Instrument

GM_FAMILIES = (
    "piano", "chromatic percussion", "organ", "guitar", "bass", "strings", "ensemble", "brass",
    "reed", "pipe", "synth lead", "synth pad", "synth effects", "ethnic", "percussive", "sound effects",
)  # fmt: skip
UNPITCHED_FAMILIES = ("drums", "percussive", "sound effects")
TARGET_PEAK = 0.89  # -1 dBFS
SILENCE_PEAK = 1e-3  # -60 dBFS
PROBE_SAMPLES = 16000  # 1 s at 16 kHz
DEBIAN_FONTS = (
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "/usr/share/sounds/sf2/TimGM6mb.sf2",
    "/usr/share/sounds/sf3/MuseScore_General_Full.sf3",
    "/usr/share/sounds/sf2/FluidR3_GS.sf2",
)


def family_of(bank: int, program: int) -> str:
    return "drums" if bank >= 120 else GM_FAMILIES[program // 8]


@dataclass(frozen=True)
class _Source:
    font: int  # index into the corpus's fonts
    index: int  # tinysoundfont preset index
    bank: int
    program: int


def _tsf():
    try:
        import tinysoundfont._tinysoundfont as tsf
    except ImportError:
        raise RuntimeError(
            "the SoundFont corpus needs tinysoundfont: pip install --no-deps tinysoundfont"
        ) from None
    return tsf


class SoundFontCorpus:
    """Instruments of a list of SoundFonts; ``load(instrument, pitch, vclass)`` renders one note."""

    kind = "soundfont"

    def __init__(
        self,
        fonts=DEBIAN_FONTS,
        sample_rate: int = 16000,
        note_samples: int = 64000,
        held_samples: int = 48000,
        pitch_min: int = 0,
        pitch_max: int = 127,
        velocities=VELOCITY_CLASSES,
        max_instruments: int = 0,
        every: int = 1,
        every_kit: int = 1,
        cache_dir: str | os.PathLike | None = None,
    ):
        self.fonts = [Path(f) for f in fonts]
        missing = [str(f) for f in self.fonts if not f.is_file()]
        if missing:
            raise FileNotFoundError(
                f"SoundFont not found: {', '.join(missing)} (Debian: apt-get install fluid-soundfont-gm "
                "timgm6mb-soundfont musescore-general-soundfont fluid-soundfont-gs)"
            )
        self.sample_rate = sample_rate
        self.note_samples = note_samples
        self.held_samples = held_samples
        self.pitch_min, self.pitch_max = pitch_min, pitch_max
        self.velocities = tuple(velocities)
        tsf = _tsf()
        self._fonts = []
        for f in self.fonts:
            sf = tsf.SoundFont(str(f))
            sf.set_output(tsf.OutputMode.Mono, sample_rate, 0.0)
            self._fonts.append(sf)
        self._sources: list[_Source] = []
        names = []
        for fi, sf in enumerate(self._fonts):
            by_index = {}
            for bank in range(129):
                for program in range(128):
                    i = sf.get_preset_index(bank, program)
                    if i >= 0 and i not in by_index:
                        by_index[i] = (bank, program)
            for i in sorted(by_index, key=lambda k: (by_index[k][0] >= 120, by_index[k])):
                bank, program = by_index[i]
                self._sources.append(_Source(fi, i, bank, program))
                names.append(sf.get_preset_name(i).strip() or f"bank {bank} program {program}")
        if every > 1 or every_kit > 1:  # a spread subset for experiments: every n-th preset and kit
            keep, melodic, kits = [], 0, 0
            for src in self._sources:
                if src.bank >= 120:
                    keep.append(kits % every_kit == 0)
                    kits += 1
                else:
                    keep.append(melodic % every == 0)
                    melodic += 1
            self._sources = [x for x, k in zip(self._sources, keep) if k]
            names = [x for x, k in zip(names, keep) if k]
        if max_instruments:  # a small corpus for tests and quick experiments
            self._sources, names = self._sources[:max_instruments], names[:max_instruments]
        self._buf = np.zeros(note_samples, dtype=np.float32)
        probe = self._probe(cache_dir)
        self.pitches = [list(p) for p in probe["pitches"]]
        self.gains = np.ones((len(self._sources), 128), dtype=np.float32)
        for k, peaks in enumerate(probe["peaks"]):
            for p, peak in zip(self.pitches[k], peaks):
                self.gains[k, p] = TARGET_PEAK / peak
        self.instruments = []
        for k, (src, name) in enumerate(zip(self._sources, names)):
            drums = src.bank >= 120
            lo, hi = (min(self.pitches[k]), max(self.pitches[k])) if self.pitches[k] else (0, -1)
            self.instruments.append(
                Instrument(
                    id=k,
                    name=f"{self.fonts[src.font].stem}: {name}",
                    family=family_of(src.bank, src.program),
                    source=f"{self.fonts[src.font].name} bank {src.bank} program {src.program}",
                    pitch_range=(lo, hi),
                    gm_program=src.program,
                    gm_bank=0 if drums else src.bank,
                    drum_kit=drums,
                )
            )

    # Notes -------------------------------------------------------------------------------
    def _render(self, k: int, pitch: int, velocity: int, held: int, total: int) -> np.ndarray:
        src = self._sources[k]
        sf = self._fonts[src.font]
        sf.reset()
        buf = self._buf[:total]
        buf[:] = 0.0
        sf.note_on(src.index, pitch, velocity / 127.0)
        sf.render(memoryview(buf[:held]).cast("B"))
        sf.note_off(src.index, pitch)
        if total > held:
            sf.render(memoryview(buf[held:]).cast("B"))
        return buf

    def load(self, instrument: int, pitch: int, vclass: int) -> np.ndarray:
        """One normalised note (float32, ``note_samples``)."""
        out = self._render(instrument, pitch, self.velocities[vclass], self.held_samples, self.note_samples)
        return out * self.gains[instrument, pitch]

    def load_batch(self, notes) -> np.ndarray:
        return np.stack([self.load(*n) for n in notes]) if len(notes) else np.zeros((0, self.note_samples), np.float32)

    def notes(self) -> list[tuple[int, int, int]]:
        """Every (instrument, pitch, velocity class) the corpus holds."""
        return [(k, p, v) for k, ps in enumerate(self.pitches) for p in ps for v in range(len(self.velocities))]

    def pairs(self) -> list[tuple[int, int]]:
        return [(k, p) for k, ps in enumerate(self.pitches) for p in ps]

    def pitched(self, instrument: int) -> bool:
        return self.instruments[instrument].family not in UNPITCHED_FAMILIES

    def describe(self) -> dict:
        return {
            "kind": self.kind,
            "fonts": [str(f) for f in self.fonts],
            "instruments": len(self.instruments),
            "pairs": len(self.pairs()),
            "notes": len(self.notes()),
            "sample_rate": self.sample_rate,
            "level": f"per (instrument, pitch): velocity-127 peak at {20 * np.log10(TARGET_PEAK):.0f} dBFS",
            "pitch_range": [self.pitch_min, self.pitch_max],
        }

    # Probing playable pitches and gains -----------------------------------------------
    def _fingerprint(self) -> str:
        h = hashlib.sha256()
        for f in self.fonts:
            st = f.stat()
            h.update(f"{f.resolve()}:{st.st_size}:{int(st.st_mtime)};".encode())
        h.update(f"v2:{[(x.font, x.index) for x in self._sources]}:{self.sample_rate}:{self.pitch_min}:{self.pitch_max}:{PROBE_SAMPLES}:{SILENCE_PEAK}".encode())
        return h.hexdigest()[:16]

    def _probe(self, cache_dir) -> dict:
        key = self._fingerprint()
        path = Path(cache_dir) / f"soundfont-probe-{key}.json" if cache_dir else None
        if path and path.is_file():
            try:
                data = json.loads(path.read_text())
                if data.get("key") == key and len(data["peaks"]) == len(self._sources):
                    return data
            except (ValueError, KeyError):
                pass  # a corrupt cache file is recomputed and rewritten
        all_peaks, pitches = [], []
        for k in range(len(self._sources)):
            peaks = {}
            for p in range(self.pitch_min, self.pitch_max + 1):
                peak = float(np.abs(self._render(k, p, 127, PROBE_SAMPLES, PROBE_SAMPLES)).max())
                if peak > SILENCE_PEAK:
                    peaks[p] = peak
            pitches.append(sorted(peaks))
            all_peaks.append([peaks[p] for p in sorted(peaks)])
        data = {"key": key, "peaks": all_peaks, "pitches": pitches}
        if path:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # one per process: DDP ranks probe together
            tmp.write_text(json.dumps(data))
            os.replace(tmp, path)
        return data
