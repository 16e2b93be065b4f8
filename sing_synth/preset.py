"""Presets: ``preset.yaml`` (configuration, instrument table, provenance) + ``weights.safetensors``.

Loading never executes code from a file: ``yaml.safe_load`` (or JSON, see :func:`parse`) and
safetensors only. A preset is
refused with a one-line message when its format version is unknown, its weights' sha256
differs from the yaml, or a tensor's name or shape does not match the model configuration.

Where presets are looked for, in order: the directories in ``$SING_SYNTH_PRESETS``
(``os.pathsep``-separated), the project's ``presets/`` directory, and
``~/.local/share/sing-synth/presets``. A preset may also be named by its directory path.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from .dsp import VELOCITY_CLASSES
from .errors import InstrumentError, PresetError
from .preset_schema import validate

FORMAT = "sing-synth-preset"
FORMAT_VERSION = 1
DEFAULT_PRESET = "sing-gm"
WEIGHTS_FILE = "weights.safetensors"
YAML_FILE = "preset.yaml"


@dataclass(frozen=True)
class Instrument:
    """One row of a preset's instrument table."""

    id: int
    name: str
    family: str = "unknown"
    source: str = ""
    pitch_range: tuple[int, int] = (0, 127)
    gm_program: int | None = None  # General MIDI program 0-127 (melodic) or kit number (drums)
    gm_bank: int = 0
    drum_kit: bool = False
    # keys the model plays out of tune, played from a nearby in-tune key re-pitched (``python -m train
    # tune``): ``(first, last, source)`` runs, keys first-last played from ``source``
    played_from: tuple[tuple[int, int, int], ...] = ()

    def to_dict(self) -> dict:
        d = {
            "id": self.id,
            "name": self.name,
            "family": self.family,
            "source": self.source,
            "pitch_range": list(self.pitch_range),
            "gm_program": self.gm_program,
            "gm_bank": self.gm_bank,
            "drum_kit": self.drum_kit,
        }
        if self.played_from:
            d["played_from"] = [list(r) for r in self.played_from]
        return d

    def sources(self) -> dict[int, int]:
        """``{key: the pitch the key is played from}`` for the keys of ``played_from``."""
        return {k: src for first, last, src in self.played_from for k in range(first, last + 1)}

    @classmethod
    def from_dict(cls, d: dict) -> Instrument:
        """An instrument from a row of ``preset.yaml``, checked by :mod:`sing_synth.preset_schema`."""
        return cls(**d)


