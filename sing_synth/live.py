"""Live play: start-up order, warm-up of the note cache, status line, clean shutdown.

Order: preset -> the MIDI input and audio device are checked (a typo fails at once, not after
the warm-up) -> note cache and its renderer thread (the model is built there) -> the playing
instrument's notes are loaded from disk or rendered, with a progress bar, and the model is
built -> garbage collector frozen (no long collection can land in the audio thread) -> engine ->
MIDI port (a JACK client joining a running graph would make the stream skip a period) ->
audio stream -> ``ready`` (and ``--ready-file``). Ctrl-C or SIGTERM: the MIDI callback is
removed, pedals up and every note faded out, the stream closed, then the MIDI port and client,
the renderer thread joined, exit 0 (130 when interrupted before ready).
"""

from __future__ import annotations

import argparse
import gc
import importlib
import os
import signal
import sys
import threading
import time
from pathlib import Path

from . import preset as presets

APIS = ("alsa", "jack", "coremidi", "windows")


def add_arguments(p: argparse.ArgumentParser) -> None:
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
    g.add_argument("--blocksize", type=int, default=256, help="frames per callback (default 256)")
    g.add_argument("--latency", default="low", help="PortAudio latency: low, high or seconds (default low)")
    g = p.add_argument_group("note cache")
    g.add_argument(
        "--cache-dir", help="disk cache directory (default: $SING_SYNTH_CACHE, else $XDG_CACHE_HOME/sing-synth)"
    )
    g.add_argument("--cache-memory", type=float, default=2.0, help="memory for rendered notes, GiB (default 2)")
    g.add_argument(
        "--threads", type=int, default=1,
        help="torch threads of the renderer while playing (default 1: a core stays free for audio; start-up uses the free cores)",
    )
    p.add_argument("--ready-file", metavar="PATH", help="create this file once the instrument is playing")


def add_ports_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--midi-api", choices=APIS, help="rtmidi API (default: the first that works)")


def add_devices_arguments(p: argparse.ArgumentParser) -> None:
    pass


def run_ports(args) -> int:
    from .midi_in import list_inputs

    api, names = list_inputs(args.midi_api)
    print(f"MIDI inputs ({api}):")
    print("\n".join(f"  {n}" for n in names) if names else "  none (sing-synth --virtual opens one)")
    return 0


def run_devices(args) -> int:
    from .audio_out import output_devices

    devices = output_devices()
    if not devices:
        print("no audio outputs (is a sound server such as JACK running?)")
    for d in devices:
        mark = "*" if d["default"] else " "
        print(f"{mark}{d['index']:3d}  {d['name']:<40} {d['api']:<28} {d['channels']} ch, {d['rate']:.0f} Hz")
    return 0


def _latency(value: str):
    try:
        return float(value)
    except ValueError:
        if value not in ("low", "high"):
            from .errors import ConfigError

            raise ConfigError(f"--latency {value!r}: use low, high or a number of seconds") from None
        return value


class Bar:
    """A progress bar on stderr when it is a terminal; silent otherwise."""

    def __init__(self, label: str):
        self.label, self.tty, self.last = label, sys.stderr.isatty(), -1

    def __call__(self, done: int, total: int) -> None:
        if done == self.last or not self.tty:
            return
        self.last = done
        width = 30
        fill = width * done // max(total, 1)
        print(
            f"\r{self.label} [{'#' * fill}{'.' * (width - fill)}] {done}/{total}", end="", file=sys.stderr, flush=True
        )
        if done == total:
            print(file=sys.stderr)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def run(args) -> int:
    from . import events as ev
    from .audio_out import AudioOutput, find_device
    from .cache import NoteCache
    from .engine import Engine
    from .errors import ConfigError
    from .midi_in import AudioClock, MidiInput, check_input

    if args.blocksize < 16 or args.blocksize > 8192:
        raise ConfigError(f"--blocksize {args.blocksize}: use 16-8192 frames (e.g. 128 or 256)")
    if not 1 <= args.polyphony <= 512:
        raise ConfigError(f"--polyphony {args.polyphony}: use 1-512 voices")
    if args.cache_memory <= 0:
        raise ConfigError(f"--cache-memory {args.cache_memory:g}: give a positive number of GiB")
    latency = _latency(args.latency)
    t_start = time.perf_counter()
    # torch takes about a second to import: start now, while the ports and the device are opened
    threading.Thread(target=importlib.import_module, args=("sing_synth.renderer",), daemon=True).start()
    preset = presets.load(args.preset)
    instrument = preset.instrument(args.instrument) if args.instrument else None
    port = check_input(args.midi_in, args.virtual, args.midi_api, args.channel)
    device = find_device(args.device)
    rate = int(args.rate or device["rate"])

    def make_renderer():
        from .renderer import NoteRenderer, free_cores  # torch: only in the renderer thread

        # until ready nothing else runs here: render with every free core, then with --threads
        return NoteRenderer(
            preset, device=args.model_device, precision=args.precision, output_rate=rate,
            threads=max(args.threads, free_cores()),
        )

    old_term = signal.signal(signal.SIGTERM, _interrupt)  # SIGTERM during the warm-up: like Ctrl-C
    cache = NoteCache(
        preset, rate, make_renderer, cache_dir=args.cache_dir, memory_bytes=int(args.cache_memory * (1 << 30))
    ).start()
    try:
        first = instrument or preset.gm_instrument(0) or preset.instruments[0]
        keys = cache.instrument_keys(first.id)
        need = len(keys) * 4 * preset.config.note_samples * rate / preset.sample_rate
        if need > cache.memory_bytes:
            raise ConfigError(
                f"--cache-memory {args.cache_memory:g} GiB cannot hold the {len(keys)} notes of "
                f"{first.name} at {rate} Hz ({need / (1 << 30):.2f} GiB); give it more"
            )
        cache.prefetch(first.id)
        kit = preset.gm_instrument(0, drums=True)
        if kit is not None and instrument is None:
            cache.prefetch(kit.id, level=2)
        cache.wait(keys, progress=Bar(f"notes of {first.name}"), model=True)  # the model too: no build while playing
        ready_s = time.perf_counter() - t_start
        cache.threads = args.threads  # from the next batch on: a core stays free for the audio thread
        sys.setswitchinterval(0.0005)  # the audio callback waits less for the GIL
        gc.collect()
        gc.freeze()  # what start-up made is never scanned again: no long collection in the audio thread
        engine = Engine(
            preset,
            cache,
            rate=rate,
            instrument=instrument.id if instrument else None,
            polyphony=args.polyphony,
            gain=args.gain,
            max_block=max(args.blocksize, 64),
        )
        clock = AudioClock(rate, delay_frames=args.blocksize)
        audio = AudioOutput(engine, clock, device, rate, args.blocksize, latency)
        _play(args, ev, engine, clock, audio, cache, MidiInput, port, device, first, instrument, ready_s)
    except KeyboardInterrupt:
        print("\ninterrupted before ready", file=sys.stderr)
        return 130
    finally:
        cache.stop()
        signal.signal(signal.SIGTERM, old_term)
    return 0


