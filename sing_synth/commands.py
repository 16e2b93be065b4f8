"""The bodies of the ``sing-synth`` commands: each takes the parsed arguments, runs the library and prints one line."""

from __future__ import annotations

from dataclasses import fields

import numpy as np

from . import dsp, limits, render
from . import preset as presets
from .audio_file import check_output
from .disk_cache import DiskCache
from .effects import SETTINGS, EffectSettings
from .errors import ConfigError
from .listing import cmd_cache, cmd_devices, cmd_instruments, cmd_ports, cmd_presets
from .morph import resolve

# the live session (PortAudio) and the renderer (torch) are imported by the commands that use them


def effect_settings(args) -> EffectSettings:
    """The :class:`EffectSettings` the effect options name (checked: a value out of range is refused)."""
    settings = EffectSettings(
        reverb=not args.no_reverb, chorus=not args.no_chorus, **{name: getattr(args, name) for name in SETTINGS}
    )
    settings.check()
    return settings


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
    # a key the preset's tuning map plays from another key: that key's note re-pitched, as the engine plays it
    sources = inst.sources() if played == inst.id else {}
    notes = []
    for pitch in args.pitch:
        src = sources.get(pitch, pitch)
        wav = renderer.render_velocity(played, src, args.velocity)
        notes.append(wav if src == pitch else dsp.repitch(wav, pitch - src))
    write_audio(args.output, np.concatenate(notes), args.rate)
    moved = [f"{k} from {sources[k]}" for k in args.pitch if k in sources]
    print(f"wrote {args.output}: {what}, pitches {' '.join(map(str, args.pitch))}, velocity {args.velocity}"
          + (f" ({', '.join(moved)}, re-pitched: the preset's tuning map)" if moved else ""))
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
