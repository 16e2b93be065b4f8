"""The schema of ``preset.yaml``: every field's type, range and presence, checked before use.

:func:`validate` turns the parsed YAML into typed values or raises one
:class:`~sing_synth.errors.PresetError` naming the field (``instruments[3].pitch_range``), the
value found, what is allowed and the fix. Required: ``format`` and ``version`` (checked by
:mod:`sing_synth.preset`), ``model`` (every size positive and bounded, see
:mod:`sing_synth.config`), ``weights.sha256`` (64 hex digits: the weights are never used
unchecked) and a non-empty ``instruments`` list. Optional, with defaults: ``name``,
``description``, ``sample_rate`` (the model's, which it must equal), ``velocities`` (one MIDI
velocity 1-127 per velocity class, increasing), ``training`` and ``metrics`` (mappings).
Integers must be YAML integers (``5``, not ``"5"`` or ``5.0``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .dsp import VELOCITY_CLASSES
from .errors import PresetError

FIX = "fix preset.yaml or re-export the preset"
SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class PresetFields:
    """The validated contents of a ``preset.yaml`` (instruments as dicts of checked values)."""

    name: str
    description: str
    config: object  # SingConfig
    sample_rate: int
    velocities: tuple[int, ...]
    sha256: str
    instruments: list[dict]
    training: dict
    metrics: dict


def validate(data: dict, preset: str) -> PresetFields:
    """Check ``data`` (a parsed ``preset.yaml``) against the schema; ``preset`` names it in messages."""
    from .config import SingConfig

    def fail(field: str, value, problem: str, fix: str = FIX):
        raise PresetError(f"preset {preset!r}: {field} {_show(value)} {problem}; {fix}")

    model = data.get("model")
    if not isinstance(model, dict):
        fail("model", model, "is not a mapping of the model's sizes")
    try:
        config = SingConfig.from_dict(model)
    except (TypeError, ValueError) as exc:
        text = str(exc).replace("SingConfig.", "model.").replace("SingConfig", "model")  # the yaml's names
        raise PresetError(f"preset {preset!r}: {text}; {FIX}") from None

    sample_rate = data.get("sample_rate", config.sample_rate)
    if not _is_int(sample_rate) or sample_rate != config.sample_rate:
        fail("sample_rate", sample_rate, f"is not the model's rate: use {config.sample_rate} (model.sample_rate)")

    velocities = data.get("velocities", list(VELOCITY_CLASSES))
    n = config.n_velocities
    if (
        not isinstance(velocities, list)
        or len(velocities) != n
        or not all(_is_int(v) and 1 <= v <= 127 for v in velocities)
        or any(a >= b for a, b in zip(velocities, velocities[1:]))
    ):
        fail("velocities", velocities, f"must be {n} increasing MIDI velocities 1-127, one per velocity class "
             f"of the model (model.n_velocities {n})")

    weights = data.get("weights")
    sha = weights.get("sha256") if isinstance(weights, dict) else None
    if not isinstance(sha, str) or not SHA256.match(sha):
        what = "is missing" if sha is None else "is not 64 hexadecimal digits"
        fail("weights.sha256", sha, f"{what}: it is required (the weights are checked against it before use)",
             "re-export the preset")
    if weights.get("file", "weights.safetensors") != "weights.safetensors":
        fail("weights.file", weights["file"], "is not supported: the weights are weights.safetensors")

    name, description = data.get("name"), data.get("description", "")
    if name is not None and (not isinstance(name, str) or not name.strip()):
        fail("name", name, "must be a non-empty string")
    if not isinstance(description, str):
        fail("description", description, "must be a string")
    extra = {}
    for field in ("training", "metrics"):
        value = data.get(field)
        if value is not None and not isinstance(value, dict):
            fail(field, value, "must be a mapping")
        extra[field] = value or {}

    table = data.get("instruments")
    if not isinstance(table, list) or not table:
        fail("instruments", table, "must be a non-empty list of instruments")
    instruments = [_instrument(entry, k, config.n_instruments, fail) for k, entry in enumerate(table)]
    seen: dict[int, int] = {}
    for k, inst in enumerate(instruments):
        if inst["id"] in seen:
            fail(f"instruments[{k}].id", inst["id"], f"is the id of instruments[{seen[inst['id']]}] too: ids are unique")
        seen[inst["id"]] = k
    return PresetFields(
        name=name or "",
        description=description,
        config=config,
        sample_rate=sample_rate,
        velocities=tuple(velocities),
        sha256=sha,
        instruments=instruments,
        **extra,
    )


def _instrument(entry, k: int, n_instruments: int, fail) -> dict:
    """One row of the instrument table, checked: a dict of the :class:`~sing_synth.preset.Instrument` fields."""
    where = f"instruments[{k}]"
    if not isinstance(entry, dict):
        fail(where, entry, "is not a mapping (id, name, family, pitch_range, ...)")
    known = {"id", "name", "family", "source", "pitch_range", "gm_program", "gm_bank", "drum_kit", "played_from"}
    unknown = sorted(set(entry) - known, key=str)
    if unknown:
        fail(f"{where} field", unknown[0], f"is unknown: the fields are {', '.join(sorted(known))}")
    out = {}
    i = entry.get("id")
    if not _is_int(i) or not 0 <= i < n_instruments:
        fail(f"{where}.id", i, f"is not an instrument of the model: use 0-{n_instruments - 1} (model.n_instruments)")
    out["id"] = i
    for field, default in (("name", None), ("family", "unknown"), ("source", "")):
        value = entry.get(field, default)
        if not isinstance(value, str) or (field == "name" and not value.strip()):
            fail(f"{where}.{field}", value, "must be a " + ("non-empty string" if field == "name" else "string"))
        out[field] = value
    lo_hi = entry.get("pitch_range", [0, 127])
    if (
        not isinstance(lo_hi, list)
        or len(lo_hi) != 2
        or not all(_is_int(p) for p in lo_hi)
        or not 0 <= lo_hi[0] <= lo_hi[1] <= 127
    ):
        fail(f"{where}.pitch_range", lo_hi, "out of range: use [low, high] with 0 <= low <= high <= 127")
    out["pitch_range"] = (lo_hi[0], lo_hi[1])
    program = entry.get("gm_program")
    if program is not None and not (_is_int(program) and 0 <= program <= 127):
        fail(f"{where}.gm_program", program, "out of range: use a General MIDI program 0-127, or null")
    out["gm_program"] = program
    bank = entry.get("gm_bank", 0)
    if not (_is_int(bank) and 0 <= bank <= 16383):
        fail(f"{where}.gm_bank", bank, "out of range: use a MIDI bank 0-16383")
    out["gm_bank"] = bank
    drum_kit = entry.get("drum_kit", False)
    if not isinstance(drum_kit, bool):
        fail(f"{where}.drum_kit", drum_kit, "must be true or false")
    out["drum_kit"] = drum_kit
    out["played_from"] = _played_from(entry.get("played_from", []), out["pitch_range"], where, fail)
    return out


def _played_from(runs, pitch_range, where: str, fail) -> tuple:
    """``played_from``: ``[first, last, source]`` runs of keys inside the pitch range, each played from
    a source inside it that no run re-maps, the runs apart from each other."""
    lo, hi = pitch_range
    where = f"{where}.played_from"
    if not isinstance(runs, list):
        fail(where, runs, "must be a list of [first, last, source] runs")
    keys: set[int] = set()
    out = []
    for run in runs:
        if not (isinstance(run, list) and len(run) == 3 and all(_is_int(p) for p in run)):
            fail(where, run, "is not a [first, last, source] run of MIDI keys")
        first, last, source = run
        if not lo <= first <= last <= hi or not lo <= source <= hi:
            fail(where, run, f"leaves the pitch range {lo}-{hi}: use first <= last and every key inside it")
        if keys.intersection(range(first, last + 1)):
            fail(where, run, "overlaps another run: each key is played from one source")
        keys.update(range(first, last + 1))
        out.append((first, last, source))
    for first, last, source in out:
        if source in keys:
            fail(where, [first, last, source], "plays from a key that is itself played from another: use an in-tune key")
    return tuple(out)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _show(value) -> str:
    """A value as the message shows it: its repr, cut short."""
    text = "(missing)" if value is None else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
