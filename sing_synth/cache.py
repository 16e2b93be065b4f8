"""The live note cache: memory, then disk, filled by one renderer thread in priority order.

It implements the engine's ``NoteSource``. The audio thread only calls :meth:`NoteCache.find`,
:meth:`NoteCache.standin` and :meth:`NoteCache.request`: dictionary lookups and a deque append,
which never block and do bounded work (``standin`` looks at most 128 pitches). Notes live in a
:class:`~sing_synth.bank.NoteBank` sized by the memory budget, allocated once (its slots are
reused, never reallocated, so the audio thread can read them at any time). Everything else
(torch, disk, eviction) happens in the renderer thread; the model itself can be built there
too (pass a factory as ``renderer``), so a warm start reads the disk while the model loads.
This module does not import torch.

Disk layout: ``CACHE_DIR/<preset sha256[:16]>-<rate>/<instrument>/<pitch>-<vclass>.note``: a
24-byte header (magic ``SINGNOTE``, format version, sample count, CRC-32 of the samples) and the
float32 samples. Files are written to a temporary name and renamed (atomic); an entry whose
header or checksum does not match, or that cannot be read, is deleted and re-rendered. A warm
start reads an instrument's 365 notes at 48 kHz (280 MB) straight into their bank slots
(``readinto``, no intermediate buffer), checked with CRC-32 (5x faster than SHA-256 here, and
enough to catch a corrupt or truncated file).
``CACHE_DIR`` is ``--cache-dir``, else ``$SING_SYNTH_CACHE``, else ``$XDG_CACHE_HOME/sing-synth``
(``~/.cache/sing-synth``).
"""

from __future__ import annotations

import collections
import heapq
import os
import struct
import sys
import threading
import time
import zlib
from pathlib import Path

import numpy as np

from .bank import NoteBank

HEADER = struct.Struct("<8sIII")  # magic, format version, samples, CRC-32
MAGIC, VERSION = b"SINGNOTE", 1
VELOCITY_ORDER = (3, 2, 4, 1, 0)  # 100, 75, 127, 50, 25: the common velocities first
URGENT = -1


