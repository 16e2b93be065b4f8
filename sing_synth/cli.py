"""The ``sing-synth`` command line: every parser (the commands' bodies in ``commands``); library errors become one-line messages.

    sing-synth --midi-in "Keystation" --instrument 412     play live (the default command)
    sing-synth render song.mid [-o song.wav]                render a MIDI file
    sing-synth note [--morph B [C D] --position X [Y]]      render single notes, or blends
    sing-synth --instrument A --morph B [C D]               play or render a morph moved by CC16 [CC17]
    sing-synth learn DIR --name "My Cello"                  a new instrument from recorded notes
    sing-synth presets | instruments [QUERY] | ports | devices
    sing-synth cache [clear]                                the note cache on disk

One meaning per flag: ``--device`` is the audio output (``play``), ``--model-device`` is where the
model runs (``play``, ``render``, ``note``). The library raises :class:`~sing_synth.errors.SingError`
with the setting at fault; :func:`explain` adds how to change that setting on this command line.
"""

from __future__ import annotations

import argparse
import sys

from . import __version__, commands, loudness, render, signals
from .audio_file import FORMATS
from .effects import SETTINGS, describe
from .errors import SingError
from .midi_in import APIS
from .morph import DEFAULT_CCS, DEFAULT_STEPS

# the commands (their bodies in commands.py), in the order of the help
COMMANDS = ("play", "render", "note", "learn", "presets", "instruments", "ports", "devices", "cache")

# how to change a setting named by an error, where a bare "change --flag" would say too little
HINTS = {
    "preset": "see `sing-synth presets`; choose one with --preset NAME_OR_DIR",
    "instrument": "see `sing-synth instruments`",
    "midi_in": "see `sing-synth ports`; choose one with --midi-in NAME, or open one with --virtual",
    "midi_api": f"the MIDI API is set with --midi-api ({', '.join(APIS)})",
    "device": "see `sing-synth devices`; choose one with --device NAME_OR_INDEX",
    "model_device": "choose one with --model-device (auto, cpu, cuda, cuda:N)",
    "lenient": "--lenient renders what can be read",
    "output": "choose another with -o",
}


# Parsers -------------------------------------------------------------------------------
def preset_options() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--preset", help="preset name or directory (default: the bundled default preset)")
    return p


def model_options() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("model")
    g.add_argument(
        "--model-device", default="auto", help="where the model runs: auto (CUDA if available), cpu, cuda, cuda:N"
    )
    g.add_argument("--precision", default="float32", choices=("float32", "bfloat16", "float16"),
                   help="model precision (float16: CUDA only)")
    return p


def cache_options() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("note cache on disk (shared by play and render)")
    g.add_argument(
        "--cache-dir", help="its directory (default: $SING_SYNTH_CACHE, else $XDG_CACHE_HOME/sing-synth)"
    )
    g.add_argument(
        "--cache-size", metavar="SIZE",
        help="most disk space for cached notes, e.g. 4G or 500M; the least recently used go first "
        "(default: $SING_SYNTH_CACHE_SIZE, else 4G)",
    )
    return p


def effect_options() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group(
        "effects", "reverb and chorus buses, on by default; each channel sends to them at its CC91 and CC93 "
        "levels (General MIDI's defaults: 40 and 0)",
    )
    g.add_argument("--no-reverb", action="store_true", help="no reverb bus (CC91 then does nothing)")
    g.add_argument("--no-chorus", action="store_true", help="no chorus bus (CC93 then does nothing)")
    for name, (_, _, default, unit, what) in SETTINGS.items():
        g.add_argument(
            "--" + name.replace("_", "-"), type=float, default=default, metavar=unit.upper() or "X",
            help=f"{what}: {describe(name)}",
        )
    return p


def morph_options() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group(
        "morph", "blend --instrument (position 0) with other instruments on every melodic channel; "
        "each channel's position comes from its MIDI controllers, and applies to the notes started after it moves",
    )  # fmt: skip
    g.add_argument("--morph", nargs="+", metavar="INSTRUMENT",
                   help="B (a line from --instrument to B) or B C D (a square: --instrument at (0, 0), B (1, 0), C (0, 1), D (1, 1))")
    g.add_argument("--morph-cc", type=int, nargs="+", default=list(DEFAULT_CCS), metavar="CC",
                   help="the controllers of the position, X [Y], value 0-127 for 0-1 (default 16 17)")
    morph_steps_option(g)
    return p


def morph_steps_option(p) -> None:
    p.add_argument("--morph-steps", type=int, default=DEFAULT_STEPS, metavar="N",
                   help=f"positions are quantised to 1/N per axis, each made once and cached (default {DEFAULT_STEPS})")


def no_cache_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the note cache on disk")


