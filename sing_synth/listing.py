"""The listing commands of ``sing-synth``: ``presets``, ``instruments``, ``ports``, ``devices``, ``cache``.

Each takes the parsed arguments (:func:`sing_synth.cli.get_parser`) and returns an exit status;
each prints what it lists, nothing else. PortAudio and rtmidi are imported by the command that
needs them.
"""

from __future__ import annotations

import os
import sys

from . import preset as presets
from .disk_cache import DiskCache, format_size
from .errors import SingError


def _mapping(value) -> dict:
    return value if isinstance(value, dict) else {}


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


def describe_preset(p, default: bool = False) -> list[str]:
    """Lines of ``sing-synth presets`` for one preset: size, training provenance, metrics."""
    c, t, m = p.config, p.training or {}, p.metrics or {}
    n = presets.stored_parameters(p.weights_path)
    params = f"{n / 1e6:.1f} M parameters" if n is not None else "parameters unknown"
    lines = [
        f"{p.name}{' (default)' if default else ''}  {p.path}",
        f"  {len(p.instruments)} instruments; model {c.lstm_layers}x{c.lstm_hidden} LSTM, {c.channels} channels, "
        f"{params}; {p.sample_rate} Hz",
    ]
    if t:  # free-form provenance: a value of an unexpected type is shown as unknown
        corpus = _mapping(t.get("corpus"))
        what = f"{corpus.get('kind', 'unknown')} corpus"
        if _number(corpus.get("notes")) and corpus["notes"]:
            what += f" ({corpus['notes']} notes)"
        hours = sum(v for v in _mapping(t.get("wall_time_s")).values() if _number(v)) / 3600
        hw = _mapping(t.get("hardware"))
        cores = f" x{hw['cores']} cores" if _number(hw.get("cores")) else ""
        where = hw.get("gpu") or f"{hw.get('cpu', '?')}{cores}"
        lines.append(f"  trained on {what} in {hours:.1f} h on {where}; "
                     f"code {str(t.get('code_revision', '?'))[:12]}")
        steps = _mapping(t.get("steps_done"))
        if steps:
            done = ", ".join(f"{k} {v}" for k, v in steps.items())
            lines.append(f"  steps: {done}" + ("" if t.get("complete", True) else " (training not complete)"))
    else:
        lines.append("  no training provenance recorded")
    scores = [(k, _mapping(m.get(k)).get("spectral_l1")) for k in ("train", "test", "test_baseline_repitch")]
    scores = [f"{k.replace('_', ' ')} {v:.4f}" for k, v in scores if _number(v)]
    lines.append("  spectral L1: " + "; ".join(scores) if scores else "  no evaluation metrics in preset.yaml")
    return lines


def cmd_presets(args) -> int:
    found = presets.list_presets()
    if not found:
        print("no presets installed (search path: " + os.pathsep.join(map(str, presets.search_path())) + ")")
        return 0
    for path in found:
        try:
            p = presets.load(path)
        except SingError as exc:
            print(f"{path.name}: unusable ({exc})")
            continue
        print("\n".join(describe_preset(p, default=p.name == presets.DEFAULT_PRESET)))
    return 0


def cmd_instruments(args) -> int:
    p = presets.load(args.preset)
    rows = p.search(args.query) if args.query else p.instruments
    for i in rows:
        lo, hi = i.pitch_range
        kind = "drum kit" if i.drum_kit else i.family
        print(f"{i.id:5d}  {i.name:<48} {kind:<22} {lo:3d}-{hi}")
    if not rows:
        print(f"no instrument matches {args.query!r} in preset {p.name!r}", file=sys.stderr)
        return 1
    return 0


def cmd_ports(args) -> int:
    from .midi_in import list_inputs

    api, names = list_inputs(args.midi_api)
    print(f"MIDI inputs ({api}):")
    print("\n".join(f"  {n}" for n in names) if names else "  none (sing-synth --virtual opens one)")
    return 0


def cmd_devices(args) -> int:
    from .audio_out import output_devices

    devices = output_devices()
    if not devices:
        print("no audio outputs (is a sound server such as JACK running?)")
    for d in devices:
        mark = "*" if d["default"] else " "
        print(f"{mark}{d['index']:3d}  {d['name']:<40} {d['api']:<28} {d['channels']} ch, {d['rate']:.0f} Hz")
    return 0


def cmd_cache(args) -> int:
    cache = DiskCache(args.cache_dir, args.cache_size)
    if args.action == "clear":
        print(f"cleared {cache.root}: {format_size(cache.clear())} freed")
        return 0
    usage = cache.usage()
    total = sum(size for _, size in usage.values())
    print(f"note cache: {cache.root}")
    print(f"  {format_size(total)} of at most {format_size(cache.max_bytes)} (set with --cache-size or "
          "$SING_SYNTH_CACHE_SIZE; the least recently used notes go first)")
    names = {}
    for path in presets.list_presets():
        try:
            p = presets.load(path)
        except SingError:
            continue
        names.setdefault(p.sha256[:16], p.name)
    for name, (notes, size) in sorted(usage.items()):
        digest, rate, *precision = name.split("-")
        what = names.get(digest, f"preset {digest}")
        print(f"  {what}, {rate} Hz{' ' + precision[0] if precision else ''}: {notes} notes, {format_size(size)}  ({name})")
    if not usage:
        print("  empty")
    return 0
