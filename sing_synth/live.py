"""Live play: start-up order, warm-up of the note cache, status line, clean shutdown.

Order: preset -> audio device (for its sample rate) -> renderer thread + note cache ->
pre-render the playing instrument's notes (progress bar) -> engine -> audio stream -> MIDI
port -> ``ready``. Ctrl-C or SIGTERM: MIDI closed, notes released and faded, stream closed,
renderer joined, exit 0.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time

from . import preset as presets


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("MIDI input")
    g.add_argument("--midi-in", metavar="NAME", help="input port: case-insensitive part of its name")
    g.add_argument("--virtual", action="store_true", help="open a virtual input port named sing-synth")
    g.add_argument("--midi-api", choices=("alsa", "jack", "coremidi", "windows"), help="rtmidi API (default: first that works)")
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
    g.add_argument("--cache-dir", help="disk cache directory (default: $SING_SYNTH_CACHE or ~/.cache/sing-synth)")
    g.add_argument("--cache-memory", type=float, default=2.0, help="memory for rendered notes, GiB (default 2)")
    g.add_argument("--threads", type=int, default=1, help="torch threads of the renderer (default 1: a core stays free for audio)")


def add_ports_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--midi-api", choices=("alsa", "jack", "coremidi", "windows"), help="rtmidi API")


def add_devices_arguments(p: argparse.ArgumentParser) -> None:
    pass


def run_ports(args) -> int:
    from .midi_in import list_inputs

    names = list_inputs(args.midi_api)
    print("\n".join(names) if names else "no MIDI inputs (use --virtual to open one)")
    return 0


def run_devices(args) -> int:
    from .audio_out import output_devices

    for d in output_devices():
        mark = "*" if d["default"] else " "
        print(f"{mark}{d['index']:3d}  {d['name']:<40} {d['api']:<28} {d['channels']} ch, {d['rate']:.0f} Hz")
    return 0


def _latency(value: str):
    try:
        return float(value)
    except ValueError:
        return value


class Bar:
    def __init__(self, label: str):
        self.label, self.tty, self.last = label, sys.stderr.isatty(), -1

    def __call__(self, done: int, total: int) -> None:
        if done == self.last:
            return
        self.last = done
        if self.tty:
            width = 30
            fill = width * done // max(total, 1)
            print(f"\r{self.label} [{'#' * fill}{'.' * (width - fill)}] {done}/{total}", end="", file=sys.stderr, flush=True)
            if done == total:
                print(file=sys.stderr)


def run(args) -> int:
    from . import events as ev
    from .audio_out import AudioOutput, find_device
    from .cache import NoteCache
    from .engine import Engine
    from .midi_in import AudioClock, MidiInput
    from .renderer import NoteRenderer

    preset = presets.load(args.preset)
    instrument = preset.instrument(args.instrument) if args.instrument else None
    device = find_device(args.device)
    rate = int(args.rate or device["rate"])
    t_start = time.perf_counter()
    renderer = NoteRenderer(preset, device=args.model_device, precision=args.precision, output_rate=rate,
                            threads=args.threads)
    cache = NoteCache(preset, rate, renderer, cache_dir=args.cache_dir,
                      memory_bytes=int(args.cache_memory * (1 << 30))).start()
    try:
        first = [instrument] if instrument else [preset.gm_instrument(0)]
        kit = preset.gm_instrument(0, drums=True)
        keys = cache.prefetch(first[0].id)
        if kit is not None and instrument is None:
            cache.prefetch(kit.id, level=2)
        cache.wait(keys, progress=Bar(f"rendering {first[0].name}"))
        ready_s = time.perf_counter() - t_start
        engine = Engine(preset, cache, rate=rate, instrument=instrument.id if instrument else None,
                        polyphony=args.polyphony, gain=args.gain, max_block=max(args.blocksize, 64))
        clock = AudioClock(rate, delay_frames=args.blocksize)
        audio = AudioOutput(engine, clock, device, rate, args.blocksize, _latency(args.latency))
        midi = None
        stop = threading.Event()
        old = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            audio.start()
            midi = MidiInput(engine, clock, args.midi_in, args.virtual, args.midi_api, args.channel)
            print(f"MIDI input: {midi.name}" + (" (virtual)" if args.virtual else ""))
            print(f"audio output: {device['name']} ({device['api']}), {rate} Hz, block {args.blocksize} frames, "
                  f"output latency {1000 * audio.latency:.1f} ms")
            print(f"instrument: {instrument.name if instrument else 'General MIDI programs'}; "
                  f"notes ready in {ready_s:.1f} s ({cache.rendered} rendered, {cache.loaded} from disk)")
            print("ready", flush=True)
            tty = sys.stderr.isatty()
            next_poll = time.monotonic() + 1.0
            while not stop.wait(0.2):
                if time.monotonic() >= next_poll:
                    next_poll = time.monotonic() + 1.0
                    message = midi.poll()
                    if message:
                        print(message, file=sys.stderr, flush=True)
                if tty:
                    print(f"\rvoices {engine.active_voices:3d}  load {100 * audio.load:5.1f}% "
                          f"(max {100 * audio.max_load:5.1f}%)  xruns {audio.xruns}  notes {engine.notes_played}",
                          end="", file=sys.stderr, flush=True)
        finally:
            if midi is not None:
                midi.close()  # the callback is removed first: the main thread is the only producer now
            for ch in range(16):
                engine.push(ev.CONTROL, ch, ev.CC_ALL_SOUND_OFF, 0)
            time.sleep(0.1)  # let the callback apply it and fade the voices out
            audio.close()
            for s, handler in old.items():
                signal.signal(s, handler)
            if sys.stderr.isatty():
                print(file=sys.stderr)
            print(f"stopped: {engine.notes_played} notes played, {audio.xruns} xruns, "
                  f"max callback load {100 * audio.max_load:.1f}%", flush=True)
    finally:
        cache.stop()
    return 0