def default_cache_dir() -> Path:
    if os.environ.get("SING_SYNTH_CACHE"):
        return Path(os.environ["SING_SYNTH_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "sing-synth"


class NoteCache:
    """Notes of one preset at one output rate.

    ``renderer``: a NoteRenderer, a function returning one (called in the renderer thread the
    first time a note is not on disk, or when idle), or None (disk only).
    """

    def __init__(
        self, preset, rate: int, renderer=None, cache_dir=None, memory_bytes: int = 2 << 30, batch_size: int = 16
    ):
        self.preset = preset
        self.rate = int(rate)
        self.renderer = renderer
        self.dir = Path(cache_dir or default_cache_dir()) / f"{preset.sha256[:16] or 'unhashed'}-{self.rate}"
        self.memory_bytes = int(memory_bytes)
        self.batch_size = batch_size
        self.slots: dict[tuple[int, int, int], int] = {}  # published notes: key -> bank slot
        self.bank: NoteBank | None = None  # made with the first note (its length sets the slot size)
        self.ranges = {i.id: i.pitch_range for i in preset.instruments}
        self._requests: collections.deque = collections.deque(maxlen=1024)  # audio thread -> renderer
        self._used: collections.deque = collections.deque(maxlen=4096)  # recently played keys
        self._heap: list = []
        self._queued: set = set()
        self._prefetched: set[int] = set()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # scheduling state (main and renderer threads, never audio)
        self._build_lock = threading.Lock()  # the model is built once (renderer or model thread)
        self.model_ready = threading.Event()  # set once the renderer is built (or there is none)
        self.rendered = 0  # statistics, plain ints
        self.loaded = 0
        self.corrupt = 0
        self.threads: int | None = None  # torch threads for the renderer's next batches (None: as built)
        self._threads_set: int | None = None
        self.dropped = 0  # notes not kept: memory full of notes being played (they stay on disk)
        self.error: BaseException | None = None

    # Audio-thread side: never blocks ---------------------------------------------------
    def find(self, instrument: int, pitch: int, vclass: int) -> int:
        slot = self.slots.get((instrument, pitch, vclass), -1)
        if slot > 0:
            self._used.append((instrument, pitch, vclass))
        return slot

    def standin(self, instrument: int, pitch: int, vclass: int):
        """The nearest rendered pitch of the same instrument (same velocity class first): its slot and re-pitch ratio."""
        slots = self.slots
        for d in range(1, 128):
            for p in (pitch - d, pitch + d):
                if 0 <= p < 128:
                    slot = slots.get((instrument, p, vclass), -1)
                    if slot < 0:
                        for v in VELOCITY_ORDER:
                            slot = slots.get((instrument, p, v), -1)
                            if slot > 0:
                                break
                    if slot > 0:
                        return slot, 2.0 ** ((pitch - p) / 12.0)
        return None

    def get(self, instrument: int, pitch: int, vclass: int) -> np.ndarray | None:
        """The note as a read-only array (a view of the bank), or None (marks it played, as ``find``)."""
        slot = self.find(instrument, pitch, vclass)
        return self.bank.note(slot) if slot > 0 else None

    @property
    def memory_used(self) -> int:
        """Bytes of audio held in memory."""
        return 0 if self.bank is None else len(self.slots) * 4 * self.bank.length

    def request(self, instrument: int, pitch: int, vclass: int) -> None:
        self._requests.append((instrument, pitch, vclass))
        self._wake.set()

    # Scheduling ------------------------------------------------------------------------
    def instrument_keys(self, instrument: int, pitches=None) -> list[tuple[int, int, int]]:
        """Every note of an instrument, the middle of the keyboard and common velocities first."""
        lo, hi = self.ranges.get(instrument, (0, 127))
        pitches = range(max(lo, 0), min(hi, 127) + 1) if pitches is None else pitches
        order = sorted(pitches, key=lambda p: (abs(p - 60), p))
        n_vel = len(self.preset.velocities)
        vels = [v for v in VELOCITY_ORDER if v < n_vel]
        first = [(instrument, p, v) for v in vels[:2] for p in order]
        return first + [(instrument, p, v) for p in order for v in vels[2:]]

    def prefetch(self, instrument: int, level: int = 1) -> list[tuple[int, int, int]]:
        keys = self.instrument_keys(instrument)
        self._prefetched.add(instrument)
        self.schedule(keys, level)
        return keys

    def schedule(self, keys, level: int = 1) -> None:
        """Queue notes for the renderer thread: lower ``level`` first, then in the order given."""
        with self._lock:
            for n, key in enumerate(keys):
                if key not in self.slots and key not in self._queued:
                    self._queued.add(key)
                    heapq.heappush(self._heap, (level, n, key))
        self._wake.set()

    @property
    def pending(self) -> int:
        """Notes still waiting to be rendered or loaded."""
        return len(self._heap)

    def wait(self, keys, timeout: float | None = None, progress=None, model: bool = False) -> bool:
        """Block (the main thread) until every key is in memory (and, with ``model``, the renderer
        is built); ``progress(done, total)`` is called as notes arrive. False on timeout."""
        keys = list(keys)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self.error is not None:
                raise self.error
            done = sum(k in self.slots for k in keys)
            if progress:
                progress(done, len(keys))
            if done == len(keys) and (not model or self.model_ready.is_set()):
                return True
            if deadline is not None and time.monotonic() > deadline:
                return False
            time.sleep(0.05)

    # Renderer thread -------------------------------------------------------------------
    def start(self) -> NoteCache:
        self._thread = threading.Thread(target=self._run, name="sing-synth-renderer", daemon=True)
        self._thread.start()
        if self.renderer is not None and not hasattr(self.renderer, "render"):
            # build the model (importing torch: about a second) while the renderer thread reads the disk
            threading.Thread(target=self._build, name="sing-synth-model", daemon=True).start()
        return self

    def _build(self) -> None:
        try:
            self._renderer()
        except BaseException as exc:  # reported to the main thread by wait()
            self.error = exc
            self.model_ready.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _next_batch(self) -> list[tuple[int, int, int]]:
        """The next notes to make: requested notes alone (they are urgent), else up to a batch."""
        while self._requests:
            key = self._requests.popleft()
            if key[0] not in self._prefetched and key[0] in self.ranges:
                self.prefetch(key[0], level=2)  # a new instrument (program change): all its notes, later
            if key not in self.slots:
                with self._lock:
                    heapq.heappush(self._heap, (URGENT, 0, key))
                    self._queued.add(key)
        batch = []
        with self._lock:
            urgent = bool(self._heap) and self._heap[0][0] == URGENT
            while self._heap and len(batch) < self.batch_size:
                if urgent and self._heap[0][0] != URGENT:
                    break
                _, _, key = heapq.heappop(self._heap)
                if key not in self.slots and key not in batch:
                    batch.append(key)
                self._queued.discard(key)
        return batch

    def _renderer(self):
        """The renderer, built from its factory on first use (by whichever thread comes first)."""
        with self._build_lock:
            if self.renderer is not None and not hasattr(self.renderer, "render"):
                self.renderer = self.renderer()
        self.model_ready.set()
        return self.renderer

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                batch = self._next_batch()
                if not batch:
                    self._renderer()  # idle: have the model ready for notes the disk lacks
                    self._wake.wait(0.5)
                    self._wake.clear()
                    continue
                missing = [k for k in batch if not self._load(k)]
                renderer = self._renderer() if missing else None
                if renderer is not None:
                    want = self.threads or getattr(renderer, "threads", None)
                    if want and want != self._threads_set and hasattr(renderer, "set_threads"):
                        renderer.set_threads(want)  # in this thread: torch's thread settings are per thread
                        self._threads_set = want
                    for key, wav in zip(missing, renderer.render(missing)):
                        self._store(key, wav)
                        self.rendered += 1
        except BaseException as exc:  # reported to the main thread by wait()
            self.error = exc

    def _slot(self, n: int) -> int:
        """A free bank slot for ``n`` samples, evicting the least recently played notes if needed;
        -1 when every slot is still played after a short wait (the note stays on disk)."""
        if self.bank is None:
            self.bank = NoteBank(n, max(2, self.memory_bytes // (4 * n)))
        bank = self.bank
        slot = bank.alloc(min(n, bank.length))
        deadline = time.monotonic() + 0.2
        while slot < 0:
            self._evict()
            slot = bank.alloc(min(n, bank.length))
            if slot < 0:  # evicted slots are reused once the audio thread has let go of them
                if time.monotonic() > deadline:
                    self.dropped += 1
                    return -1
                time.sleep(0.005)
        return slot

    def _publish(self, key, slot: int) -> None:
        self.bank.set_loop(slot, key[1], self.rate)
        old = self.slots.get(key)
        self.slots[key] = slot  # the audio thread may play it from now on
        if old is not None:
            self.bank.retire(old)

    def _insert(self, key, wav: np.ndarray) -> None:
        wav = np.asarray(wav, dtype=np.float32).reshape(-1)
        slot = self._slot(len(wav))
        if slot > 0:
            n = self.bank.lengths[slot]
            self.bank.data[slot, :n] = wav[:n]
            self._publish(key, slot)

    def _evict(self) -> None:
        """Drop the least recently played notes (never ones played in the last few thousand notes)."""
        while True:
            try:
                recent = set(self._used)  # the audio thread may append meanwhile: retry
                break
            except RuntimeError:
                continue
        target = max(1, self.bank.capacity // 10)
        for key in list(self.slots):
            if target <= 0:
                break
            if key not in recent:
                self.bank.retire(self.slots.pop(key))  # unpublished first, then retired
                target -= 1

    # Disk ------------------------------------------------------------------------------
    def path(self, key) -> Path:
        i, p, v = key
        return self.dir / str(i) / f"{p}-{v}.note"

    def _load(self, key) -> bool:
        """Read a note file straight into a bank slot; a damaged one is deleted (to be re-rendered)."""
        path = self.path(key)
        slot = -1
        try:
            with open(path, "rb") as f:
                head = f.read(HEADER.size)
                ok = len(head) == HEADER.size
                if ok:
                    magic, version, n, crc = HEADER.unpack(head)
                    ok = magic == MAGIC and version == VERSION and 0 < n and os.fstat(f.fileno()).st_size == HEADER.size + 4 * n
                if ok:
                    slot = self._slot(n)
                    if slot < 0:
                        return True  # memory full of played notes: it stays on disk for later
                    ok = self.bank.lengths[slot] == n  # a note longer than this bank's notes is foreign
                if ok:
                    row = self.bank.data[slot, :n]
                    ok = f.readinto(memoryview(row).cast("B")) == 4 * n and zlib.crc32(row) == crc
        except FileNotFoundError:
            return False
        except OSError:
            ok = False
        if not ok:  # truncated, corrupt or foreign: re-render it
            if slot > 0:
                self.bank.free(slot)
            self.corrupt += 1
            path.unlink(missing_ok=True)
            return False
        if sys.byteorder == "big":
            row.byteswap(inplace=True)  # the files are little-endian
        self._publish(key, slot)
        self.loaded += 1
        return True

    def _store(self, key, wav: np.ndarray) -> None:
        wav = np.ascontiguousarray(wav, dtype=np.float32)
        path = self.path(key)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            body = wav.astype("<f4", copy=False).tobytes()
            with open(tmp, "wb") as f:
                f.write(HEADER.pack(MAGIC, VERSION, len(wav), zlib.crc32(body)))
                f.write(body)
            os.replace(tmp, path)
        except OSError:  # a read-only or full disk only costs the next start its speed
            tmp.unlink(missing_ok=True)
        self._insert(key, wav)