def latency_arg(value: str) -> str | float:
    """PortAudio's latency: ``low``, ``high`` or seconds (anything else is refused by the session)."""
    try:
        return float(value)
    except ValueError:
        return value


def duration_arg(value: str) -> float:
    """Seconds, from ``90``, ``90s``, ``30m`` or ``4h``."""
    text = value.strip().lower()
    scale = {"s": 1.0, "m": 60.0, "h": 3600.0}.get(text[-1:])
    try:
        return float(text[:-1] if scale else text) * (scale or 1.0)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a duration: give seconds (90), minutes (30m) or hours (4h)"
        ) from None


def add_play_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("MIDI input")
    g.add_argument("--midi-in", metavar="NAME", help="input port: case-insensitive part of its name")
    g.add_argument("--virtual", action="store_true", help="open a virtual input port named sing-synth")
    g.add_argument("--midi-api", choices=APIS, help="rtmidi API (default: the first that works: ALSA, then JACK)")
    g.add_argument("--channel", type=int, help="only listen to this MIDI channel (1-16)")
    g = p.add_argument_group("sound")
    g.add_argument("--instrument", help="instrument id or name for every melodic channel (default: GM programs)")
    g.add_argument("--polyphony", type=int, default=64, help="most voices at once (default 64)")
    g.add_argument("--gain", type=float, default=0.5, help="master gain, linear (default 0.5)")
    g = p.add_argument_group("audio output")
    g.add_argument("--device", help="output device: index or part of its name (default: the system's)")
    g.add_argument("--rate", type=int, help="sample rate (default: the device's)")
    g.add_argument("--blocksize", type=int, default=256,
                   help="frames per callback (default 256): larger blocks cost latency (one block from a key to "
                        "its sound) and buy time: a busy machine clicks less often at 512 than at 128")
    g.add_argument("--latency", type=latency_arg, default="low",
                   help="PortAudio output latency: low, high or seconds (default low); more buffering adds to the "
                        "key-to-sound delay and lets the device ride out a late callback (ALSA, CoreAudio; "
                        "JACK's own period sets it there)")
    g = p.add_argument_group("note cache")
    no_cache_option(g)
    g.add_argument("--cache-memory", type=float, default=2.0, help="memory for rendered notes, GiB (default 2)")
    g.add_argument(
        "--threads", type=int, default=1,
        help="torch threads of the renderer while playing (default 1: a core stays free for audio; start-up uses the free cores)",
    )
    p.add_argument("--ready-file", metavar="PATH", help="create this file once the instrument is playing")


def add_render_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("midi", metavar="song.mid", help="the MIDI file to render (type 0 or 1)")
    p.add_argument("-o", "--output", help="output file, .wav or .flac (default: song.wav beside the input)")
    p.add_argument("--rate", type=int, default=44100, help="output sample rate in Hz (default 44100)")
    p.add_argument(
        "--format", choices=FORMATS, default="pcm16", help="sample format: pcm16 (default), pcm24, or float (WAV only)"
    )
    p.add_argument("--instrument", help="play every melodic channel with this instrument (id or name)")
    p.add_argument("--polyphony", type=int, default=64, help="most voices sounding at once (default 64)")
    p.add_argument("--gain", type=float, default=0.5, help="master gain, a linear factor (default 0.5)")
    p.add_argument("--tail", type=float, default=10.0, help="longest tail after the last event, seconds (default 10)")
    p.add_argument("--lenient", action="store_true", help="render what can be read from a truncated or corrupt file")
    p.add_argument(
        "--max-length", type=duration_arg, default=render.DEFAULT_MAX_LENGTH, metavar="DURATION",
        help="refuse songs longer than this: seconds, or 30m, 4h (default 4h)",
    )
    p.add_argument("--batch-size", type=int, default=64, help="notes per model batch (default 64)")
    p.add_argument(
        "--cache-memory", type=float, default=render.DEFAULT_NOTE_MEMORY / (1 << 30), metavar="GIB",
        help="memory for rendered notes, GiB (default 0.5); a song that needs more has them made as it plays",
    )
    no_cache_option(p)
    p.add_argument(
        "--threads", type=int, help="torch threads on the CPU (default: the cores not busy, from the load average)"
    )
    g = p.add_argument_group("loudness and stems")
    lo, hi = loudness.TARGET_RANGE
    g.add_argument(
        "--normalize", type=float, metavar="LUFS",
        help=f"scale the whole render to this integrated loudness (ITU-R BS.1770), {lo:g} to {hi:g} LUFS, e.g. -16 "
        "(streaming) or -23 (EBU R 128); a limiter holds the true peak under --true-peak",
    )
    lo, hi = loudness.CEILING_RANGE
    g.add_argument(
        "--true-peak", type=float, default=loudness.DEFAULT_CEILING, metavar="DBTP",
        help=f"highest true peak of a normalised render, {lo:g} to {hi:g} dBTP (default {loudness.DEFAULT_CEILING:g})",
    )
    g.add_argument(
        "--stems", action="store_true",
        help="also write one file per MIDI channel that sounds, beside the output (song-ch01-piano.wav, ...): "
        "sample-aligned, with its own reverb and chorus; they add up to the mix",
    )


