"""Learn a new instrument from a few recorded notes: one new embedding, fitted through the frozen network.

SING's instruments are rows of an embedding table; everything else (the LSTM, the decoder) is
shared. So a new instrument is a new row: starting from the preset's instrument that already
sounds closest to the recordings, gradient descent on the paper's spectral loss moves only that
row until the loss stops falling. The result is a user preset: a copy of the base preset's
weights with one more row and one more entry in the instrument table, so it loads and plays like
any preset (``--preset NAME --instrument "My Cello"``).

Recordings: any format libsndfile reads (WAV, FLAC, ...), any rate, mono or not (mixed to mono).
Pitch from the file name (a MIDI number ``60`` or a note name ``C4``, ``Eb3``, ``F#2``; C4 = 60),
else estimated from the audio. Velocity from the name (``v100``, ``vel64``), else from the level:
the loudest recording is velocity 127, and each 4.5 dB below it one class lower. Each note is
brought to the corpus's format: resampled to the model's rate, 4 s (cut or padded with silence),
and per pitch the loudest recording peaks at -1 dBFS with the others keeping their level against
it (the training corpus's rule).
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import dsp, preset_write
from . import preset as presets
from .errors import SingError
from .losses import spectral_loss

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".aiff", ".aif", ".wv")
TARGET_PEAK = 0.89  # -1 dBFS, the corpus's normalisation
SILENT_PEAK_DB = -60.0
CLASS_STEP_DB = 4.5
NOTE_NAME = re.compile(r"([A-Ga-g])([#b]?)(-?\d)")
VELOCITY = re.compile(r"(?:v|vel|velocity)(\d{1,3})", re.IGNORECASE)
SEMITONE = {"c": 0, "d": 2, "e": 4, "f": 5, "g": 7, "a": 9, "b": 11}


class LearnError(SingError):
    """Recordings that cannot be learned from, or a base preset that cannot serve."""


@dataclass
class Recording:
    path: Path
    audio: np.ndarray  # at the model's rate, 4 s, normalised
    pitch: int
    vclass: int
    pitch_from: str  # "name" or "audio"
    velocity_from: str  # "name" or "level"


def parse_name(stem: str) -> tuple[int | None, int | None]:
    """(MIDI pitch, MIDI velocity) written in a file name, each None when absent."""
    pitch = velocity = None
    for token in re.split(r"[_\-\s.,]+", stem):
        if not token:
            continue
        if m := VELOCITY.fullmatch(token):
            velocity = int(m.group(1))
        elif m := NOTE_NAME.fullmatch(token):
            letter, accidental, octave = m.groups()
            pitch = 12 * (int(octave) + 1) + SEMITONE[letter.lower()] + {"#": 1, "b": -1, "": 0}[accidental]
        elif token.isdigit() and pitch is None:
            pitch = int(token)
    return pitch, velocity


def _read(path: Path, rate: int, samples: int) -> np.ndarray:
    import soundfile

    try:
        data, sr = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, soundfile.LibsndfileError, OSError) as exc:
        raise LearnError(f"cannot read {path} ({str(exc).splitlines()[0]}); give WAV or FLAC files", "recordings") from None
    mono = data.mean(axis=1)
    if sr != rate:
        mono = dsp.resample(mono[None], sr, rate)[0]
    out = np.zeros(samples, dtype=np.float32)
    out[: min(samples, len(mono))] = mono[:samples]
    return out


def read_recordings(directory, rate: int, samples: int, pitch_range: tuple[int, int]) -> list[Recording]:
    """Every audio file of ``directory``, labelled and brought to the corpus's format."""
    directory = Path(directory)
    if not directory.is_dir():
        raise LearnError(f"{directory} is not a directory; give the folder that holds the recorded notes", "recordings")
    files = sorted(p for p in directory.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
    if not files:
        raise LearnError(f"no audio files in {directory} (looked for {', '.join(AUDIO_SUFFIXES)})", "recordings")
    raw, labels = [], []
    lo, hi = pitch_range
    for path in files:
        audio = _read(path, rate, samples)
        peak = float(np.abs(audio).max())
        if peak <= 10 ** (SILENT_PEAK_DB / 20):
            raise LearnError(f"{path.name} is silent (peak under {SILENT_PEAK_DB:.0f} dBFS); remove it or record it again", "recordings")
        pitch, velocity = parse_name(path.stem)
        pitch_from = "name"
        if pitch is None:
            f0 = dsp.estimate_f0(audio[rate // 4 : rate // 4 + rate], rate)
            if f0 <= 0:
                raise LearnError(f"cannot tell the pitch of {path.name}; put it in the file name (e.g. C4 or 60)", "recordings")
            pitch, pitch_from = int(round(69 + 12 * math.log2(f0 / 440.0))), "audio"
        if not lo <= pitch <= hi:
            raise LearnError(f"{path.name}: pitch {pitch} is outside the model's range {lo}-{hi}", "recordings")
        if velocity is not None and not 1 <= velocity <= 127:
            raise LearnError(f"{path.name}: velocity {velocity} is outside 1-127", "recordings")
        raw.append(audio)
        labels.append((path, pitch, velocity, pitch_from))
    # velocity from the level where the name gives none; then the corpus's level rule per pitch
    levels = [dsp.rms_db(a) for a in raw]
    loudest = max(levels)
    out = []
    for (path, pitch, velocity, pitch_from), audio, level in zip(labels, raw, levels):
        if velocity is None:
            vclass, velocity_from = max(0, 4 - int((loudest - level) // CLASS_STEP_DB)), "level"
        else:
            vclass, velocity_from = dsp.velocity_class(velocity), "name"
        out.append(Recording(path, audio, pitch, vclass, pitch_from, velocity_from))
    for pitch in {r.pitch for r in out}:
        same = [r for r in out if r.pitch == pitch]
        gain = TARGET_PEAK / max(float(np.abs(r.audio).max()) for r in same)
        for r in same:
            r.audio = (r.audio * gain).astype(np.float32)
    return out


@dataclass
class FitResult:
    embedding: torch.Tensor
    start_instrument: int
    losses: list[float]
    steps: int


def _loss(model, embedding, recordings, device) -> torch.Tensor:
    v = torch.tensor([r.vclass for r in recordings], device=device)
    p = torch.tensor([r.pitch for r in recordings], device=device)
    target = torch.from_numpy(np.stack([r.audio for r in recordings])).to(device)
    emb = embedding.expand(len(recordings), -1) if embedding.dim() == 1 else embedding
    return spectral_loss(model(v, emb, p), target)


def closest_instrument(model, recordings, instrument_ids, device, probe: int = 3) -> int:
    """The instrument whose notes at the recordings' (pitch, velocity) score the lowest loss
    (on ``probe`` of the recordings, spread over their pitches)."""
    chosen = sorted(recordings, key=lambda r: r.pitch)
    chosen = [chosen[k] for k in np.linspace(0, len(chosen) - 1, min(probe, len(chosen))).astype(int)]
    n = len(chosen)
    table = model.generator.instrument.weight.detach()
    v = torch.tensor([r.vclass for r in chosen], device=device)
    p = torch.tensor([r.pitch for r in chosen], device=device)
    target = torch.from_numpy(np.stack([r.audio for r in chosen])).to(device)
    scores = []
    per_batch = max(1, 48 // n)
    with torch.inference_mode():
        for k in range(0, len(instrument_ids), per_batch):
            ids = torch.tensor(instrument_ids[k : k + per_batch], device=device)
            emb = table[ids].repeat_interleave(n, 0)
            out = model(v.repeat(len(ids)), emb, p.repeat(len(ids)))
            per_note = spectral_loss(out, target.repeat(len(ids), 1), reduction="none")
            scores += per_note.view(len(ids), n).mean(1).tolist()
    return instrument_ids[int(np.argmin(scores))]


def fit_embedding(model, recordings, instrument_ids, device="cpu", lr: float = 0.02, max_steps: int = 300,
                  patience: int = 25, min_gain: float = 0.002, progress=None) -> FitResult:
    """Fit one embedding row to ``recordings`` with every weight of ``model`` frozen.

    Starts from the closest existing instrument; Adam on the embedding alone; stops after
    ``max_steps`` or when the loss has not improved by ``min_gain`` (relative) for ``patience`` steps.
    """
    model = model.to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    start = closest_instrument(model, recordings, instrument_ids, device)
    embedding = model.generator.instrument.weight[start].detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([embedding], lr=lr)
    losses, best, best_emb, since = [], math.inf, embedding.detach().clone(), 0
    for step in range(max_steps):
        opt.zero_grad(set_to_none=True)
        loss = _loss(model, embedding, recordings, device)
        loss.backward()
        opt.step()
        value = float(loss.detach())
        losses.append(value)
        if value < best * (1 - min_gain):
            best, best_emb, since = value, embedding.detach().clone(), 0
        else:
            since += 1
        if progress is not None:
            progress.show(f"learning: step {step + 1} loss {value:.4f} (best {best:.4f})")
        if since >= patience:
            break
    return FitResult(best_emb, start, losses, len(losses))


def user_presets_dir() -> Path:
    return presets.search_path()[-1]


def learn(directory, name: str, base=None, output=None, device: str = "cpu", max_steps: int = 300, progress=None) -> Path:
    """Learn instrument ``name`` from the recordings in ``directory``; returns the new preset's directory."""
    from .model import Sing
    from .renderer import pick_device

    device = pick_device(device)
    try:
        base_preset = presets.load(base)
    except presets.PresetError as exc:
        raise LearnError(f"base preset: {exc}", "preset") from None
    if not name.strip():
        raise LearnError("the new instrument needs a name", "name")
    if any(i.name.lower() == name.strip().lower() for i in base_preset.instruments):
        raise LearnError(f"preset {base_preset.name!r} already has an instrument named {name!r}; choose another name", "name")
    c = base_preset.config
    ranges = [i.pitch_range for i in base_preset.instruments if not i.drum_kit and i.pitch_range[1] >= i.pitch_range[0]]
    pitch_range = (min(r[0] for r in ranges), max(r[1] for r in ranges)) if ranges else (0, c.n_pitches - 1)
    recordings = read_recordings(directory, base_preset.sample_rate, c.note_samples, pitch_range)
    model = base_preset.load_model(device)
    ids = [i.id for i in base_preset.instruments]
    result = fit_embedding(model, recordings, ids, device=device, max_steps=max_steps, progress=progress)
    if progress is not None:
        progress.done()

    new_id = c.n_instruments
    grown = Sing(type(c).from_dict({**c.to_dict(), "n_instruments": c.n_instruments + 1}))
    state = {k: v.detach().cpu().float() for k, v in model.state_dict().items()}
    table = state["generator.instrument.weight"]
    state["generator.instrument.weight"] = torch.cat([table, result.embedding.detach().cpu().float()[None]])
    state["level_db"] = torch.cat([state["level_db"], state["level_db"].new_zeros(1, c.n_pitches)])  # fitted as is
    grown.load_state_dict(state)
    pitches = sorted(r.pitch for r in recordings)
    slug = re.sub(r"[^A-Za-z0-9]+", "-", name.strip()).strip("-").lower() or "learned"
    out = Path(output) if output else user_presets_dir() / slug
    if (out / presets.YAML_FILE).exists():
        raise LearnError(f"{out} already holds a preset; give another --name or -o DIR", "output")
    instrument = presets.Instrument(
        id=new_id, name=name.strip(), family="learned", source=f"learned from {len(recordings)} notes in {Path(directory).name}",
        pitch_range=pitch_range,
    )
    base_start = base_preset.instruments[[i.id for i in base_preset.instruments].index(result.start_instrument)].name
    training = {
        "learned": {
            "base_preset": base_preset.name,
            "base_sha256": base_preset.sha256,
            "notes": [{"file": r.path.name, "pitch": r.pitch, "velocity_class": r.vclass,
                       "pitch_from": r.pitch_from, "velocity_from": r.velocity_from} for r in recordings],
            "recorded_pitches": pitches,
            "started_from": base_start,
            "steps": result.steps,
            "loss_start": result.losses[0],
            "loss_end": min(result.losses),
        }
    }
    os.makedirs(out, exist_ok=True)
    return preset_write.save(out, grown, base_preset.instruments + [instrument], name=out.name,
                        description=f"{base_preset.name} with {name.strip()!r} learned from recordings",
                        training=training, velocities=base_preset.velocities)
