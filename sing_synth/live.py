"""Live play: start-up order, warm-up of the note cache, status line, clean shutdown.

Order: preset -> the MIDI input and audio device are checked (a typo fails at once, before
anything is rendered or written) -> note cache and its renderer thread, which reads the playing
instrument's notes from the disk cache (a morph's other instruments behind them, its positions as
they are played) -> the notes not on disk are rendered, with a progress bar (when every note is
on disk, ready comes once the common velocities, 100 and 75, are read: the other velocity layers
are read right after); the model is built, and torch imported, only when notes are not on disk
(in a thread of its own, while the disk is read): a start that finds every note on disk imports
no torch, unless it plays a morph (its positions are made as they are played) -> engine -> MIDI
port (a JACK client joining a running graph would make the stream skip a period) -> garbage
collector frozen and switched off (the status loop collects the young generations every few
seconds: no collection in the audio thread) -> memory locked in RAM where permitted
(:mod:`sing_synth.memlock`; a one-line note where not) -> audio stream, its first blocks silent while
the callback warms up the note path (:mod:`sing_synth.warmup`: a few notes through the engine into
scratch blocks, its state then put back) -> ``ready`` (and ``ready_file``).
While notes play, the status loop and the renderer thread start their Python work just after an
audio block (:meth:`~sing_synth.audio_out.AudioOutput.between_blocks`). A
note that is neither in memory nor on disk later (a program change to a new instrument) has the
renderer thread load the model then, while a re-pitched neighbour stands in. The MIDI input is
polled by the audio callback (no Python thread of ours wakes for MIDI). Ctrl-C, SIGTERM or
SIGHUP: the MIDI input stops being polled, pedals up and every note faded out, the stream
closed, then the MIDI port and client, the renderer thread joined; the exit status is 128 + the
signal's number (130, 143, 129; see :mod:`sing_synth.signals`), before ready as after.
"""

from __future__ import annotations

import gc
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from . import events as ev
from . import limits, memlock, signals, timing
from . import preset as presets
from .audio_out import WARM_TIMEOUT, AudioOutput, find_device
from .cache import NoteCache
from .cache_filler import CacheFiller
from .disk_cache import DiskCache
from .effects import EffectSettings
from .engine import Engine
from .errors import ConfigError
from .midi_in import AudioClock, MidiInput, check_input
from .morph import DEFAULT_CCS, DEFAULT_STEPS, MorphControl, resolve
from .note_source import COMMON_CLASSES
from .progress import Progress
from .warmup import WarmUp

GC_EVERY = 10.0  # s between the status loop's collections of the young generations while playing


