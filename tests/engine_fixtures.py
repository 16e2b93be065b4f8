"""Shared helpers and fixtures for the engine, MIDI file and render tests.

``HarmonicSource`` is a real signal source, not a mock: deterministic harmonic tones at the
exact MIDI pitch, louder for higher velocity classes, with a different spectrum per instrument.
The tiny untrained SING model makes noise without a pitch, so the tests that measure pitch,
loudness or spectra play these tones through the engine; the end-to-end tests use a tiny
preset (``tiny_preset``) through the note renderer.
"""

from __future__ import annotations

import subprocess
import sys
import tracemalloc
from pathlib import Path

import mido
import numpy as np
import pytest

from sing_synth import dsp
from sing_synth import events as ev
from sing_synth.engine import Engine
from sing_synth.note_source import DictNoteSource
from sing_synth.preset import Instrument, Preset
from sing_synth.testing.presets import TINY_INSTRUMENTS, untrained_preset

RATE = 44100
NOTE_SECONDS = 4.0

# id, name, GM program, harmonics, sustaining
SINE, SAW, PIANO, KIT = 0, 1, 2, 3
INSTRUMENTS = [
    Instrument(SINE, "soft organ", family="organ", gm_program=0),
    Instrument(SAW, "bright saw", family="synth_lead", gm_program=1),
    Instrument(PIANO, "plucked", family="keyboard", gm_program=2, pitch_range=(36, 96)),
    Instrument(KIT, "test kit", family="drums", gm_program=0, drum_kit=True, pitch_range=(35, 81)),
]


def weightless_preset(instruments=INSTRUMENTS, name: str = "harmonic") -> Preset:
    """A preset description without a model: enough for the engine with a prefilled note source."""
    return Preset(path=Path("."), name=name, config=None, instruments=list(instruments))


def harmonic_note(
    instrument: int, pitch: int, vclass: int, rate: int = RATE, seconds: float = NOTE_SECONDS
) -> np.ndarray:
    """A 4 s note like the model's: key held 3 s, then a 0.1 s release; cosine phase (first sample non-zero)."""
    n = int(round(seconds * rate))
    t = np.arange(n) / rate
    f = dsp.midi_to_hz(pitch)
    if instrument == KIT:  # a deterministic noise burst with a pitched body
        rng = np.random.default_rng(pitch)
        x = rng.standard_normal(n) * np.exp(-t / 0.05) + np.cos(2 * np.pi * f * t) * np.exp(-t / 0.2)
    else:
        harmonics = {SINE: 2, SAW: 12, PIANO: 6}[instrument]
        x = np.zeros(n)
        for k in range(1, harmonics + 1):
            if k * f < rate / 2 * 0.9:
                x += np.cos(2 * np.pi * f * k * t) / k
        x /= 1.8
    if instrument == PIANO:
        env = np.exp(-t / 0.4)
    else:
        env = np.where(t < 3.0, 1.0, np.exp(-(t - 3.0) / 0.1))
    amp = (0.15, 0.3, 0.45, 0.6, 0.8)[vclass]
    return (amp * x * env).astype(np.float32)


class HarmonicSource(DictNoteSource):
    """The notes of :func:`harmonic_note`, made on first use (a deterministic, pitched NoteSource)."""

    def __init__(self, rate: int = RATE) -> None:
        super().__init__(rate=rate)

    def missing(self, keys) -> list:
        return []  # every note is made on demand

    def find(self, instrument: int, pitch: int, vclass: int) -> int:
        key = (instrument, pitch, vclass)
        if key not in self.slots:
            self.add(key, harmonic_note(instrument, pitch, vclass, self.rate))
        return self.slots[key]


def make_engine(source=None, rate: int = RATE, preset=None, **kwargs) -> Engine:
    source = source if source is not None else HarmonicSource(rate)
    return Engine(preset or weightless_preset(), source, rate=rate, **kwargs)


def run_engine(engine: Engine, events, seconds: float, block: int = 512) -> np.ndarray:
    """Push ``(seconds, kind, channel, a, b)`` events at their frames and process ``seconds`` of audio."""
    frames = int(round(seconds * engine.rate))
    out = np.zeros((frames, 2), np.float32)
    pending = sorted(
        ((int(round(t * engine.rate)), i, kind, ch, a, b) for i, (t, kind, ch, a, b) in enumerate(events)),
        key=lambda e: (e[0], e[1]),
    )
    k = 0
    for start in range(0, frames, block):
        stop = min(frames, start + block)
        while k < len(pending) and pending[k][0] < stop:
            frame, _, kind, ch, a, b = pending[k]
            assert engine.push(kind, ch, a, b, frame)
            k += 1
        engine.process(out[start:stop])
    return out


def note(t: float, key: int, velocity: int = 100, length: float = 0.5, channel: int = 0) -> list:
    return [(t, ev.NOTE_ON, channel, key, velocity), (t + length, ev.NOTE_OFF, channel, key, 0)]


def block_allocations(engine: Engine, out: np.ndarray, blocks: list[list[tuple]]) -> tuple[int, int]:
    """Push each block's events ``(kind, channel, a, b, time)`` and process ``out`` under tracemalloc:
    the peak above the start, and what the blocks after the 20th kept (bytes). Make ``blocks``
    before calling: the queue keeps references to the event values."""
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        for k, events in enumerate(blocks):
            for event in events:
                engine.push(*event)
            engine.process(out)
            if k == 0:  # what a first block allocates once (NumPy's caches growing at a first use) is not steady state
                base = tracemalloc.get_traced_memory()[0]
                tracemalloc.reset_peak()
            if k == 19:
                after_20 = tracemalloc.get_traced_memory()[0]
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak - base, current - after_20


def assert_torch_free(*modules: str) -> None:
    """Import ``modules`` (names under ``sing_synth``) in a fresh interpreter: torch must not be loaded."""
    code = f"import sys; import {', '.join('sing_synth.' + m for m in modules)}; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.asarray(x, np.float64) ** 2)))


def write_midi(path: Path, tracks: list[list], ticks_per_beat: int = 480, midi_type: int = 1) -> Path:
    """Write a MIDI file from lists of mido messages (delta times in ticks)."""
    mid = mido.MidiFile(type=midi_type, ticks_per_beat=ticks_per_beat)
    for msgs in tracks:
        mid.tracks.append(mido.MidiTrack(msgs))
    mid.save(path)
    return path


@pytest.fixture(scope="session")
def tiny_preset(tmp_path_factory):
    """A tiny untrained SING preset (seeded, so every run has the same weights) with a GM table and a kit."""
    return untrained_preset(tmp_path_factory.mktemp("presets") / "tiny", TINY_INSTRUMENTS, name="tiny")


@pytest.fixture
def one_thread():
    """Run torch on one thread: on two shared cores a second thread makes the LSTM 100x slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
