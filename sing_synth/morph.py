"""Morphing between instruments: positions on a line (two instruments) or a square (four).

SING's instruments are points of a learned embedding space, so a blend of instruments is a
blend of their embeddings, fed to the network like any instrument. A :class:`Morph` names the
corners (instrument ids ``a, b`` or ``a, b, c, d``: ``a`` at (0, 0), ``b`` at (1, 0), ``c`` at
(0, 1), ``d`` at (1, 1), as NSynth Super's pad) and quantises positions to ``steps`` per axis,
so that a position is a finite, cacheable note source. Each quantised position has a *virtual
instrument id*, stable across processes (the note cache keys notes by it), whose embedding is
the bilinear blend of the corners; position 0 and 1 are the corners themselves (exactly: the
blend of a corner with weight 1 is that corner's own id). The renderer resolves the blends
(``NoteRenderer.add_blends``); to everything else (note caches in memory and on disk, stand-ins,
the engine) a position is just another instrument id.

Played (live and in a render), a morph is a :class:`MorphControl`: MIDI controllers move each
channel's position (``x`` by the first controller, ``y`` by the second on a square; value / 127,
quantised; default CC16 and CC17, General Purpose Controllers 1 and 2), reset to (0, 0) with
the other controllers (CC121, a system reset). A note started on a channel playing the morph's
first instrument plays the channel's position; sounding notes keep theirs. Its tables are made
once, so the audio thread only indexes lists. Stand-ins: the positions of a morph (its corners
included) stand in for each other (:meth:`Morph.neighbours`, used by :mod:`sing_synth.note_source`).
Torch-free.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from . import events as ev
from .errors import ConfigError

DEFAULT_STEPS = 16  # positions 0, 1/16, ..., 1 on each axis
DEFAULT_CCS = (16, 17)  # General Purpose Controllers 1 and 2: x (the line), y (the square)
VIRTUAL_BASE = 1 << 24  # virtual ids live above any real instrument id
MAX_NEAR = 24  # positions a stand-in search looks at, nearest first (the corners always)


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

    def neighbours(self) -> dict[int, tuple[tuple[int, ...], tuple[int, ...]]]:
        """Id of every grid position (corners included) -> (the :data:`MAX_NEAR` nearest other
        positions, nearest first, then any corner not among them; the other corners, nearest first):
        where the stand-in rule looks for a note of a position that is not made yet."""
        n = self.steps + 1
        ids = {q: self.instrument(*q) for q in self.grid()}
        ends = [(0, 0), (self.steps, 0), (0, self.steps), (self.steps, self.steps)][: len(self.corners)]
        # offsets by distance (ties: lower row, then lower column): the 24 nearest of any position
        # lie within 7 steps (a corner position has a quarter of the disc)
        reach = range(-7, 8) if self.square else (0,)
        offsets = sorted(((dx, dy) for dx in range(-MAX_NEAR, MAX_NEAR + 1) for dy in reach
                          if dx * dx + dy * dy <= (49 if self.square else MAX_NEAR**2) and (dx, dy) != (0, 0)),
                         key=lambda d: (d[0] ** 2 + d[1] ** 2, d[1], d[0]))  # fmt: skip
        out = {}
        for (qx, qy), own in ids.items():
            near = []
            for dx, dy in offsets:
                if 0 <= qx + dx < n and 0 <= qy + dy < n and len(near) < MAX_NEAR:
                    near.append(ids[(qx + dx, qy + dy)])
            order = lambda q: ((q[0] - qx) ** 2 + (q[1] - qy) ** 2, q[1], q[0])  # noqa: B023, E731
            corners = [ids[q] for q in sorted(ends, key=order) if q != (qx, qy)]
            out[own] = (tuple(near + [c for c in corners if c not in near]), tuple(corners))
        return out


def check_controllers(ccs, square: bool) -> tuple[int, ...]:
    """The controllers of a morph's position (x, and y on a square), checked: 0-127, distinct,
    none the instrument uses for something else (volume, pedals, ...)."""
    ccs = tuple(int(c) for c in ccs)
    need = 2 if square else 1
    if len(ccs) not in (need, 2) or not ccs:
        raise ConfigError(
            f"a morph of {4 if square else 2} instruments takes {need} controller{'s' if square else ''} "
            f"({'X Y' if square else 'X'}), not {len(ccs)}", "morph_cc",
        )  # fmt: skip
    ccs = ccs[:need]
    for cc in ccs:
        if not 0 <= cc <= 127:
            raise ConfigError(f"controller {cc} out of range: use 0-127 (default {DEFAULT_CCS[0]})", "morph_cc")
        if cc in ev.ENGINE_CCS:
            raise ConfigError(
                f"controller {cc} already has a meaning here (volume, pan, pedals, sends, ...): choose a free one "
                "such as 16-19 (General Purpose) or 1 (modulation)", "morph_cc",
            )  # fmt: skip
    if len(set(ccs)) != len(ccs):
        raise ConfigError(f"the morph's two controllers must differ, not both {ccs[0]}", "morph_cc")
    return ccs


def resolve(preset, instrument, others, steps: int = DEFAULT_STEPS) -> Morph:
    """The morph from ``instrument`` (an id, name or Instrument of ``preset``: its first corner,
    position 0) to ``others`` (ids or names: B, or B C D)."""
    if instrument is None:
        raise ConfigError("a morph starts from --instrument (position 0): give --instrument A with --morph B", "morph")
    first = instrument if hasattr(instrument, "id") else preset.instrument(instrument)
    return Morph((int(first.id), *(int(preset.instrument(q).id) for q in others)), int(steps))


class MorphControl:
    """A morph played from MIDI controllers (``ccs``: x, and y on a square), with the tables the
    engine indexes: CC value -> grid index, grid position -> instrument id."""

    def __init__(self, morph: Morph, ccs=DEFAULT_CCS) -> None:
        ccs = check_controllers(ccs, morph.square)
        if morph.steps > 127:
            raise ConfigError(f"morph steps {morph.steps}: a controller has 128 values, use 1-127", "morph_steps")
        self.morph = morph
        self.base = morph.corners[0]  # the channels playing it play the morph
        self.cc_x, self.cc_y = ccs[0], (ccs[1] if morph.square else -1)
        self.ccs = ccs
        self.index = [morph.quantise(v / 127.0)[0] for v in range(128)]
        ys = range(morph.steps + 1) if morph.square else (0,)
        self.ids = [[morph.instrument(qx, qy) for qx in range(morph.steps + 1)] for qy in ys]

    def move(self, channel, cc: int, value: int, source=None) -> bool | None:
        """Controller ``cc`` at ``value`` on ``channel``: None when it is not one of the morph's, else
        whether the channel's position (``channel.morph_x``, ``morph_y``: grid indices) moved. A
        channel playing the morph that moves asks ``source`` (a note source) at once for its last
        note (``channel.last_pitch``, ``last_class``) at the new position: likely the next played."""
        if cc == self.cc_x:
            moved = self.index[value] != channel.morph_x
            channel.morph_x = self.index[value]
        elif cc == self.cc_y:
            moved = self.index[value] != channel.morph_y
            channel.morph_y = self.index[value]
        else:
            return None
        if moved and source is not None and channel.last_pitch >= 0 and channel.instrument == self.base:
            source.request(self.playing(channel), channel.last_pitch, channel.last_class)
        return moved

    def playing(self, channel) -> int:
        """The instrument a note started on ``channel`` plays: the channel's position when it plays
        the morph's first instrument, else its own instrument."""
        if channel.instrument != self.base:
            return channel.instrument
        return self.ids[channel.morph_y][channel.morph_x]
