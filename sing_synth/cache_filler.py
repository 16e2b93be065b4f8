"""The renderer thread of live play: it fills a :class:`~sing_synth.cache.NoteCache` in priority order.

Notes are scheduled with a level (lower first; the warm-up's instrument at level 1, others at
2) and come, in batches, from the cache's disk layer or else through the note renderer. A note
the audio thread asks for (``NoteCache.request``: a note-on found no note, a morph position
moved) is urgent: it is made alone, before anything else, the latest request first (what is
played now), and a request for an instrument not scheduled yet (a program change) schedules all
its notes behind it; a morph position (a virtual instrument) is made note by note, as asked.

The renderer can be given as a factory: the model (and torch) is then built only when a note is
not on disk, by the first batch that lacks one, or ahead of need in a thread of its own
(:meth:`CacheFiller.build`, while this thread reads the disk): a start that finds every note on
disk never imports torch. The torch thread count of the renderer (``threads``) is applied here,
between batches: torch's setting holds for the thread that makes it. This module does not import
torch.
"""

from __future__ import annotations

import heapq
import threading
import time

from .cache import NoteCache
from .note_source import COMMON_CLASSES, Key

IDLE_WAIT = 30.0  # s: the idle renderer's longest sleep

URGENT = -1  # the level of the notes the audio thread asked for


