"""The note cache on disk: every rendered note, shared by renders and live play, by every process.

Layout: ``ROOT/<preset sha256[:16]>-<rate>[-<precision>]/<instrument>/<pitch>-<vclass>.note``, one
note per file in the format of :mod:`sing_synth.note_file` (versioned, CRC-32 checksummed). A
note is keyed by the preset's weights, the note and the output rate (and the model's precision
when it is not float32: a bfloat16 note is not the float32 one). ``ROOT`` is the directory given,
else ``$SING_SYNTH_CACHE``, else ``$XDG_CACHE_HOME/sing-synth`` (``~/.cache/sing-synth``).

Size: the notes of all presets and rates together are kept within ``max_bytes`` (the size given,
else ``$SING_SYNTH_CACHE_SIZE``, else :data:`DEFAULT_SIZE`), evicting the least recently used
notes first: a note's modification time is its last use (set when it is written, and when it is
read). The bound is enforced as notes are written (every :data:`TRIM_EVERY` bytes or an eighth of
the bound, whichever is less) and when a writer finishes (:meth:`DiskCache.trim`).

Concurrency: any number of processes (renders, live sessions) may share the directory. A note is
written to a temporary file beside it and renamed over its name, so a reader sees a whole note or
none; a note evicted or replaced while it is read stays readable through the reader's open file.
A file that is damaged, truncated or foreign is deleted by the reader that finds it, and the note
is rendered again. Only names of this layout are ever deleted: a cache directory pointed at a
folder holding other files leaves them alone. This module does not import torch.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import note_file
from .errors import ConfigError

Key = tuple[int, int, int]  # instrument, pitch, velocity class

DEFAULT_SIZE = 4 << 30  # 4 GiB: about 5,000 notes at 48 kHz (a dozen instruments, or many songs)
SIZE_ENV = "SING_SYNTH_CACHE_SIZE"
TRIM_EVERY = 64 << 20  # bytes written between two checks of the bound
STALE_TMP = 3600.0  # seconds after which a temporary file is a crashed writer's leftover
PARSED_DIR = "presets"  # preset.yaml files parsed before (sing_synth.preset.parse)
DIR_NAME = re.compile(r"^([0-9a-f]{16}|unhashed)-(\d+)(-[a-z0-9]+)?$")

# what NoteStore.read found
LOADED, MISSING, DAMAGED, NO_ROOM = "loaded", "missing", "damaged", "no room"


def default_dir() -> Path:
    """``$SING_SYNTH_CACHE``, else ``$XDG_CACHE_HOME/sing-synth`` (``~/.cache/sing-synth``)."""
    if os.environ.get("SING_SYNTH_CACHE"):
        return Path(os.environ["SING_SYNTH_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "sing-synth"


_UNITS = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(text: str | int | float) -> int:
    """Bytes from ``4G``, ``500M``, ``1.5GiB``, ``800MB`` or a number of bytes (binary units)."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value, unit = float(text), ""
    else:
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kKmMgGtT]?)(?:i?[bB])?\s*", str(text))
        if not m:
            raise ConfigError(f"cache size {text!r} is not a size; give e.g. 4G, 500M or a number of bytes", "cache_size")
        value, unit = float(m.group(1)), m.group(2).upper()
    size = int(value * _UNITS[unit])
    if size < 0 or value != value:
        raise ConfigError(f"cache size {text!r} is negative; give e.g. 4G, 500M or 0 (keep nothing)", "cache_size")
    return size


def default_size() -> int:
    """``$SING_SYNTH_CACHE_SIZE`` if set, else :data:`DEFAULT_SIZE`."""
    text = os.environ.get(SIZE_ENV, "")
    return parse_size(text) if text.strip() else DEFAULT_SIZE


