"""A render's notes: read from the note cache on disk, else made by the model in batches, within a memory budget."""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor

from . import limits, midi_file
from .bank import PAD
from .disk_cache import NoteStore
from .errors import ConfigError
from .note_plan import NotePlan, min_capacity
from .note_source import DictNoteSource
from .progress import Progress
from .voices import pool_size

log = logging.getLogger(__name__)


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

    When the renderer has ``render_model_rate`` and ``resample``, a batch is made at the model's
    rate, then resampled, added to ``source`` and written. Where the model leaves a CPU core
    free (on a GPU, or with fewer torch threads than cores) a second thread does that for one
    batch while the model makes the next. Where torch's intra-op threads take every core, it
    follows each batch, its notes shared among as many threads as cores (libsoxr and file
    writes release the interpreter lock): a thread beside the model would stall it more than it
    saves (bench/RESULTS.md, issue 13)."""
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

    def finish(part, wavs, i):
        """Note ``i`` of a batch at the output rate, written to the store."""
        wav = renderer.resample(wavs[i]) if split else wavs[i]
        if store is not None:
            store.write(part[i], wav)
        return wav

    def keep(part, wavs, pool=None) -> None:
        nonlocal done
        rows = range(len(part))
        wavs = list(pool.map(lambda i: finish(part, wavs, i), rows)) if pool else [finish(part, wavs, i) for i in rows]
        for key, wav in zip(part, wavs, strict=True):
            source.add(key, wav)
        done += len(part)
        if progress:
            progress.bar("rendering notes", done, len(missing), "notes")

    if not _overlap(renderer):
        with ThreadPoolExecutor(limits.cores(), thread_name_prefix="sing-synth-notes") as pool:
            for start in range(0, len(missing), chunk):
                part = missing[start : start + chunk]
                keep(part, renderer.render_model_rate(part) if split else renderer.render(part), pool)
        return len(missing)
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


def _on_cpu(renderer) -> bool:
    return getattr(getattr(renderer, "device", None), "type", "cpu") == "cpu"


def _overlap(renderer) -> bool:
    """Whether a thread beside the model finds a core of its own (see ``render_notes``)."""
    return not _on_cpu(renderer) or (getattr(renderer, "threads", None) or limits.cores()) < limits.cores()


def load_notes(source: DictNoteSource, keys, store: NoteStore, progress: Progress | None = None) -> int:
    """Read the ``keys`` missing from ``source`` from the disk cache ``store``; returns how many were found."""
    missing = source.missing(keys)
    found = 0
    for n, key in enumerate(missing):
        found += source.load(key, store)
        if progress:
            progress.bar("reading notes", n + 1, len(missing), "notes")
    return found


class NoteMaker:
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


def plan_notes(song, imap, needed, source, make, preset, rate, memory_bytes, polyphony, batch_size, warnings):
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