class CacheFiller:
    """Fills ``cache`` from its disk layer and ``renderer``: a NoteRenderer, a function returning
    one (built on first need, or when idle), or None (disk only)."""

    def __init__(self, cache: NoteCache, renderer=None, batch_size: int = 16):
        self.cache = cache
        self.renderer = renderer
        self.batch_size = batch_size
        self.ranges = {i.id: i.pitch_range for i in cache.preset.instruments}
        self.sources = {i.id: i.sources() for i in cache.preset.instruments if i.played_from}
        self._heap: list = []
        self._queued: set = set()
        self._prefetched: set[int] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # scheduling state (main and filler threads, never audio)
        self._build_lock = threading.Lock()  # the model is built once (filler or model thread)
        self.model_ready = threading.Event()  # set once the renderer is built (or there is none)
        self.progressed = threading.Event()  # set after each batch (wakes wait())
        self.threads: int | None = None  # torch threads for the renderer's next batches (None: as built)
        self._threads_set: int | None = None
        self.rendered = 0  # statistics, a plain int
        self.timeline = None  # a sing_synth.timing.Timeline (diagnostics), or None
        # while notes play: a function that returns just after an audio block (AudioOutput.between_blocks),
        # called before each piece of Python work so that it does not hold the GIL when a block is due
        self.between = None
        self._requests = 0  # requests taken so far: the latest is made first
        self.error: BaseException | None = None

    # Scheduling (main thread) ----------------------------------------------------------
    def instrument_keys(self, instrument: int, pitches=None) -> list[Key]:
        """Every note of an instrument, the middle of the keyboard and common velocities first (by
        default the notes its keys play: not the keys its tuning map plays from others)."""
        lo, hi = self.ranges.get(instrument, (0, 127))
        if pitches is None:
            played = self.sources.get(instrument, {})
            pitches = sorted({played.get(p, p) for p in range(max(lo, 0), min(hi, 127) + 1)})
        order = sorted(pitches, key=lambda p: (abs(p - 60), p))
        n_vel = len(self.cache.preset.velocities)
        vels = [v for v in COMMON_CLASSES if v < n_vel]
        first = [(instrument, p, v) for v in vels[:2] for p in order]
        return first + [(instrument, p, v) for p in order for v in vels[2:]]

    def prefetch(self, instrument: int, level: int = 1) -> list[Key]:
        """Schedule every note of an instrument; returns them in their order."""
        keys = self.instrument_keys(instrument)
        self._prefetched.add(instrument)
        self.schedule(keys, level)
        return keys

    def schedule(self, keys, level: int = 1) -> None:
        """Queue notes: lower ``level`` first, then in the order given."""
        slots = self.cache.slots
        with self._lock:
            for n, key in enumerate(keys):
                if key not in slots and key not in self._queued:
                    self._queued.add(key)
                    heapq.heappush(self._heap, (level, n, key))
        self.cache.wake.set()

    @property
    def pending(self) -> int:
        """Notes still waiting to be rendered or loaded."""
        return len(self._heap)

    def wait(self, keys, timeout: float | None = None, progress=None, model: bool = False) -> bool:
        """Block until every key is in memory (and, with ``model``, the renderer is built);
        ``progress(done, total)`` is called as notes arrive. False on timeout; the filler's
        error, if it stopped on one, is raised here."""
        keys = list(keys)
        slots = self.cache.slots
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self.error is not None:
                raise self.error
            done = sum(k in slots for k in keys)
            if progress:
                progress(done, len(keys))
            if done == len(keys) and (not model or self.model_ready.is_set()):
                return True
            if deadline is not None and time.monotonic() > deadline:
                return False
            self.progressed.wait(0.05)
            self.progressed.clear()

    # The thread ------------------------------------------------------------------------
    def start(self) -> CacheFiller:
        self._thread = threading.Thread(target=self._run, name="sing-synth-renderer", daemon=True)
        self._thread.start()
        return self

    def build(self) -> None:
        """Build the model now, in a thread of its own (importing torch takes about a second), while
        the filler reads the disk: for a start that knows notes are missing."""
        if self.renderer is not None and not hasattr(self.renderer, "render"):
            threading.Thread(target=self._build, name="sing-synth-model", daemon=True).start()
        else:
            self.model_ready.set()

    def missing_on_disk(self, keys) -> list[Key]:
        """The keys neither in memory nor on disk (a file on disk may still turn out damaged)."""
        cache = self.cache
        return [k for k in keys if k not in cache.slots and not cache.on_disk(k)]

    def stop(self) -> None:
        self._stop.set()
        self.cache.wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        disk = self.cache.disk
        if disk is not None and disk.written:
            disk.cache.trim()  # the disk cache within its bound again

    def _build(self) -> None:
        try:
            self._renderer()
        except BaseException as exc:  # reported to the main thread by wait()
            self.error = exc
            self.model_ready.set()
            self.progressed.set()

    def _renderer(self):
        """The renderer, built from its factory on first use (by whichever thread comes first)."""
        with self._build_lock:
            if self.renderer is not None and not hasattr(self.renderer, "render"):
                self.renderer = self.renderer()
        self.model_ready.set()
        self.progressed.set()
        return self.renderer

    def _between(self) -> None:
        between = self.between
        if between is not None:
            between()

    def _next_batch(self) -> list[Key]:
        """The next notes to make: requested notes alone (they are urgent), else up to a batch."""
        cache = self.cache
        while cache.requests:
            key = cache.requests.popleft()
            if key[0] not in self._prefetched and key[0] in self.ranges:
                self.prefetch(key[0], level=2)  # a new instrument (program change): all its notes, later
            if key not in cache.slots:
                self._requests += 1
                with self._lock:
                    heapq.heappush(self._heap, (URGENT, -self._requests, key))
                    self._queued.add(key)
        batch = []
        with self._lock:
            urgent = bool(self._heap) and self._heap[0][0] == URGENT
            while self._heap and len(batch) < self.batch_size:
                if urgent and self._heap[0][0] != URGENT:
                    break
                _, _, key = heapq.heappop(self._heap)
                if key not in cache.slots and key not in batch:
                    batch.append(key)
                self._queued.discard(key)
        return batch

    def _run(self) -> None:
        cache = self.cache
        try:
            while not self._stop.is_set():
                self._between()
                t0 = time.perf_counter()
                cache.wake.clear()  # before looking: a request made from now on wakes the wait below
                batch = self._next_batch()
                if not batch:
                    if self.timeline is not None:
                        self.timeline.span("renderer", t0)
                    if self._stop.is_set():  # stop() sets it before waking us: checked after the clear
                        break
                    # idle: sleep until a request, a schedule or stop() (no periodic wake-ups taking the
                    # GIL while notes play; the timeout is only a safety net)
                    cache.wake.wait(IDLE_WAIT)
                    continue
                missing = [k for k in batch if not cache.load(k)]
                self.progressed.set()
                renderer = self._renderer() if missing else None
                if renderer is not None:
                    want = self.threads or getattr(renderer, "threads", None)
                    if want and want != self._threads_set and hasattr(renderer, "set_threads"):
                        renderer.set_threads(want)  # in this thread: torch's thread settings are per thread
                        self._threads_set = want
                    for key, wav in zip(missing, renderer.render(missing)):
                        self._between()
                        cache.store(key, wav)
                        self.rendered += 1
                    self.progressed.set()
                if self.timeline is not None:
                    self.timeline.span("renderer", t0)
        except BaseException as exc:  # reported to the main thread by wait()
            self.error = exc
            self.progressed.set()
