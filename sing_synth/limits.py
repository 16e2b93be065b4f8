"""The ranges of the settings that rendering and live play share, checked in one place.

Each check raises a :class:`~sing_synth.errors.ConfigError` naming the value, its range and the
setting at fault, before anything starts. No torch here: a model device is checked by its name.
"""

from __future__ import annotations

import math
import os
import re

from .errors import ConfigError

RATES = (8000, 192000)  # output sample rates, Hz
MAX_GAIN = 16.0
MAX_THREADS = 1024
MODEL_DEVICE = re.compile(r"^(auto|cpu|cuda|cuda:\d+)$")


def check_rate(rate, setting: str | None = "rate") -> None:
    if not RATES[0] <= rate <= RATES[1]:
        raise ConfigError(
            f"sample rate {rate} out of range; use {RATES[0]}-{RATES[1]} (for example 44100 or 48000)", setting
        )


def check_gain(gain: float) -> None:
    if not (math.isfinite(gain) and 0.0 < gain <= MAX_GAIN):
        raise ConfigError(
            f"gain {gain} out of range; use a linear factor above 0 and at most {MAX_GAIN:g} (default 0.5)", "gain"
        )


def check_threads(threads: int | None) -> None:
    if threads is not None and not 1 <= threads <= MAX_THREADS:
        raise ConfigError(f"{threads} threads out of range; use 1-{MAX_THREADS}", "threads")


def check_model_device(device: str | None) -> None:
    if device is not None and not MODEL_DEVICE.match(str(device)):
        raise ConfigError(f"unknown model device {device!r}: use auto, cpu, cuda or cuda:N", "model_device")


def check_note_memory(gib: float, setting: str = "cache_memory") -> None:
    """Memory for rendered notes, in GiB: at least 0.001 GiB (1 MiB), at most the machine's memory."""
    total = physical_memory()
    if not (math.isfinite(gib) and gib >= 0.001 and (total is None or gib * 2**30 <= total)):
        most = f" and at most this machine's {total / 2**30:.1f} GiB" if total else ""
        raise ConfigError(f"note memory of {gib:g} GiB out of range; give at least 0.001 GiB{most}", setting)


def cores() -> int:
    """CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def physical_memory() -> int | None:
    """Bytes of memory of this machine (None where the system does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):
        return None