@dataclass(frozen=True)
class LiveOptions:
    """Everything a live session can be told (the ``sing-synth play`` options)."""

    preset: str | None = None  # name or directory; None: the default preset
    midi_in: str | None = None  # part of the input port's name
    virtual: bool = False  # open a virtual input port instead
    midi_api: str | None = None  # alsa, jack, coremidi, windows; None: the first that works
    channel: int | None = None  # 1-16: listen to this channel only
    instrument: str | None = None  # id or name for every melodic channel; None: General MIDI programs
    polyphony: int = 64
    gain: float = 0.5
    device: str | None = None  # the audio output: index or part of its name; None: the system's
    rate: int | None = None  # None: the device's
    blocksize: int = 256  # frames per callback
    latency: str | float = "low"  # PortAudio's: low, high or seconds
    cache_dir: str | None = None  # the note cache on disk (None: the default directory)
    cache_size: str | None = None  # its bound, e.g. "4G" (None: $SING_SYNTH_CACHE_SIZE, else 4 GiB)
    no_cache: bool = False  # neither read nor write the disk cache
    cache_memory: float = 2.0  # GiB for rendered notes
    threads: int = 1  # torch threads of the renderer while playing (start-up uses every free core)
    model_device: str = "auto"  # where the model runs
    precision: str = "float32"
    ready_file: str | None = None  # created once playing
    effects: EffectSettings = EffectSettings()  # the reverb and chorus buses (on, General MIDI's sends)
    morph: tuple[str, ...] | None = None  # instruments to blend ``instrument`` with: B, or B C D
    morph_cc: tuple[int, ...] = DEFAULT_CCS  # the controllers of the morph position: x (and y)
    morph_steps: int = DEFAULT_STEPS  # positions per axis

    def check(self) -> None:
        """Refuse out-of-range values before anything starts."""
        if not 16 <= self.blocksize <= 8192:
            raise ConfigError(
                f"block size {self.blocksize} out of range: use 16-8192 frames (e.g. 128 or 256)", "blocksize"
            )
        if not 1 <= self.polyphony <= 512:
            raise ConfigError(f"polyphony {self.polyphony} out of range: use 1-512 voices", "polyphony")
        limits.check_note_memory(self.cache_memory)
        if self.rate is not None:
            limits.check_rate(self.rate)
        limits.check_gain(self.gain)
        limits.check_threads(self.threads)
        limits.check_model_device(self.model_device)
        latency = self.latency
        if latency not in ("low", "high") and not (isinstance(latency, (int, float)) and latency > 0):
            raise ConfigError(f"latency {self.latency!r}: use low, high or a positive number of seconds", "latency")
        self.effects.check()


def play(options: LiveOptions) -> int:
    """Run a live session until Ctrl-C, SIGTERM or SIGHUP; the exit status (128 + the signal's number)."""
    o = options
    o.check()
    t_start = time.perf_counter()
    preset = presets.load(o.preset)
    instrument = preset.instrument(o.instrument) if o.instrument else None
    morph = MorphControl(resolve(preset, instrument, o.morph, o.morph_steps), o.morph_cc) if o.morph else None
    port = check_input(o.midi_in, o.virtual, o.midi_api, o.channel)
    device = find_device(o.device)
    rate = int(o.rate or device["rate"])

    def make_renderer():
        from .renderer import NoteRenderer, free_cores  # torch: only in the renderer's threads

        # until ready nothing else runs here: render with every free core, then with ``threads``
        renderer = NoteRenderer(
            preset, device=o.model_device, precision=o.precision, output_rate=rate, threads=max(o.threads, free_cores())
        )
        if morph is not None:
            renderer.add_blends(morph.morph.blends())
        return renderer

    restore_signals = signals.raise_on_stop()  # a signal during the warm-up stops it like Ctrl-C
    disk = False if o.no_cache else DiskCache(o.cache_dir, o.cache_size)
    cache = NoteCache(preset, rate, disk=disk, memory_bytes=int(o.cache_memory * (1 << 30)), precision=o.precision,
                      note_samples=preset.note_samples(rate))
    filler = CacheFiller(cache, make_renderer).start()
    try:
        first = instrument or preset.gm_instrument(0) or preset.instruments[0]
        keys = filler.instrument_keys(first.id)
        need = len(keys) * 4 * preset.config.note_samples * rate / preset.sample_rate
        if need > cache.memory_bytes:
            raise ConfigError(
                f"cache memory of {o.cache_memory:g} GiB cannot hold the {len(keys)} notes of "
                f"{first.name} at {rate} Hz ({need / (1 << 30):.2f} GiB); give it more",
                "cache_memory",
            )
        scheduled = filler.prefetch(first.id)  # the filler starts reading them from disk
        kit = preset.gm_instrument(0, drums=True)
        if kit is not None and instrument is None:
            scheduled += filler.prefetch(kit.id, level=2)
        for corner in morph.morph.corners[1:] if morph is not None else ():
            scheduled += filler.prefetch(corner, level=2)  # the morph's other ends; its positions as played
        # a morph's positions are made as they are played: its model is needed soon, build it now
        missing = bool(filler.missing_on_disk(scheduled)) or morph is not None
        if missing:
            filler.build()  # the model (and torch) while the disk is read: no build while playing
        # Notes to render: all of the instrument's before ready (no model at work while playing). All on
        # disk: ready once the instrument plays its own notes at the common velocities (100 and 75 at
        # every pitch, read first); the other layers are read right after, and meanwhile a velocity
        # between two layers plays the common one alone.
        wanted = keys if missing else [k for k in keys if k[2] in COMMON_CLASSES[:2]] or keys
        bar = Progress()
        try:
            filler.wait(wanted, progress=lambda done, total: bar.bar(f"notes of {first.name}", done, total, "notes"),
                        model=missing)
        finally:
            bar.done()
        ready_s = time.perf_counter() - t_start
        filler.threads = o.threads  # from the next batch on: a core stays free for the audio thread
        sys.setswitchinterval(0.0005)  # the audio callback waits less for the GIL
        engine = Engine(
            preset,
            cache,
            rate=rate,
            instrument=instrument.id if instrument else None,
            polyphony=o.polyphony,
            gain=o.gain,
            max_block=max(o.blocksize, 64),
            effects=o.effects,
            morph=morph,
        )
        clock = AudioClock(rate, delay_frames=o.blocksize)
        timeline = timing.from_env(o.blocksize / rate)  # SING_SYNTH_TIMING: where the time goes
        audio = AudioOutput(engine, clock, device, rate, o.blocksize, o.latency, timeline)
        # the warm-up's state is saved now, before the collector is frozen and memory locked: saved after,
        # the callback took 24 page faults in 20 s of play after the first note instead of 5 (bench/RESULTS.md)
        session = _Session(o, engine, clock, audio, cache, filler, WarmUp(engine, o.blocksize))
        return 128 + session.run(port, device, describe(preset, instrument, morph), ready_s)
    except KeyboardInterrupt as exc:
        print(f"\nstopped by {signals.name(exc)} before ready", file=sys.stderr)
        return signals.exit_code(exc)
    finally:
        filler.stop()
        restore_signals()


