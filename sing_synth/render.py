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
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import limits, loudness, midi_file
from .audio_file import atomic_writer, check_output
from .bank import PAD
from .channels import InstrumentMap
from .disk_cache import DiskCache, NoteStore
from .effects import EffectSettings
from .engine import Engine
from .errors import ConfigError
from .morph import DEFAULT_CCS, DEFAULT_STEPS, MorphControl, resolve
from .note_plan import NotePlan, min_capacity
from .note_source import DictNoteSource
from .progress import Progress
from .voices import pool_size

log = logging.getLogger(__name__)
MIX_BLOCK = 32768  # frames mixed per pass offline

DEFAULT_MAX_LENGTH = 4 * 3600.0  # seconds: the longest song rendered unless told otherwise
MAX_TAIL = 600.0  # seconds of sound after the last event, at most
DEFAULT_NOTE_MEMORY = 512 << 20  # bytes of rendered notes a render holds at most (760 notes at 44.1 kHz)
EVENT_CHUNK = 1 << 16  # events turned into Python lists at a time while mixing


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


def render_notes(
    source: DictNoteSource,
    keys,
    renderer,
    progress: Progress | None = None,
    chunk: int | None = None,
    store: NoteStore | None = None,
) -> int:
    """Render the ``keys`` missing from ``source`` into it (and into ``store``, a disk cache), in
    batches of ``chunk`` notes (default: the renderer's batch size); returns how many were rendered.

    The model makes one batch while a second thread resamples the previous one (when the
    renderer has ``render_model_rate`` and ``resample``), adds it to ``source`` and writes it."""
    missing = source.missing(keys)
    if not missing:
        return 0
    chunk = max(1, int(chunk or getattr(renderer, "batch_size", 64)))
    chunk = -(-len(missing) // -(-len(missing) // chunk))  # batches of equal size (205 notes: 4 x 52, not 3 x 64 + 13)
    split = hasattr(renderer, "render_model_rate") and hasattr(renderer, "resample")
    length = getattr(renderer, "note_samples", None)
    if isinstance(length, int):
        source.reserve(len(missing), length)
    done = 0

    def keep(part, wavs) -> None:
        nonlocal done
        if split:
            wavs = renderer.resample(wavs)
        for key, wav in zip(part, wavs, strict=True):
            source.add(key, wav)
            if store is not None:
                store.write(key, wav)
        done += len(part)
        if progress:
            progress.bar("rendering notes", done, len(missing), "notes")

    with ThreadPoolExecutor(1, thread_name_prefix="sing-synth-notes") as worker:
        pending = None
        try:
            for start in range(0, len(missing), chunk):
                part = missing[start : start + chunk]
                wavs = renderer.render_model_rate(part) if split else renderer.render(part)
                if pending is not None:
                    pending.result()  # one batch in flight: memory stays bounded
                pending = worker.submit(keep, part, wavs)
            if pending is not None:
                pending.result()
        except BaseException:
            if pending is not None:
                pending.cancel()
            raise
    return len(missing)


def load_notes(source: DictNoteSource, keys, store: NoteStore, progress: Progress | None = None) -> int:
    """Read the ``keys`` missing from ``source`` from the disk cache ``store``; returns how many were found."""
    missing = source.missing(keys)
    found = 0
    for n, key in enumerate(missing):
        found += source.load(key, store)
        if progress:
            progress.bar("reading notes", n + 1, len(missing), "notes")
    return found


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

    make = _NoteMaker(source, store, renderer or new_renderer, rate, control.morph.blends() if control else None)
    plan = _plan(song, imap, needed, source, make, preset, rate, memory_bytes, polyphony, batch_size, warnings)
    try:
        if plan is None:
            make(needed, bar)  # every note first; with a plan they are made as the song plays
        t_mix, made_before_mix = time.perf_counter(), make.seconds
        # offline, every event of a block is applied at its sample (live play caps events per block)
        # and the voices are mixed MIX_BLOCK frames per pass (fewer, longer passes: the same samples);
        # the limiter still rides its gain per ``block``
        mix_block = max(block, MIX_BLOCK)
        engine = Engine(imap, source, rate=rate, polyphony=polyphony, gain=gain, max_block=mix_block,
                        max_events=1 << 30, chunk=mix_block, limiter_block=block, effects=effects,
                        stems=sorted(stem_paths) if stems else None)
        outputs = [out, *(stem_paths[ch] for ch in sorted(stem_paths))]
        most = song.end + int(round(tail * rate)) + mix_block  # a WAV file that could pass 4 GiB becomes RF64
        if normalize is None:
            with contextlib.ExitStack() as files:
                timed = _TimedWriter([files.enter_context(atomic_writer(p, rate, 2, fmt, max_frames=most)) for p in outputs])
                frames = _mix(engine, song, timed, mix_block, tail, threshold_db, bar, plan)
                t_close = time.perf_counter()
            timed.seconds += time.perf_counter() - t_close
        else:
            with _Spill(outputs) as spill:
                measured = loudness.Meter(rate)
                frames = _mix(engine, song, _Metered(spill, measured), mix_block, tail, threshold_db, bar, plan)
                spill.flush()
                with contextlib.ExitStack() as files:
                    timed = _TimedWriter(
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


class _NoteMaker:
    """Makes notes resident in ``source``: read from the disk cache ``store``, else rendered (and
    written to the store) by ``renderer``, a NoteRenderer or a function building one on first need,
    told the ``blends`` of a morph. Counts what it did and the time it took."""

    def __init__(self, source: DictNoteSource, store: NoteStore | None, renderer, rate: int, blends=None) -> None:
        self.source, self.store, self.renderer, self.rate, self.blends = source, store, renderer, rate, blends
        self.loaded = self.rendered = 0
        self.disk_seconds = self.setup_seconds = self.model_seconds = 0.0

    @property
    def seconds(self) -> float:
        return self.disk_seconds + self.setup_seconds + self.model_seconds

    def __call__(self, keys, progress: Progress | None = None) -> None:
        t = time.perf_counter()
        if self.store is not None:
            self.loaded += load_notes(self.source, keys, self.store, progress)
        self.disk_seconds += time.perf_counter() - t
        if not self.source.missing(keys):
            return
        if not hasattr(self.renderer, "render"):
            t = time.perf_counter()
            self.renderer = self.renderer()
            if hasattr(self.renderer, "warm_up"):
                self.renderer.warm_up()  # the first call's one-time set-up counts as loading, not per note
            self.setup_seconds += time.perf_counter() - t
        if self.blends:
            self.renderer.add_blends(self.blends)
        if self.renderer.output_rate != self.rate:
            raise ConfigError(
                f"the note renderer outputs {self.renderer.output_rate} Hz but the render is at {self.rate} Hz", "rate"
            )
        t = time.perf_counter()
        self.rendered += render_notes(self.source, keys, self.renderer, progress, store=self.store)
        self.model_seconds += time.perf_counter() - t


def _plan(song, imap, needed, source, make, preset, rate, memory_bytes, polyphony, batch_size, warnings):
    """A :class:`~sing_synth.note_plan.NotePlan` when the song's notes do not all fit in
    ``memory_bytes`` (None when they do, or when the notes' length is not known)."""
    if preset.config is None:
        return None  # a preset without a model: its notes come from the source given
    length = preset.note_samples(rate)
    capacity = int(memory_bytes) // (4 * (length + PAD))
    if len(needed) <= capacity:
        if source.bank is None:
            source.reserve(len(needed), length)  # the bank made once, at its size
        return None
    least = min_capacity(pool_size(polyphony))
    if capacity < least:
        raise ConfigError(
            f"note memory of {memory_bytes / 2**30:.3g} GiB holds {capacity} notes at {rate} Hz, fewer than the "
            f"{least} that {polyphony} voices may play at once; give more memory (at least "
            f"{least * 4 * (length + PAD) / 2**30:.2f} GiB) or lower the polyphony",
            "cache_memory",
        )
    msg = (
        f"the song needs {len(needed)} distinct notes, more than the {capacity} that {memory_bytes / 2**30:.3g} GiB "
        f"of note memory holds at {rate} Hz: they are made as the song plays, and notes needed again are made again"
    )
    log.warning(msg)
    warnings.append(msg)
    if source.bank is None or source.bank.capacity < capacity:
        source.reserve(capacity - len(source), length)  # the bank made once, at the budget
    return NotePlan(source, list(midi_file.note_uses(song, imap)), capacity, make, batch=batch_size)


class _TimedWriter:
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


class _Metered:
    """Writes through ``writer`` and measures the mix with ``meter`` (a loudness.Meter)."""

    def __init__(self, writer, meter) -> None:
        self.writer, self.meter = writer, meter

    def write(self, x: np.ndarray, stems=()) -> None:
        self.meter.add(x)
        self.writer.write(x, stems)


class _Spill:
    """The render's files as raw float32 stereo beside the first output, read back frame-exact for
    the normalising pass; removed on the way out, whatever happens."""

    def __init__(self, outputs) -> None:
        self.outputs = [Path(p) for p in outputs]
        self.paths: list[Path] = []
        self.files = []
        self._maps: list[np.ndarray | None] = []

    def __enter__(self) -> _Spill:
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


def _mix(
    engine: Engine, song, writer, block: int, tail: float, threshold_db: float, bar: Progress, plan: NotePlan | None
) -> int:
    """Run the engine over the song's events; write everything up to the end of the sound. Returns frames.

    With a ``plan``, the notes of the events are made resident before the events are queued; a
    block ends early where the queued events must be played before the next ones' notes fit."""
    events = song.events
    n_events = len(events)
    end = song.end
    cap = end + int(round(tail * engine.rate))
    threshold = 10.0 ** (threshold_db / 20.0)
    buf = np.zeros((block, 2), np.float32)
    held: list[np.ndarray] = []  # audio after the last event, trimmed at the end
    held_stems: list[np.ndarray] = []  # the same of the stems, (lanes, 2, frames)
    stems = engine.stems
    frame = i = queued = 0  # queued: the first event the engine has not played yet
    ready = 0 if plan is not None else n_events  # the events before it have their notes resident
    rows, first = [], 0  # rows[k] is event first + k: lists made a chunk at a time (a song's could take GBs)
    times = np.ascontiguousarray(events[:, 0]) if plan is not None else None
    while True:
        n = min(block, end - frame) if frame < end else min(block, cap - frame)
        if n <= 0:
            break
        while i < n_events:
            if i - first >= len(rows):
                rows, first = events[i : i + EVENT_CHUNK].tolist(), i
            t, kind, ch, a, b = rows[i - first]
            if t >= frame + n:
                break
            if i >= ready:
                ready = plan.prepare(queued, i)
                bar.bar(f"mixing ({plan.made} notes made, {plan.dropped} dropped)", frame, max(end, 1))
                if ready <= i:  # no room until the queued events are played
                    n = max(1, t - frame)
                    break
            if not engine.push(kind, ch, a, b, t):
                n = max(1, t - frame)  # queue full: play up to this event first
                break
            i += 1
        engine.process(buf[:n])
        frame += n
        if plan is not None:
            queued = min(i, int(np.searchsorted(times, frame)))
        if frame <= end:
            writer.write(buf[:n], [] if stems is None else stems[:, :, :n].transpose(0, 2, 1))
            bar.bar("mixing", frame, max(end, 1))
            continue
        held.append(buf[:n].copy())
        if stems is not None:
            held_stems.append(stems[:, :, :n].copy())
        quiet = float(np.max(np.abs(buf[:n]))) < threshold
        if frame >= cap or (i >= n_events and (quiet or not engine.sounding)):
            break
    if held:
        rest = np.concatenate(held)
        loud = np.nonzero(np.max(np.abs(rest), axis=1) >= threshold)[0]
        keep = int(loud[-1]) + 1 if len(loud) else 0
        still_sounding = keep == len(rest)
        rest = rest[:keep]
        rest_stems = np.concatenate(held_stems, axis=2)[:, :, :keep].transpose(0, 2, 1) if stems is not None else []
        if frame >= cap and still_sounding and keep:  # cut by the cap while still sounding: fade out
            k = min(keep, int(0.01 * engine.rate))
            fade = np.linspace(1.0, 0.0, k, dtype=np.float32)[:, None]
            rest[-k:] *= fade
            for stem in rest_stems:
                stem[-k:] *= fade
        writer.write(rest, rest_stems)
        return min(frame, end) + keep
    return frame