def add_note_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--instrument", default="0", help="instrument id or name (default 0)")
    p.add_argument("--pitch", type=int, nargs="+", default=[60], help="MIDI pitches 0-127 (default 60)")
    p.add_argument("--velocity", type=int, default=100, help="MIDI velocity 1-127 (default 100)")
    p.add_argument("--rate", type=int, default=44100, help="output sample rate (default 44100)")
    p.add_argument("-o", "--output", default="note.wav", help="output WAV file (default note.wav)")
    p.add_argument("--morph", nargs="+", metavar="INSTRUMENT",
                   help="blend --instrument with B (a line) or with B C D (a square; --instrument at (0, 0))")
    p.add_argument("--position", type=float, nargs="+", default=[0.5], metavar="X",
                   help="position of the blend, 0-1 per axis (default 0.5): X on a line, X Y on a square")
    morph_steps_option(p)


def add_learn_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("recordings", help="folder of recorded notes (WAV, FLAC, ...; pitch from the name like C4 or 60, else estimated)")
    p.add_argument("--name", required=True, help="name of the new instrument")
    p.add_argument("-o", "--output", help="preset directory to write (default: the user presets folder)")
    p.add_argument("--max-steps", type=int, default=300, help="most optimisation steps, 1-10000 (default 300)")


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sing-synth",
        description="A MIDI instrument whose notes are generated by SING, a neural network.",
        epilog="Without a command, sing-synth plays live: sing-synth --midi-in NAME --instrument 412",
    )
    parser.add_argument("--version", action="version", version=f"sing-synth {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    rendering = [preset_options(), model_options()]
    cached = [*rendering, cache_options(), effect_options(), morph_options()]
    add_play_arguments(sub.add_parser("play", parents=cached, help="play live from a MIDI input (the default command)"))
    add_render_arguments(sub.add_parser("render", parents=cached, help="render a MIDI file to WAV or FLAC"))
    add_note_arguments(sub.add_parser("note", parents=rendering, help="render single notes to a WAV file"))
    add_learn_arguments(sub.add_parser("learn", parents=rendering, help="learn a new instrument from recorded notes"))
    sub.add_parser("presets", help="list the installed presets")
    inst = sub.add_parser("instruments", parents=[preset_options()], help="list a preset's instruments")
    inst.add_argument("query", nargs="?", default="", help="case-insensitive filter on name, family, source")
    ports = sub.add_parser("ports", help="list MIDI inputs")
    ports.add_argument("--midi-api", choices=APIS, help="rtmidi API (default: the first that works)")
    sub.add_parser("devices", help="list audio outputs")
    cache = sub.add_parser("cache", parents=[cache_options()], help="the note cache on disk: where, how big; clear it")
    cache.add_argument("action", nargs="?", choices=("show", "clear"), default="show",
                       help="show (default): location, size and contents; clear: delete every cached note")
    return parser


# Entry point ---------------------------------------------------------------------------
def explain(exc: SingError, args: argparse.Namespace) -> str:
    """The error's message, and how to change the setting at fault when this command has a flag for it."""
    setting = getattr(exc, "setting", None)
    if setting is None or setting not in vars(args):
        return str(exc)
    return f"{exc}; {HINTS.get(setting) or 'change --' + setting.replace('_', '-')}"


def with_default_command(argv: list[str]) -> list[str]:
    """``play`` is the default command: ``sing-synth --midi-in X`` means ``sing-synth play --midi-in X``."""
    if not argv or (argv[0] not in COMMANDS and argv[0] not in ("-h", "--help", "--version")):
        return ["play", *argv]
    return list(argv)


def main(argv=None) -> int:
    argv = with_default_command(list(sys.argv[1:] if argv is None else argv))
    args = get_parser().parse_args(argv)
    try:
        with signals.raising():  # SIGINT, SIGTERM, SIGHUP: a clean stop, exit 128 + the signal
            return commands.RUN[args.command](args)
    except SingError as exc:
        print(f"sing-synth: error: {explain(exc, args)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as exc:
        print(f"sing-synth: stopped by {signals.name(exc)}", file=sys.stderr)
        return signals.exit_code(exc)


if __name__ == "__main__":
    sys.exit(main())
