"""Morphing between instruments: positions on a line (two instruments) or a square (four).

SING's instruments are points of a learned embedding space, so a blend of instruments is a
blend of their embeddings, fed to the network like any instrument. A :class:`Morph` names the
corners (instrument ids ``a, b`` or ``a, b, c, d``: ``a`` at (0, 0), ``b`` at (1, 0), ``c`` at
(0, 1), ``d`` at (1, 1), as NSynth Super's pad) and quantises positions to ``steps`` per axis,
so that a position is a finite, cacheable note source. Each quantised position has a *virtual
instrument id*, stable across processes (the note cache keys notes by it), whose embedding is
the bilinear blend of the corners; position 0 and 1 are the corners themselves (exactly: the
blend of a corner with weight 1 is that corner's own id). Torch-free: the renderer resolves the
blends (``NoteRenderer.blends``).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from .errors import ConfigError

DEFAULT_STEPS = 16  # positions 0, 1/16, ..., 1 on each axis
DEFAULT_CCS = (16, 17)  # General Purpose Controllers 1 and 2: x (the line), y (the square)
VIRTUAL_BASE = 1 << 24  # virtual ids live above any real instrument id


@dataclass(frozen=True)
class Morph:
    corners: tuple[int, ...]  # 2 (a line) or 4 (a square) instrument ids
    steps: int = DEFAULT_STEPS

    def __post_init__(self):
        if len(self.corners) not in (2, 4):
            raise ConfigError(f"a morph blends 2 or 4 instruments, not {len(self.corners)}", "morph")
        if len(set(self.corners)) != len(self.corners):
            raise ConfigError("the instruments of a morph must be different", "morph")
        if not 1 <= self.steps <= 1024:
            raise ConfigError(f"morph steps {self.steps} out of range 1-1024", "morph_steps")

    @property
    def square(self) -> bool:
        return len(self.corners) == 4

    def quantise(self, x: float, y: float = 0.0) -> tuple[int, int]:
        """A position in [0, 1] (per axis) -> grid indices 0..steps."""
        q = lambda v: int(round(min(1.0, max(0.0, float(v))) * self.steps))  # noqa: E731
        return q(x), (q(y) if self.square else 0)

    def weights(self, qx: int, qy: int = 0) -> list[tuple[int, float]]:
        """(instrument id, weight) of grid position (qx, qy); zero weights left out."""
        x, y = qx / self.steps, qy / self.steps
        if self.square:
            a, b, c, d = self.corners
            pairs = [(a, (1 - x) * (1 - y)), (b, x * (1 - y)), (c, (1 - x) * y), (d, x * y)]
        else:
            a, b = self.corners
            pairs = [(a, 1 - x), (b, x)]
        return [(i, w) for i, w in pairs if w > 0]

    def instrument(self, qx: int, qy: int = 0) -> int:
        """The id that plays grid position (qx, qy): a corner's own id, else a virtual id."""
        w = self.weights(qx, qy)
        if len(w) == 1:
            return w[0][0]
        key = f"{','.join(map(str, self.corners))}/{self.steps}:{qx},{qy}".encode()
        return VIRTUAL_BASE + (zlib.crc32(key) & 0x3FFFFFFF)

    def grid(self):
        """Every (qx, qy) of the grid."""
        ys = range(self.steps + 1) if self.square else (0,)
        return [(qx, qy) for qy in ys for qx in range(self.steps + 1)]

    def blends(self) -> dict[int, list[tuple[int, float]]]:
        """Virtual id -> its corner weights, for every position of the grid that is not a corner."""
        out = {}
        for qx, qy in self.grid():
            i = self.instrument(qx, qy)
            if i >= VIRTUAL_BASE:
                out[i] = self.weights(qx, qy)
        return out
