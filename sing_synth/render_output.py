"""A render's output files: the mix and its stems (names, timed writers) and the float spill that normalising reads back."""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import time
from pathlib import Path

import numpy as np

from . import midi_file
from .channels import InstrumentMap


def stem_outputs(out: Path, song, imap: InstrumentMap, preset) -> dict[int, Path]:
    """The stem file of every MIDI channel that plays a note, beside ``out`` and named by channel
    (1-16) and instrument: ``song-ch01-acoustic-grand-piano.wav``; a channel that changes
    instrument names up to three, in order of first use (``song-ch02-strings+brass.wav``)."""
    played: dict[int, dict[int, None]] = {}
    channels = song.events[:, 2]
    for index, keys in midi_file.note_uses(song, imap):
        played.setdefault(int(channels[index]), {}).setdefault(keys[0][0])
    names = {i.id: i.name for i in preset.instruments}
    if imap.morph is not None:  # every position of a morph is named after it
        names.update(dict.fromkeys(imap.morph.morph.blends(), f"{names[imap.morph.base]} morph"))
    paths = {}
    for ch, instruments in sorted(played.items()):
        words = list(dict.fromkeys(_slug(names.get(i, f"instrument {i}")) for i in instruments))
        words = words[:3] + (["more"] if len(words) > 3 else [])
        paths[ch] = out.with_name(f"{out.stem}-ch{ch + 1:02d}-{'+'.join(words)}{out.suffix}")
    return paths


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40].strip("-") or "instrument"

class TimedWriter:
    """The render's audio writers (the mix, then its stems), counting the time spent in them."""

    def __init__(self, writers) -> None:
        self.writers, self.seconds = list(writers), 0.0

    def write(self, x: np.ndarray, stems=()) -> None:
        """The mix ``x`` (frames, 2), and each stem's (frames, 2)."""
        t = time.perf_counter()
        self.writers[0].write(x)
        for writer, stem in zip(self.writers[1:], stems):
            writer.write(stem)
        self.seconds += time.perf_counter() - t


class Metered:
    """Writes through ``writer`` and measures the mix with ``meter`` (a loudness.Meter)."""

    def __init__(self, writer, meter) -> None:
        self.writer, self.meter = writer, meter

    def write(self, x: np.ndarray, stems=()) -> None:
        self.meter.add(x)
        self.writer.write(x, stems)


class Spill:
    """The render's files as raw float32 stereo beside the first output, read back frame-exact for
    the normalising pass; removed on the way out, whatever happens."""

    def __init__(self, outputs) -> None:
        self.outputs = [Path(p) for p in outputs]
        self.paths: list[Path] = []
        self.files = []
        self._maps: list[np.ndarray | None] = []

    def __enter__(self) -> Spill:
        try:
            for out in self.outputs:
                fd, name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".f32", dir=self.outputs[0].parent)
                self.paths.append(Path(name))
                self.files.append(os.fdopen(fd, "wb"))
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._maps = []
        for f in self.files:
            f.close()
        for path in self.paths:
            with contextlib.suppress(OSError):
                path.unlink()

    def write(self, x: np.ndarray, stems=()) -> None:
        self.files[0].write(np.ascontiguousarray(x, "<f4").tobytes())
        for f, stem in zip(self.files[1:], stems):
            f.write(np.ascontiguousarray(stem, "<f4").tobytes())

    def flush(self) -> None:
        for f in self.files:
            f.flush()
        self._maps = [np.memmap(p, "<f4", "r").reshape(-1, 2) if p.stat().st_size else np.zeros((0, 2), "<f4")
                      for p in self.paths]

    def read(self, k: int, a: int, b: int) -> np.ndarray:
        """Frames ``a:b`` of file ``k`` (0: the mix)."""
        return np.asarray(self._maps[k][a:b], np.float32)

    def reader(self, rate: int):
        """The mix as :func:`loudness.normalize` reads it."""
        spill = self

        class Read:
            frames = len(self._maps[0])

            def __call__(self, a: int, b: int) -> np.ndarray:
                return spill.read(0, a, b)

        Read.rate = rate
        return Read()
