"""The ``sing-synth`` command line: every parser and command; library errors become one-line messages.

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
from dataclasses import fields

import numpy as np

from . import __version__, limits, loudness, render, signals
from . import preset as presets
from .audio_file import FORMATS, check_output
from .disk_cache import DiskCache
from .effects import SETTINGS, EffectSettings, describe
from .errors import ConfigError, SingError
from .listing import cmd_cache, cmd_devices, cmd_instruments, cmd_ports, cmd_presets
from .midi_in import APIS
from .morph import DEFAULT_CCS, DEFAULT_STEPS, resolve

# the live session (PortAudio), the render and the renderer (torch) are imported by the commands that use them
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


def effect_settings(args) -> EffectSettings:
    """The :class:`EffectSettings` the effect options name (checked: a value out of range is refused)."""
    settings = EffectSettings(
        reverb=not args.no_reverb, chorus=not args.no_chorus, **{name: getattr(args, name) for name in SETTINGS}
    )
    settings.check()
    return settings


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


# Commands ------------------------------------------------------------------------------
def disk_cache(args) -> DiskCache | bool:
    """The note cache on disk that ``--cache-dir``, ``--cache-size`` and ``--no-cache`` name."""
    if getattr(args, "no_cache", False):
        return False
    return DiskCache(args.cache_dir, args.cache_size)


def cmd_play(args) -> int:
    from . import live

    disk_cache(args)  # a bad --cache-size is refused before anything opens
    args.effects = effect_settings(args)
    return live.play(live.LiveOptions(**{f.name: getattr(args, f.name) for f in fields(live.LiveOptions)}))


def cmd_render(args) -> int:
    result = render.render_file(
        args.midi,
        args.output,
        args.preset,
        rate=args.rate,
        fmt=args.format,
        instrument=args.instrument,
        polyphony=args.polyphony,
        gain=args.gain,
        tail=args.tail,
        lenient=args.lenient,
        model_device=args.model_device,
        precision=args.precision,
        batch_size=args.batch_size,
        threads=args.threads,
        max_length=args.max_length,
        memory_bytes=args.cache_memory * (1 << 30),
        cache=disk_cache(args),
        effects=effect_settings(args),
        normalize=args.normalize,
        true_peak=args.true_peak,
        stems=args.stems,
        morph=args.morph,
        morph_cc=args.morph_cc,
        morph_steps=args.morph_steps,
    )
    s = result.stats
    extra = f", {s['voices_stolen']} voices stolen" if s["voices_stolen"] else ""
    cached = f", {result.notes_loaded} from the cache" if result.notes_loaded else ""
    level = ""
    if result.loudness is not None:
        n = result.loudness
        held = f", limiter up to {n.limited_db:.1f} dB" if n.limited_db > 0.05 else ""
        level = (f", loudness {n.before_lufs:.1f} -> {n.after_lufs:.1f} LUFS (true peak {n.before_peak_db:.1f} -> "
                 f"{n.after_peak_db:.1f} dBTP{held})")
    stems = f", {len(result.stems)} stems beside it" if args.stems else ""
    speed = result.realtime_factor
    pace = f"{speed:.0f}" if speed >= 10 else f"{speed:.2g}"  # a flood of notes renders slower than real time
    print(
        f"wrote {result.path} ({result.duration:.1f} s at {result.rate} Hz, {args.format}): "
        f"{result.notes_rendered} of {result.notes_needed} notes rendered in {result.note_seconds:.1f} s{cached}, "
        f"{s['notes_played']} played{extra}{level}{stems}, {pace}x real time"
    )
    return 0


def cmd_note(args) -> int:
    from .audio_file import write_audio
    from .renderer import NoteRenderer  # torch

    limits.check_rate(args.rate, None)
    limits.check_model_device(args.model_device)
    check_output(args.output)  # before the notes are rendered
    p = presets.load(args.preset)
    inst = p.instrument(args.instrument)
    if not 1 <= args.velocity <= 127:
        raise ConfigError(f"velocity {args.velocity} out of range: use 1-127")
    for pitch in args.pitch:
        if not 0 <= pitch <= 127:
            raise ConfigError(f"pitch {pitch} out of range: use 0-127")
    renderer = NoteRenderer(p, device=args.model_device, precision=args.precision, output_rate=args.rate)
    played, what = inst.id, inst.name
    if args.morph:
        morph = resolve(p, inst, args.morph, args.morph_steps)
        corners = morph.corners
        if len(args.position) != (2 if morph.square else 1) or not all(0 <= x <= 1 for x in args.position):
            raise ConfigError(f"--position takes {'X Y' if morph.square else 'X'} in 0-1 for a morph of {len(corners)} instruments")
        q = morph.quantise(*args.position)
        played = morph.instrument(*q)
        renderer.add_blends({played: morph.weights(*q)} if played not in renderer.ids else {})
        names = " / ".join(p.instrument(i).name for i in corners)
        what = f"{names} at {', '.join(f'{v / morph.steps:g}' for v in q[: 2 if morph.square else 1])}"
    audio = np.concatenate([renderer.render_velocity(played, pitch, args.velocity) for pitch in args.pitch])
    write_audio(args.output, audio, args.rate)
    print(f"wrote {args.output}: {what}, pitches {' '.join(map(str, args.pitch))}, velocity {args.velocity}")
    return 0


def cmd_learn(args) -> int:
    from .learn import learn
    from .progress import Progress

    if not 1 <= args.max_steps <= 10000:
        raise ConfigError(f"--max-steps {args.max_steps} out of range: use 1-10000")
    out = learn(args.recordings, args.name, base=args.preset, output=args.output, device=args.model_device,
                max_steps=args.max_steps, progress=Progress(every=10.0))
    learned = presets.load(out)
    info = learned.training["learned"]
    print(f"wrote preset {learned.name} ({out}): {args.name!r} learned from {len(info['notes'])} notes in "
          f"{info['steps']} steps (loss {info['loss_start']:.4f} -> {info['loss_end']:.4f}, started from "
          f"{info['started_from']!r}); play it with --preset {out} --instrument {args.name!r}")
    return 0


RUN = {
    "play": cmd_play,
    "render": cmd_render,
    "note": cmd_note,
    "learn": cmd_learn,
    "presets": cmd_presets,
    "instruments": cmd_instruments,
    "ports": cmd_ports,
    "devices": cmd_devices,
    "cache": cmd_cache,
}


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
            return RUN[args.command](args)
    except SingError as exc:
        print(f"sing-synth: error: {explain(exc, args)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as exc:
        print(f"sing-synth: stopped by {signals.name(exc)}", file=sys.stderr)
        return signals.exit_code(exc)


if __name__ == "__main__":
    sys.exit(main())