@dataclass
class Preset:
    """A trained model's description; :meth:`load_model` builds the network with its weights."""

    path: Path
    name: str
    config: object  # SingConfig (imported lazily: this module stays light for listings)
    instruments: list[Instrument]
    sample_rate: int = 16000
    velocities: tuple[int, ...] = VELOCITY_CLASSES
    description: str = ""
    training: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    sha256: str = ""

    @property
    def weights_path(self) -> Path:
        return self.path / WEIGHTS_FILE

    def note_samples(self, rate: int) -> int:
        """Length of a rendered note at ``rate`` Hz (the model's notes, resampled)."""
        return int(round(self.config.note_samples * rate / self.sample_rate))

    @property
    def hash(self) -> str:
        """Identity of the weights, used to key caches."""
        return self.sha256

    # Instruments -----------------------------------------------------------------------
    def instrument(self, query: int | str) -> Instrument:
        """An instrument by id (int or digits) or by case-insensitive name (exact, then substring)."""
        by_id = {i.id: i for i in self.instruments}
        if isinstance(query, int) or (isinstance(query, str) and query.strip().isdigit()):
            key = int(query)
            if key in by_id:
                return by_id[key]
            ids = sorted(by_id)
            raise InstrumentError(f"no instrument {key} in preset {self.name!r} (ids {ids[0]}-{ids[-1]})", "instrument")
        q = query.strip().lower()
        exact = [i for i in self.instruments if i.name.lower() == q]
        if len(exact) == 1:
            return exact[0]
        found = exact or self.search(q)
        if len(found) == 1:
            return found[0]
        if found:
            shown = "; ".join(f"{i.id} {i.name}" for i in found[:6])
            more = f" and {len(found) - 6} more" if len(found) > 6 else ""
            raise InstrumentError(
                f"instrument name {query!r} is ambiguous: {shown}{more}; give an id or a longer name", "instrument"
            )
        names = [i.name.lower() for i in self.instruments]
        close = difflib.get_close_matches(q, names, n=5, cutoff=0.4)
        hint = "; ".join(f"{self.instruments[names.index(c)].id} {self.instruments[names.index(c)].name}" for c in close)
        closest = f"; closest: {hint}" if hint else ""
        raise InstrumentError(f"no instrument named {query!r} in preset {self.name!r}{closest}", "instrument")

    def search(self, query: str = "") -> list[Instrument]:
        """Instruments whose name, family or source contains ``query`` (case-insensitive)."""
        q = query.lower()
        return [i for i in self.instruments if q in i.name.lower() or q in i.family.lower() or q in i.source.lower()]

    def gm_instrument(self, program: int, bank: int = 0, drums: bool = False) -> Instrument | None:
        """The instrument for a General MIDI program (or drum kit); falls back to bank 0 / kit 0."""
        index = self.__dict__.get("_gm_index")
        if index is None:  # first instrument of each (kind, bank, program) and of each (kind, program)
            index = {}
            for i in self.instruments:
                if i.gm_program is not None:
                    index.setdefault((i.drum_kit, i.gm_bank, i.gm_program), i)
                    index.setdefault((i.drum_kit, None, i.gm_program), i)
                    index.setdefault((i.drum_kit, "first"), i)
            self.__dict__["_gm_index"] = index
        for key in ((drums, bank, program), (drums, 0, program), (drums, None, program), (drums, None, 0)):
            if key in index:
                return index[key]
        return index.get((drums, "first"))

    # Model -----------------------------------------------------------------------------
    def load_state_dict(self, model=None) -> dict:
        """The verified weights (sha256 and shapes checked against ``model``, default a new
        ``Sing`` of the preset's configuration) as a dict of tensors."""
        from safetensors.torch import load_file

        from .model import Sing

        if not self.weights_path.is_file():
            raise PresetError(f"preset {self.name!r} has no {WEIGHTS_FILE} in {self.path}; reinstall or re-export it")
        if not self.sha256:
            raise PresetError(f"preset {self.name!r} has no sha256 of its weights to check them against; re-export it")
        digest = sha256_file(self.weights_path)
        if digest != self.sha256:
            raise PresetError(
                f"preset {self.name!r}: {WEIGHTS_FILE} sha256 {digest[:12]}... does not match preset.yaml "
                f"({self.sha256[:12]}...): the weights were altered or replaced; re-export the preset"
            )
        try:
            state = load_file(str(self.weights_path))
        except Exception as exc:  # safetensors raises its own error types
            raise PresetError(f"preset {self.name!r}: cannot read {WEIGHTS_FILE} ({exc}); re-export the preset") from None
        import torch

        # the shapes from a model on the CPU (a few ms): on the "meta" device its initialisation
        # imports torch's Python reference operators, about 1 s (bench/RESULTS.md, issue 13)
        model = model if model is not None else Sing(self.config)
        expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        if "level_db" not in state and "level_db" in expected:  # a preset from before the calibration
            state["level_db"] = torch.zeros(expected["level_db"])
        check_shapes(self.name, expected, {k: tuple(v.shape) for k, v in state.items()})
        bad = [k for k, v in state.items() if not bool(torch.isfinite(v).all())]
        if bad:
            raise PresetError(
                f"preset {self.name!r}: tensor {bad[0]} holds NaN or infinite values"
                + (f" ({len(bad) - 1} more tensors too)" if len(bad) > 1 else "")
                + "; the weights are broken, re-export the preset from a good checkpoint"
            )
        return state

    def load_model(self, device="cpu"):
        from .model import Sing

        model = Sing(self.config)
        model.load_state_dict(self.load_state_dict(model))
        return model.to(device).eval()


def check_shapes(name: str, expected: dict, found: dict) -> None:
    missing = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    if missing or extra:
        raise PresetError(
            f"preset {name!r}: weights do not match the model configuration "
            f"(missing {missing[:3]}, unexpected {extra[:3]}); re-export the preset"
        )
    for key, shape in expected.items():
        if found[key] != shape:
            raise PresetError(
                f"preset {name!r}: tensor {key} has shape {list(found[key])} but the configuration "
                f"needs {list(shape)}; the yaml and the weights disagree, re-export the preset"
            )


def stored_parameters(weights: os.PathLike) -> int | None:
    """Number of parameters in a safetensors file, from its header alone (no tensor is read);
    None when the file cannot be read as one."""
    try:
        with open(weights, "rb") as f:
            (size,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(size))
    except (OSError, ValueError, struct.error):
        return None
    return sum(math.prod(t["shape"]) for k, t in header.items() if k != "__metadata__")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def search_path() -> list[Path]:
    paths = [Path(p) for p in os.environ.get("SING_SYNTH_PRESETS", "").split(os.pathsep) if p]
    paths.append(Path(__file__).resolve().parent.parent / "presets")
    paths.append(Path.home() / ".local" / "share" / "sing-synth" / "presets")
    return paths