def _play(args, ev, engine, clock, audio, cache, MidiInput, port, device, first, instrument, ready_s) -> None:
    """Open the stream and the port, print the session, run the status loop until a signal."""
    stop = threading.Event()
    old = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    midi = None
    tty = sys.stderr.isatty()
    try:
        # MIDI first: a JACK client joining the graph makes the running stream skip a period
        midi = MidiInput(engine, clock, port, args.virtual, args.midi_api, args.channel)
        audio.start()
        kind = " (virtual: connect a keyboard or sequencer to it)" if args.virtual else ""
        print(f"MIDI input: {midi.name} ({midi.api}){kind}")
        print(
            f"audio output: {device['name']} ({device['api']}), {audio.rate} Hz, block {audio.blocksize} frames "
            f"({1000 * audio.blocksize / audio.rate:.1f} ms), output latency {1000 * audio.latency:.1f} ms"
        )
        print(
            f"instrument: {instrument.name if instrument else 'General MIDI programs'}; {len(cache.slots)} notes "
            f"ready in {ready_s:.1f} s ({cache.rendered} rendered, {cache.loaded} from disk {cache.dir})"
        )
        if args.ready_file:  # before the line: whoever reads the line finds the file
            tmp = Path(f"{args.ready_file}.{os.getpid()}.tmp")
            tmp.write_text(f"{os.getpid()}\n")
            os.replace(tmp, args.ready_file)
        print("ready", flush=True)
        reported_error = False
        next_poll = time.monotonic() + 1.0
        while not stop.wait(0.25):
            if time.monotonic() >= next_poll:
                next_poll = time.monotonic() + 1.0
                message = midi.poll()
                if message:
                    print(("\n" if tty else "") + message, file=sys.stderr, flush=True)
            if cache.error is not None and not reported_error:
                reported_error = True
                print(
                    f"\nrenderer stopped: {cache.error}; notes not rendered yet play re-pitched neighbours",
                    file=sys.stderr,
                    flush=True,
                )
            if tty:
                print(
                    f"\rvoices {engine.active_voices:3d}  load {100 * audio.load:5.1f}% "
                    f"(max {100 * audio.max_load:5.1f}%)  xruns {audio.xruns}  notes {engine.notes_played}  "
                    f"rendering {cache.pending}   ",
                    end="",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        if midi is not None:
            midi.detach()  # the callback is removed first: the main thread is the only producer now
        for ch in range(16):
            engine.push(ev.CONTROL, ch, ev.CC_SUSTAIN, 0)
            engine.push(ev.CONTROL, ch, ev.CC_ALL_SOUND_OFF, 0)
        time.sleep(max(0.1, 4 * audio.blocksize / audio.rate))  # the callback applies it and fades out
        audio.close()
        if midi is not None:
            midi.shutdown()  # port and client go after the stream: no graph change while it fades
        for s, handler in old.items():
            signal.signal(s, handler)
        if args.ready_file:
            Path(args.ready_file).unlink(missing_ok=True)
        if tty:
            print(file=sys.stderr)
        print(
            f"stopped: {engine.notes_played} notes played, {audio.xruns} xruns, "
            f"max callback load {100 * audio.max_load:.1f}%",
            flush=True,
        )