def describe(preset, instrument, morph: MorphControl | None) -> str:
    """What the melodic channels play, for the session's ``instrument:`` line."""
    if instrument is None:
        return "General MIDI programs"
    if morph is None:
        return instrument.name
    names = " / ".join(preset.instrument(i).name for i in morph.morph.corners)
    ccs = " and ".join(f"CC{c}" for c in morph.ccs)
    return f"morph {names} ({ccs}, {morph.morph.steps} steps)"


class _Session:
    """The playing instrument: the stream and the port open, the status loop, the clean stop."""

    def __init__(self, options: LiveOptions, engine, clock, audio, cache, filler, warm: WarmUp | None = None) -> None:
        self.o, self.engine, self.clock, self.audio = options, engine, clock, audio
        self.cache, self.filler, self.warm = cache, filler, warm

    def run(self, port: str, device: dict, instrument: str, ready_s: float) -> int:
        """Open the stream and the port, print the session, run the status loop until a stopping
        signal; returns the signal's number."""
        o, engine, audio, cache, filler = self.o, self.engine, self.audio, self.cache, self.filler
        stop = threading.Event()
        received, restore_signals = signals.flag_on_stop(stop)
        midi = None
        status = Progress(every=60.0)
        try:
            # MIDI first: a JACK client joining the graph makes the running stream skip a period
            # polled from the audio callback: no Python thread of ours wakes for MIDI while playing
            midi = MidiInput(engine, self.clock, port, o.virtual, o.midi_api, o.channel, polled=True)
            audio.midi = midi
            timeline = audio.timeline
            if timeline is not None:
                midi.timeline = filler.timeline = timeline
            # what start-up made is never scanned again, and no collection starts by itself while
            # playing (it would run in whichever thread allocates, the audio thread included, holding
            # the GIL): the status loop collects the young generations instead, a few objects each time
            gc.collect()
            gc.freeze()
            gc.disable()
            note = memlock.lock()  # the notes and the code the callback touches stay in RAM
            if note:
                print(note, file=sys.stderr, flush=True)
            if timeline is not None:
                timeline.watch_gc()  # the collections while playing, not the one above
            warm, self.warm = self.warm, None  # the saved state goes once the engine is put back
            if not audio.start(warm):  # the first blocks silent, the note path warmed up in the callback
                print(f"note path not warmed up: the audio output did not call back for {WARM_TIMEOUT:g} s",
                      file=sys.stderr, flush=True)
            del warm
            kind = " (virtual: connect a keyboard or sequencer to it)" if o.virtual else ""
            print(f"MIDI input: {midi.name} ({midi.api}){kind}")
            print(
                f"audio output: {device['name']} ({device['api']}), {audio.rate} Hz, block {audio.blocksize} frames "
                f"({1000 * audio.blocksize / audio.rate:.1f} ms), output latency {1000 * audio.latency:.1f} ms"
            )
            print(
                f"instrument: {instrument}; {len(cache.slots)} notes "
                f"ready in {ready_s:.1f} s ({filler.rendered} rendered, {cache.loaded} from disk {cache.dir or '(no disk cache)'})"
            )
            print(f"effects: {o.effects.summary()}")
            if o.ready_file:  # before the line: whoever reads the line finds the file
                tmp = Path(f"{o.ready_file}.{os.getpid()}.tmp")
                tmp.write_text(f"{os.getpid()}\n")
                os.replace(tmp, o.ready_file)
            print("ready", flush=True)
            reported_error = False
            next_poll = time.monotonic() + 1.0
            collected = time.monotonic()
            filler.between = audio.between_blocks  # the renderer's Python work, between blocks too
            while not stop.wait(1.0):  # once a second: each wake-up takes the GIL from the audio thread
                audio.between_blocks()  # just after a block: the work below is done before the next one
                t0 = time.perf_counter()
                if time.monotonic() - collected >= GC_EVERY:
                    collected = time.monotonic()
                    gc.collect(1)
                if time.monotonic() >= next_poll:
                    next_poll = time.monotonic() + 1.0
                    message = midi.poll()
                    if message:
                        status.done()
                        print(message, file=sys.stderr, flush=True)
                if filler.error is not None and not reported_error:
                    reported_error = True
                    status.done()
                    print(
                        f"renderer stopped: {filler.error}; notes not rendered yet play re-pitched neighbours",
                        file=sys.stderr,
                        flush=True,
                    )
                status.show(
                    f"voices {engine.active_voices:3d}  load {100 * audio.load:5.1f}% "
                    f"(max {100 * audio.max_load:5.1f}%)  xruns {audio.xruns}  notes {engine.notes_played}  "
                    f"rendering {filler.pending}"
                )
                if timeline is not None:
                    timeline.span("status", t0)
        finally:
            filler.between = None  # the stream is about to stop
            if midi is not None:
                midi.detach()  # the audio thread stops polling first: the main thread is the only producer now
            for ch in range(16):
                engine.push(ev.CONTROL, ch, ev.CC_SUSTAIN, 0)
                engine.push(ev.CONTROL, ch, ev.CC_ALL_SOUND_OFF, 0)
            time.sleep(max(0.1, 4 * audio.blocksize / audio.rate))  # the callback applies it and fades out
            audio.close()
            if midi is not None:
                midi.shutdown()
            if audio.timeline is not None:
                audio.timeline.save()  # port and client go after the stream: no graph change while it fades
            if o.ready_file:
                Path(o.ready_file).unlink(missing_ok=True)
            status.done()
            print(
                f"stopped: {engine.notes_played} notes played, {audio.xruns} xruns, "
                f"max callback load {100 * audio.max_load:.1f}%",
                flush=True,
            )
            gc.enable()
            memlock.unlock()
            restore_signals()  # signals stay flags until everything above is done
        return received[0] if received else signal.SIGINT