def format_size(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


@dataclass(frozen=True)
class Entry:
    """A file of the cache: a note, or a writer's temporary file."""

    path: Path
    size: int
    used: int  # modification time, ns: the note's last use
    tmp: bool = False


class DiskCache:
    """The cache directory ``root`` (default: :func:`default_dir`), holding at most ``max_bytes``
    (default: :func:`default_size`) of notes."""

    def __init__(self, root: str | os.PathLike | None = None, max_bytes: int | str | None = None) -> None:
        self.root = Path(root) if root else default_dir()
        self.max_bytes = default_size() if max_bytes is None else parse_size(max_bytes)
        self._lock = threading.Lock()
        self._written = 0  # bytes written since the bound was last checked

    def notes(self, preset, rate: int, precision: str = "float32", samples: int | None = None) -> NoteStore | None:
        """The notes of ``preset`` (its weights' hash) at ``rate`` Hz made in ``precision``; None
        for a preset without a hash (its notes could not be told from another's). ``samples``:
        the length every note must have (a note file of another length is damaged), or None."""
        if not preset.sha256:
            return None
        name = f"{preset.sha256[:16]}-{int(rate)}"
        if precision != "float32":
            name += f"-{precision}"
        return NoteStore(self, self.root / name, samples)

    # Listing and eviction ----------------------------------------------------------------
    def entries(self) -> Iterator[Entry]:
        """Every note and temporary file under the cache's note directories (never other files)."""
        try:
            tops = [d for d in os.scandir(self.root) if DIR_NAME.match(d.name) and d.is_dir(follow_symlinks=False)]
        except (FileNotFoundError, NotADirectoryError):
            return
        for top in tops:
            try:
                subdirs = [d for d in os.scandir(top.path) if d.name.isdigit() and d.is_dir(follow_symlinks=False)]
            except OSError:
                continue
            for sub in subdirs:
                try:
                    files = list(os.scandir(sub.path))
                except OSError:
                    continue
                for f in files:
                    tmp = f.name.startswith(".") and f.name.endswith(".tmp")
                    if not (tmp or f.name.endswith(".note")):
                        continue
                    try:
                        st = f.stat(follow_symlinks=False)
                    except OSError:  # evicted by another process meanwhile
                        continue
                    yield Entry(Path(f.path), st.st_size, st.st_mtime_ns, tmp)

    def usage(self) -> dict[str, tuple[int, int]]:
        """Per note directory (preset hash and rate): ``(notes, bytes)``."""
        found: dict[str, tuple[int, int]] = {}
        for e in self.entries():
            name = e.path.parent.parent.name
            n, size = found.get(name, (0, 0))
            found[name] = (n + (not e.tmp), size + e.size)
        return found

    @property
    def size(self) -> int:
        """Bytes held (notes and temporary files)."""
        return sum(e.size for e in self.entries())

    def trim(self, max_bytes: int | None = None) -> int:
        """Evict the least recently used notes until the cache holds at most ``max_bytes`` (default:
        its bound), and temporary files older than an hour; returns the bytes freed."""
        limit = self.max_bytes if max_bytes is None else int(max_bytes)
        with self._lock:
            self._written = 0
        now = time.time_ns()
        entries, freed = [], 0
        for e in self.entries():
            if e.tmp and now - e.used > STALE_TMP * 1e9:
                freed += _unlink(e.path) and e.size
            elif not e.tmp:
                entries.append(e)
        total = sum(e.size for e in entries)
        entries.sort(key=lambda e: e.used)
        for e in entries:
            if total <= limit:
                break
            total -= e.size
            freed += _unlink(e.path) and e.size
        return freed

    def clear(self) -> int:
        """Delete every note (of every preset and rate), and the presets parsed before (see
        :func:`sing_synth.preset.parse`); returns the bytes of notes freed."""
        freed = self.size
        try:
            tops = [d for d in os.scandir(self.root) if DIR_NAME.match(d.name) and d.is_dir(follow_symlinks=False)]
        except (FileNotFoundError, NotADirectoryError):
            return 0
        for top in tops:
            shutil.rmtree(top.path, ignore_errors=True)
        parsed = self.root / PARSED_DIR
        if parsed.is_dir() and not parsed.is_symlink():
            for f in parsed.glob("*.json"):
                _unlink(f)
        return freed

    def _wrote(self, n: int) -> None:
        with self._lock:
            self._written += n
            due = self._written >= min(TRIM_EVERY, max(self.max_bytes // 8, 1))
        if due:
            self.trim()


class NoteStore:
    """The notes of one preset at one rate (and precision) in a :class:`DiskCache`."""

    def __init__(self, cache: DiskCache, directory: Path, samples: int | None = None) -> None:
        self.cache = cache
        self.dir = directory
        self.samples = samples  # the length of every note (None: not checked)
        self.written = 0  # statistics: notes written, notes found damaged
        self.damaged = 0

    def path(self, key: Key) -> Path:
        i, p, v = key
        return self.dir / str(int(i)) / f"{int(p)}-{int(v)}.note"

    def __contains__(self, key) -> bool:
        return self.path(key).is_file()

    def read(self, key: Key, alloc: Callable[[int], np.ndarray | None]) -> str:
        """Read a note into the float32 row ``alloc(samples)`` hands out (None: no room now).

        Returns :data:`LOADED`, :data:`MISSING` (not on disk), :data:`DAMAGED` (the file was
        damaged, truncated, foreign or of another length than the store's notes: it is deleted,
        and the row's content is undefined) or :data:`NO_ROOM`. A loaded note is marked as just
        used."""
        path = self.path(key)
        try:
            with open(path, "rb") as f:
                header = note_file.read_header(f)
                if header is None or (self.samples is not None and header[0] != self.samples):
                    ok = False
                else:
                    n, crc = header
                    row = alloc(n)
                    if row is None:
                        return NO_ROOM
                    ok = len(row) == n and note_file.read_samples(f, row, crc)
        except FileNotFoundError:
            return MISSING
        except OSError:
            ok = False
        if not ok:
            self.damaged += 1
            _unlink(path)
            return DAMAGED
        try:
            os.utime(path)  # its last use: the least recently used notes are evicted first
        except OSError:
            pass
        return LOADED

    def write(self, key: Key, wav: np.ndarray) -> bool:
        """Keep a note on disk (atomically); False when it cannot be written (a read-only or full
        disk only costs the next render its speed). A cache bounded to 0 bytes keeps nothing."""
        if self.cache.max_bytes <= 0:
            return False
        wav = np.ascontiguousarray(wav, dtype=np.float32).reshape(-1)
        try:
            note_file.write(self.path(key), wav)
        except OSError:
            return False
        self.written += 1
        self.cache._wrote(note_file.HEADER.size + wav.nbytes)
        return True


def _unlink(path: Path) -> bool:
    try:
        os.unlink(path)
        return True
    except OSError:
        return False
