"""Error types of sing-synth: each message states the problem and the fix, on one line.

Messages speak of the library's own terms (a preset, a MIDI input, a sample rate), never of
command-line flags: an error that a setting can fix names it in ``setting`` (the parameter's
name, e.g. ``"midi_in"``), and the command line (``sing_synth.cli``) adds how to change it there.
"""

from __future__ import annotations


class SingError(Exception):
    """Base class: the CLI prints the message on one line and exits non-zero.

    ``setting``: the parameter whose value is at fault or would fix the problem, or None.
    """

    exit_code = 1

    def __init__(self, message: str, setting: str | None = None) -> None:
        super().__init__(message)
        self.setting = setting


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
