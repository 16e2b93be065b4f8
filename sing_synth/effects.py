"""The engine's two shared effect buses, as a General MIDI synth has them: reverb and chorus.

Every voice sends a mono signal to each bus, at its channel's send level (CC91 reverb, CC93
chorus; General MIDI's defaults 40 and 0) times its volume and expression; each bus returns a
stereo signal that is added to the dry mix before the limiter. :class:`EffectSettings` holds
the named, ranged settings; :class:`Effects` is the processing, run by ``Engine.process`` in
the audio callback, so it keeps the callback's contract: every array it works in is made in
``__init__``, a block costs a fixed number of NumPy calls per chunk of at most ``chunk`` frames
(plus, every few dozen blocks, one copy of a delay line's history to its front), no torch, no
lock, no disk. An effect whose input has been silent for longer than its tail is reset and
skipped (its output is then exactly zero: sends at 0 leave the dry mix bit for bit as it was).

Why not a library. Spotify's ``pedalboard`` (JUCE's Reverb and Chorus) was measured first, in
the callback's conditions (``bench/live.py --only effects``, figures in ``bench/RESULTS.md``).
It is faster than this module, about a third of its time per block. But it cannot keep the
callback's contract: ``process`` has no output argument, and every call copies its input into a
new JUCE buffer and returns a new NumPy array (34 ``malloc`` calls per call, and bytes that grow
with the block: 2.9 KB at 128 frames, 4.9 KB at 256, where this module's 14-16 are NumPy's
small change, 2.4-2.7 KB), locks each plugin's ``std::mutex``, releases and
re-takes the GIL and calls ``prepare`` again. And its chorus runs one LFO for both channels: a
centred mono send comes back as identical left and right channels (inter-channel correlation
1.0), so a chorus send could not widen a note. None of this can be changed from Python, so the
effects are written in this package, in NumPy on arrays made in advance: the reverb
(Freeverb-style) in ``reverb``, the chorus in ``chorus``; this module holds their settings and
runs them as buses.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from .chorus import Chorus
from .errors import ConfigError
from .reverb import Reverb
from .reverb_ir import ReverbIR, pays

# name: (low, high, default, unit, what it does); the command line builds its options from this table
SETTINGS = {
    "room_size": (0.0, 1.0, 0.5, "", "reverb room size: how long the reverb lasts"),
    "damping": (0.0, 1.0, 0.4, "", "reverb damping: how much faster high frequencies die away"),
    "reverb_level": (0.0, 1.0, 0.5, "", "reverb return level (wet)"),
    "chorus_depth": (0.0, 20.0, 8.0, "ms", "chorus depth: how far the delay sweeps"),
    "chorus_rate": (0.05, 5.0, 0.3, "Hz", "chorus rate: how fast the delay sweeps"),
    "chorus_level": (0.0, 1.0, 0.5, "", "chorus return level (wet)"),
}


def describe(name: str) -> str:
    """``0-1 (default 0.5)``, ``0.05-5 Hz (default 0.3)``: a setting's range and default."""
    low, high, default, unit, _ = SETTINGS[name]
    unit = f" {unit}" if unit else ""
    return f"{low:g}-{high:g}{unit} (default {default:g})"


@dataclass(frozen=True)
class EffectSettings:
    """The reverb and chorus buses: on or off, and their settings (ranges in ``SETTINGS``)."""

    reverb: bool = True
    room_size: float = SETTINGS["room_size"][2]
    damping: float = SETTINGS["damping"][2]
    reverb_level: float = SETTINGS["reverb_level"][2]
    chorus: bool = True
    chorus_depth: float = SETTINGS["chorus_depth"][2]
    chorus_rate: float = SETTINGS["chorus_rate"][2]
    chorus_level: float = SETTINGS["chorus_level"][2]

    @classmethod
    def dry(cls) -> EffectSettings:
        """Both buses off: the engine's dry output."""
        return cls(reverb=False, chorus=False)

    @property
    def enabled(self) -> bool:
        return self.reverb or self.chorus

    def summary(self) -> str:
        """One line: which buses are on, with their settings."""
        parts = []
        if self.reverb:
            parts.append(
                f"reverb from CC91 (room size {self.room_size:g}, damping {self.damping:g}, level {self.reverb_level:g})"
            )
        if self.chorus:
            parts.append(
                f"chorus from CC93 (depth {self.chorus_depth:g} ms, rate {self.chorus_rate:g} Hz, level {self.chorus_level:g})"
            )
        return ", ".join(parts) if parts else "none (dry)"

    def check(self) -> None:
        """Refuse a value out of its range (``ConfigError`` naming the setting)."""
        for name, value in asdict(self).items():
            if name not in SETTINGS:
                continue
            low, high, _, unit, what = SETTINGS[name]
            if not (isinstance(value, (int, float)) and math.isfinite(value) and low <= value <= high):
                label = name.replace("_", " ")
                shown = f"{value:g}" if isinstance(value, (int, float)) else repr(value)
                raise ConfigError(f"{label} {shown}{' ' + unit if unit else ''} out of range; use {describe(name)}", name)


class Effects:
    """The reverb and chorus buses of an engine (or of its stems, one lane each).

    :meth:`process` takes the block's sends ``(lanes, 2, n)`` (reverb, then chorus) and adds the
    effects' returns to ``out`` ``(lanes, 2, n)`` (left, right). ``offline``: the reverb is
    convolved with its impulse response where that is cheaper (``reverb_ir``: the same samples to
    float rounding, but it allocates: not for the audio callback).
    """

    def __init__(self, settings: EffectSettings, rate: int, max_block: int, lanes: int = 1,
                 offline: bool = False) -> None:
        settings.check()
        self.settings = settings
        self.lanes = lanes
        reverb = ReverbIR if offline and pays(rate, settings.room_size, max_block) else Reverb
        self.reverb = (
            reverb(rate, settings.room_size, settings.damping, settings.reverb_level, max_block, lanes)
            if settings.reverb
            else None
        )
        self.chorus = (
            Chorus(rate, settings.chorus_depth, settings.chorus_rate, settings.chorus_level, max_block, lanes)
            if settings.chorus
            else None
        )
        self._units = [(u, bus) for bus, u in enumerate((self.reverb, self.chorus)) if u is not None]
        self._silent = [-1] * len(self._units)  # frames of silent input; -1: idle (reset, skipped)

    @property
    def active(self) -> bool:
        """Whether an effect is still sounding (its input not silent for longer than its tail)."""
        return any(s >= 0 for s in self._silent)

    def reset(self) -> None:
        """Silence every effect at once (a system reset)."""
        for k, (unit, _) in enumerate(self._units):
            unit.reset()
            self._silent[k] = -1

    def process(self, sends: np.ndarray, out: np.ndarray) -> None:
        n = sends.shape[2]
        for k, (unit, bus) in enumerate(self._units):
            x = sends[:, bus]
            if x.any():
                self._silent[k] = 0
            elif self._silent[k] < 0:
                unit.idle(n)  # its output is exactly zero
                continue
            else:
                self._silent[k] += n
                if self._silent[k] > unit.tail:
                    unit.reset()
                    unit.idle(n)
                    self._silent[k] = -1
                    continue
            unit.process(x, out)