def list_presets() -> list[Path]:
    seen, found = set(), []
    for root in search_path():
        if not root.is_dir():
            continue
        for d in sorted(root.iterdir()):
            if (d / YAML_FILE).is_file() and d.name not in seen:
                seen.add(d.name)
                found.append(d)
    return found


def resolve(name_or_path: str | os.PathLike | None = None) -> Path:
    """The directory of a preset given by name (searched) or path; ``None`` is the default preset."""
    name = str(name_or_path) if name_or_path is not None else DEFAULT_PRESET
    p = Path(name)
    if (p / YAML_FILE).is_file():
        return p
    if p.name == YAML_FILE and p.is_file():
        return p.parent
    for root in search_path():
        if (root / name / YAML_FILE).is_file():
            return root / name
    available = ", ".join(d.name for d in list_presets()) or "none installed"
    raise PresetError(f"no preset {name!r} (available: {available}); give a preset name or directory", "preset")


def load(name_or_path: str | os.PathLike | None = None) -> Preset:
    """Read and validate ``preset.yaml`` (the weights are verified when the model is loaded)."""
    path = resolve(name_or_path)
    try:
        raw = (path / YAML_FILE).read_bytes()
    except OSError as exc:
        raise PresetError(f"cannot read {path / YAML_FILE} ({exc.strerror or exc}); check its permissions") from None
    data = parse(raw, path / YAML_FILE)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise PresetError(f"{path / YAML_FILE} is not a sing-synth preset (format must be {FORMAT!r})")
    version = data.get("version")
    if version != FORMAT_VERSION:
        raise PresetError(
            f"preset {path.name!r} has format version {version!r}; this sing-synth reads version "
            f"{FORMAT_VERSION}: upgrade sing-synth or re-export the preset"
        )
    fields = validate(data, path.name)
    return Preset(
        path=path,
        name=fields.name or path.name,
        config=fields.config,
        instruments=[Instrument.from_dict(d) for d in fields.instruments],
        sample_rate=fields.sample_rate,
        velocities=fields.velocities,
        description=fields.description,
        training=fields.training,
        metrics=fields.metrics,
        sha256=fields.sha256,
    )


def parse(raw: bytes, where: Path) -> object:
    """The YAML document ``raw`` (the file ``where``), parsed by the safe loader.

    libyaml takes about 0.1 s for a table of hundreds of instruments, JSON a millisecond: a
    document parsed before is read back from ``presets/<sha256 of its bytes>.json`` in the note
    cache's directory (:func:`sing_synth.disk_cache.default_dir`), written there atomically when
    JSON holds it exactly, after a line with the CRC-32 of the JSON (an entry damaged so that it
    still parses is not used). Either way the result is validated by the caller."""
    from .disk_cache import PARSED_DIR, default_dir

    parsed = default_dir() / PARSED_DIR / f"{hashlib.sha256(raw).hexdigest()[:32]}.json"
    try:  # its first line is the CRC-32 of the JSON after it: a damaged entry is parsed again
        check, _, text = parsed.read_bytes().partition(b"\n")
        if check == b"%08x" % zlib.crc32(text):
            return json.loads(text)
    except (OSError, ValueError, RecursionError):
        pass
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's safe loader: faster, same rules
    try:
        data = yaml.load(raw, Loader=loader)
    except (yaml.YAMLError, RecursionError) as exc:
        what = str(exc).splitlines()[0] if str(exc) else "nested too deeply"
        raise PresetError(f"{where} is not valid YAML ({what}); fix or re-export it") from None
    try:
        text = json.dumps(data, allow_nan=False)
        if json.loads(text) == data:  # (YAML's dates, integer keys or sets would not come back the same)
            parsed.parent.mkdir(parents=True, exist_ok=True)
            tmp = parsed.with_name(f".{parsed.name}.{os.getpid()}.tmp")
            try:
                tmp.write_bytes(b"%08x\n" % zlib.crc32(text.encode()) + text.encode())
                os.replace(tmp, parsed)
            finally:  # an error or a stop leaves no temporary file
                tmp.unlink(missing_ok=True)
    except (OSError, TypeError, ValueError, RecursionError):
        pass  # a read-only cache only costs the next start its speed
    return data
