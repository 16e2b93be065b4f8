"""``sing-synth render song.mid``: a MIDI file to WAV or FLAC, the engine clocked by the file.

The distinct notes the song needs come first: from the note cache on disk that live play shares
(:mod:`sing_synth.disk_cache`), else through the note renderer in batches (each batch resampled
and written to the cache while the model makes the next); the model, and torch, are loaded only
when a note is missing. Then the same :class:`~sing_synth.engine.Engine` that plays live, with
the same reverb and chorus buses (:mod:`sing_synth.effects`), is fed the file's events at their
exact frames and run block by block. The file ends when the sound has died away (below
``threshold_db`` after the last MIDI event, at most ``tail`` seconds later). The output is
written to a temporary file in the same directory and moved into place only when complete.

Bounds: a song longer than ``max_length`` is refused before anything is rendered; the notes held
in memory stay within ``memory_bytes`` (a song needing more is mixed with a
:class:`~sing_synth.note_plan.NotePlan`: its notes made in time order as it plays); a WAV file that
could pass 4 GiB is written as RF64.

This module holds :func:`render_file`, its options and its :class:`RenderResult`; the notes are
got by ``render_notes``, the engine is run over the song by ``render_mix``, and the output and
stem files are written by ``render_output``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import limits, loudness, midi_file
from .audio_file import atomic_writer, check_output
from .channels import InstrumentMap
from .disk_cache import DiskCache
from .effects import EffectSettings
from .engine import Engine
from .errors import ConfigError
from .morph import DEFAULT_CCS, DEFAULT_STEPS, MorphControl, resolve
from .note_source import DictNoteSource
from .progress import Progress
from .render_mix import mix_song
from .render_notes import NoteMaker, plan_notes
from .render_output import Metered, Spill, TimedWriter, stem_outputs

log = logging.getLogger(__name__)
MIX_BLOCK = 32768  # frames mixed per pass offline

DEFAULT_MAX_LENGTH = 4 * 3600.0  # seconds: the longest song rendered unless told otherwise
MAX_TAIL = 600.0  # seconds of sound after the last event, at most
DEFAULT_NOTE_MEMORY = 512 << 20  # bytes of rendered notes a render holds at most (760 notes at 44.1 kHz)


@dataclass
class RenderResult:
    """What a render produced and how long each part took."""

    path: Path
    rate: int
    frames: int
    notes_needed: int
    notes_rendered: int
    note_seconds: float  # time spent getting the notes: disk, model loading, model (and resampling)
    mix_seconds: float  # time spent in the engine and the writer
    total_seconds: float
    stats: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    notes_loaded: int = 0  # notes read from the disk cache
    disk_seconds: float = 0.0  # reading notes from the disk cache
    setup_seconds: float = 0.0  # loading the model (and torch), when a note was missing
    model_seconds: float = 0.0  # the model, resampling and writing the new notes to the cache
    write_seconds: float = 0.0  # the output file (part of mix_seconds)
    notes_dropped: int = 0  # notes dropped from memory to stay within its budget (see note_plan)
    loudness: loudness.Normalized | None = None  # what --normalize did
    stems: dict[int, Path] = field(default_factory=dict)  # MIDI channel (0-15) -> its stem file

    @property
    def duration(self) -> float:
        return self.frames / self.rate

    @property
    def realtime_factor(self) -> float:
        return self.duration / self.total_seconds if self.total_seconds > 0 else math.inf


def default_output(midi_path: str | os.PathLike) -> Path:
    return Path(midi_path).with_suffix(".wav")


def _check_options(
    rate: int, polyphony: int, gain: float, block: int, tail: float, max_length, batch_size: int, threads,
    memory_bytes: float, model_device: str | None,
) -> None:
    limits.check_rate(rate)
    if not 1 <= polyphony <= 1024:
        raise ConfigError(f"polyphony {polyphony} out of range; use 1-1024", "polyphony")
    limits.check_gain(gain)
    if not 16 <= block <= 65536:
        raise ConfigError(f"block size {block} out of range; use 16-65536 frames", "block")
    if not (math.isfinite(tail) and 0.0 <= tail <= MAX_TAIL):
        raise ConfigError(f"tail {tail:g} s out of range; use 0-{MAX_TAIL:g} seconds (default 10)", "tail")
    if max_length is not None and not (math.isfinite(max_length) and 0 < max_length <= midi_file.MAX_SECONDS):
        raise ConfigError(
            f"longest song {max_length:g} s out of range; use a positive length up to {midi_file.MAX_SECONDS:g} s",
            "max_length",
        )
    limits.check_note_memory(memory_bytes / 2**30)
    if not 1 <= batch_size <= 1024:
        raise ConfigError(f"batch size {batch_size} out of range; use 1-1024 notes (default 64)", "batch_size")
    limits.check_threads(threads)
    limits.check_model_device(model_device)


def render_file(
    midi_path: str | os.PathLike,
    out_path: str | os.PathLike | None = None,
    preset=None,
    renderer=None,
    *,
    rate: int = 44100,
    fmt: str | None = None,
    instrument: int | str | None = None,
    polyphony: int = 64,
    gain: float = 0.5,
    block: int = 8192,
    source: DictNoteSource | None = None,
    lenient: bool = False,
    tail: float = 10.0,
    threshold_db: float = -80.0,
    model_device: str | None = None,
    precision: str = "float32",
    batch_size: int = 64,
    progress: Progress | None = None,
    threads: int | None = None,
    max_length: float | None = DEFAULT_MAX_LENGTH,
    cache: DiskCache | bool | None = None,
    memory_bytes: int = DEFAULT_NOTE_MEMORY,
    effects: EffectSettings | None = None,
    normalize: float | None = None,
    true_peak: float = loudness.DEFAULT_CEILING,
    stems: bool = False,
    morph=None,
    morph_cc=DEFAULT_CCS,
    morph_steps: int = DEFAULT_STEPS,
) -> RenderResult:
    """Render ``midi_path`` to ``out_path`` (default: the song's name with ``.wav``, beside it).

    ``preset`` is a :class:`~sing_synth.preset.Preset`, a preset name or directory, or None for
    the default preset. ``renderer`` is a ready NoteRenderer (made on ``model_device`` otherwise,
    only if notes are missing). ``source`` is a DictNoteSource of notes rendered before: missing
    notes are added to it, so passing the same one again renders with a warm cache. ``cache`` is
    the note cache on disk (a :class:`~sing_synth.disk_cache.DiskCache`; None: the default one;
    False: none): notes are read from it first, and the notes rendered are written to it.
    ``progress`` shows how far the render is (default: a :class:`~sing_synth.progress.Progress`
    on stderr).
    A song longer than ``max_length`` seconds (None: no limit) is refused before anything is rendered.
    The notes held in memory stay within ``memory_bytes``: a song that needs more distinct notes
    than that holds has them made as it plays (:mod:`sing_synth.note_plan`).
    ``effects``: the reverb and chorus buses (default: both on, General MIDI's sends);
    ``EffectSettings.dry()`` renders the dry engine output.
    ``normalize``: a loudness in LUFS (ITU-R BS.1770) that the whole render is scaled to, its true
    peak held at most at ``true_peak`` dBTP (see :mod:`sing_synth.loudness`); the render is
    spilled to a float file beside the output first (8 bytes a frame, stems included), measured,
    then written scaled. ``stems``: also one file per MIDI channel that sounds, beside the
    output and named by channel and instrument (``song-ch01-piano.wav``): the channel's voices
    and its own reverb and chorus, sample-aligned with the mix, through the same master and
    limiter gain (not the limiter's soft knee): they add up to the mix wherever the knee leaves
    it alone.
    ``morph``: instruments (B, or B C D) to blend ``instrument`` with, each channel's position
    moved by the file's ``morph_cc`` controllers.
    """
    t_start = time.perf_counter()
    _check_options(rate, polyphony, gain, block, tail, max_length, batch_size, threads, memory_bytes, model_device)
    effects = effects if effects is not None else EffectSettings()
    effects.check()
    if normalize is not None:
        loudness.check_target(normalize, true_peak)
    if source is not None and source.rate != rate:
        raise ConfigError(f"the note source holds {source.rate} Hz notes but the render is at {rate} Hz", "rate")
    midi_path = Path(midi_path)
    out = Path(out_path) if out_path is not None else default_output(midi_path)
    fmt = fmt or "pcm16"
    if out.exists() and midi_path.exists() and out.resolve() == midi_path.resolve():
        raise ConfigError(f"the output {out} is the input file; choose another name", "output")
    check_output(out, fmt)
    bar = progress if progress is not None else Progress()

    song = midi_file.read(midi_path, rate, lenient=lenient, max_length=max_length)
    if preset is None or isinstance(preset, (str, os.PathLike)):
        from . import preset as presets

        preset = presets.load(preset)
    control = MorphControl(resolve(preset, instrument, morph, morph_steps), morph_cc) if morph else None
    imap = InstrumentMap(preset, instrument, control)
    warnings = list(song.warnings)
    drums = midi_file.drum_notes(song)
    if drums and not imap.has_drums:
        msg = f"preset {preset.name!r} has no drum kit: the {drums} notes on channel 10 are skipped"
        log.warning(msg)
        warnings.append(msg)
    if song.note_count() == 0:
        warnings.append("the file has no notes: the output is silent")
        log.warning("%s has no notes: the output is silent", midi_path.name)

    stem_paths = stem_outputs(out, song, imap, preset) if stems else {}
    for path in stem_paths.values():
        if path.exists() and midi_path.exists() and path.resolve() == midi_path.resolve():
            raise ConfigError(f"the stem {path} is the input file; choose another output name", "output")
        check_output(path, fmt)

    needed = midi_file.needed_notes(song, imap)
    source = source if source is not None else DictNoteSource(rate=rate)
    store = None  # a preset without a hash of its weights is not cached
    if cache is not False and preset.sha256:
        store = (cache if isinstance(cache, DiskCache) else DiskCache()).notes(
            preset, rate, precision, samples=preset.note_samples(rate)
        )

    def new_renderer():
        from .renderer import NoteRenderer, free_cores  # torch: only when a note is missing

        return NoteRenderer(
            preset, device=model_device, precision=precision, batch_size=batch_size, output_rate=rate,
            threads=threads if threads is not None else free_cores(),
        )

    make = NoteMaker(source, store, renderer or new_renderer, rate, control.morph.blends() if control else None)
    plan = plan_notes(song, imap, needed, source, make, preset, rate, memory_bytes, polyphony, batch_size, warnings)
    try:
        if plan is None:
            make(needed, bar)  # every note first; with a plan they are made as the song plays
        t_mix, made_before_mix = time.perf_counter(), make.seconds
        # offline, every event of a block is applied at its sample (live play caps events per block)
        # and the voices are mixed MIX_BLOCK frames per pass (fewer, longer passes: the same samples
        # to float rounding); the limiter still rides its gain per ``block``; the reverb bus is its
        # impulse response convolved by FFT where that is cheaper (``reverb_ir``: to float rounding)
        mix_block = max(block, MIX_BLOCK)
        engine = Engine(imap, source, rate=rate, polyphony=polyphony, gain=gain, max_block=mix_block,
                        max_events=1 << 30, chunk=mix_block, limiter_block=block, effects=effects,
                        stems=sorted(stem_paths) if stems else None, offline=True)
        outputs = [out, *(stem_paths[ch] for ch in sorted(stem_paths))]
        most = song.end + int(round(tail * rate)) + mix_block  # a WAV file that could pass 4 GiB becomes RF64
        if normalize is None:
            with contextlib.ExitStack() as files:
                timed = TimedWriter([files.enter_context(atomic_writer(p, rate, 2, fmt, max_frames=most)) for p in outputs])
                frames = mix_song(engine, song, timed, mix_block, tail, threshold_db, bar, plan)
                t_close = time.perf_counter()
            timed.seconds += time.perf_counter() - t_close
        else:
            with Spill(outputs) as spill:
                measured = loudness.Meter(rate)
                frames = mix_song(engine, song, Metered(spill, measured), mix_block, tail, threshold_db, bar, plan)
                spill.flush()
                with contextlib.ExitStack() as files:
                    timed = TimedWriter(
                        [files.enter_context(atomic_writer(p, rate, 2, fmt, max_frames=frames)) for p in outputs]
                    )

                    def write(gain, a: int, b: int, mix: np.ndarray) -> None:
                        timed.write(mix * gain[:, None], [spill.read(k, a, b) * gain[:, None] for k in range(1, len(outputs))])

                    level = loudness.normalize(
                        spill.reader(rate), write, normalize, true_peak, before=measured,
                        progress=lambda done, total: bar.bar("normalising", done, total),
                    )
                    if abs(level.after_lufs - normalize) > 0.5:
                        msg = (f"{normalize:g} LUFS is out of reach under a true peak of {true_peak:g} dBTP: the render "
                               f"reached {level.after_lufs:.1f} LUFS with {level.limited_db:.1f} dB of limiting")
                        log.warning(msg)
                        warnings.append(msg)
                    t_close = time.perf_counter()
                timed.seconds += time.perf_counter() - t_close
    finally:
        bar.done(clear=True)
        if store is not None and store.written:
            store.cache.trim()  # within its bound again
    note_seconds = make.seconds
    mix_seconds = time.perf_counter() - t_mix - (make.seconds - made_before_mix)  # notes made while mixing: not mixing
    stats = {
        "notes_played": engine.notes_played,
        "notes_missing": engine.notes_missing,
        "notes_skipped": engine.notes_skipped,
        "voices_stolen": engine.voices_stolen,
        "max_voices": engine.max_voices,
    }
    return RenderResult(
        path=out,
        rate=rate,
        frames=frames,
        notes_needed=len(needed),
        notes_rendered=make.rendered,
        note_seconds=note_seconds,
        mix_seconds=mix_seconds,
        total_seconds=time.perf_counter() - t_start,
        stats=stats,
        warnings=warnings,
        notes_loaded=make.loaded,
        disk_seconds=make.disk_seconds,
        setup_seconds=make.setup_seconds,
        model_seconds=make.model_seconds,
        write_seconds=timed.seconds,
        notes_dropped=plan.dropped if plan is not None else 0,
        loudness=level if normalize is not None else None,
        stems=stem_paths,
    )
