"""Error types of sing-synth: each message names the problem and the fix, on one line."""

from __future__ import annotations


class SingError(Exception):
    """Base class: the CLI prints the message on one line and exits non-zero."""

    exit_code = 1


class PresetError(SingError):
    """A preset is missing, malformed, or does not match its weights."""


class InstrumentError(SingError):
    """An instrument id or name does not exist (the message lists the closest matches)."""


class MidiFileError(SingError):
    """A MIDI file cannot be read."""


class PortError(SingError):
    """A MIDI port or audio device cannot be found or opened."""


class CacheError(SingError):
    """The note cache cannot be used."""


class ConfigError(SingError):
    """A configuration value is out of range or of the wrong type."""
