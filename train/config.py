"""Training recipes: YAML files (``train/configs/*.yaml``) read into typed, validated dataclasses."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import yaml

STAGES = ("autoencoder", "sequence", "end_to_end")
SAMPLINGS = ("notes", "balanced")


@dataclass
class StageConfig:
    """One training stage. ``steps`` optimizer steps of ``batch`` notes per process."""

    steps: int = 1000
    lr: float = 3e-4
    batch: int = 32
    crop: int = 0  # decoder frames per training segment (0: the whole 4 s note)
    loss: str = "spectral"  # autoencoder and end_to_end: "spectral" or "waveform"
    chunk: int = 32  # sequence stage: truncated backpropagation length in LSTM steps
    clip_grad: float = 0.0  # max gradient norm (0: no clipping)
    # Learning-rate decay: constant ``lr``, then a linear fall to ``lr_final`` over the last
    # ``decay_steps`` steps (0: constant throughout). The rate is a function of the step, so a
    # resumed run follows the same schedule.
    decay_steps: int = 0
    lr_final: float = 0.0
    warmup_steps: int = 0  # linear rise of the learning rate from 0 over the first steps

    def lr_at(self, step: int) -> float:
        """Learning rate of optimizer step ``step`` (0-based)."""
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        start = self.steps - self.decay_steps
        if self.decay_steps <= 0 or step < start:
            return self.lr
        return self.lr + (self.lr_final - self.lr) * min(1.0, (step - start + 1) / self.decay_steps)
    # Training loss only: both waveforms are amplified by this many dB before the spectral loss,
    # which lowers the floor set by the 1 in log(1 + |STFT|^2) (near -48 dBFS): at the paper's
    # level a quiet or silent output has a vanishing gradient and the decoder collapses to zero.
    # Validation and evaluation always use the paper's definition (0 dB).
    loss_gain_db: float = 0.0
    # End-to-end stage only: added to loss_gain_db for the drum kits' notes. A kit note's output
    # can carry a steady noise bed 60 dB under its hit, under the loss's floor, where the L1 cannot
    # see it (experiment E22); the gain lowers the floor for the kits alone.
    drum_gain_db: float = 0.0
    # Training loss only: each STFT frame of both signals is amplified by how far the recording's
    # frame lies under the note's loudest frame, at most this many dB, so the release of a decaying
    # note (20-40 dB under its attack, near the loss's floor) counts about as much as the attack
    # (experiments E25, E27). The long-window term (long_fft) is left as it is. In the end-to-end
    # stage the drum kits' notes are left out (their tails are silence: drum_gain_db weighs them).
    tail_gain_db: float = 0.0
    # Training loss only: how notes of a batch are weighted. "none": the plain mean (the paper's
    # loss). "silence": each note's loss is divided by the loss silence would score against it
    # (the mean of its target's log-power plane, floored at ``weight_floor``), so a short drum hit
    # or a sparse high note counts as much as a dense mid-range note and silence is never cheap.
    note_weight: str = "none"
    weight_floor: float = 0.02
    # Training loss only: weight of a coarse-band term, the L1 distance of log(1 + energy) in
    # 32-bin bands of each frame. It measures level and spectral envelope without fine structure,
    # so an output unsure of its partials is still pulled to the right loudness.
    band_loss: float = 0.0
    # Training loss only: weight of the log-power bins where the output is below the target,
    # against 1 for those above it (a quantile, or pinball, loss). The plain L1 is minimised by
    # the median of what the model cannot tell apart, which is quiet when it is unsure where the
    # partials or the hit are; a weight above 1 moves the optimum to a higher quantile.
    under_weight: float = 1.0
    under_weight_final: float | None = None  # falls to this over ``decay_steps``, as the rate does
    # Training loss only: weight of a second log-spectral L1 with a 4096-sample window (hop 1024).
    # The paper's 1024-sample window sees one decoder grain at a time, so it cannot tell grains
    # that add up to a steady low tone from grains whose phases cancel it; the long window spans
    # four grains and hears the difference (experiments E11-E12).
    long_fft: float = 0.0

    def under_weight_at(self, step: int) -> float:
        """The loss's ``under_weight`` at optimizer step ``step`` (0-based)."""
        final = self.under_weight if self.under_weight_final is None else self.under_weight_final
        start = self.steps - self.decay_steps
        if self.decay_steps <= 0 or step < start:
            return self.under_weight
        return self.under_weight + (final - self.under_weight) * min(1.0, (step - start + 1) / self.decay_steps)
    sampling: str = ""  # this stage's note drawing ("notes" or "balanced"; empty: the recipe's)
    # Every this many steps (and before the first), the decoder's dead ReLU channels get new
    # inputs and zero outputs (train/init.py ``revive``; 0: never). Experiment E16.
    revive_every: int = 0


@dataclass
class Recipe:
    """Everything a training run needs; saved, fully resolved, with every checkpoint and preset."""

    name: str = "preset"
    description: str = ""
    model: dict = field(default_factory=lambda: {"size": "small"})
    data: dict = field(default_factory=lambda: {"kind": "soundfont"})
    split_seed: int = 42
    valid: float = 0.1
    test: float = 0.1
    seed: int = 0
    # How training notes are drawn: "notes" uniformly over every training note; "balanced"
    # uniformly over groups (the drum kits, and each melodic octave band), then uniformly inside
    # the group, so the ends of the keyboard and the kits are seen as often as the middle.
    sampling: str = "notes"
    # Initialisation of the autoencoder before its first step: "default" (PyTorch's) or "data"
    # (train/init.py: every ReLU channel centred and scaled on a real batch, a quiet first output).
    init: str = "default"
    # A finished run directory whose final weights (and split) this run starts from, instead of
    # an initialisation: more training for a shipped model, with this recipe's stages. Its data,
    # split seed and model must be this recipe's.
    start_from: str = ""
    precision: str = "float32"  # or "bfloat16" (autocast; CPU or CUDA)
    threads: int = 0  # torch intra-op threads on the CPU (0: torch's default)
    log_every: int = 50  # steps per logged "epoch"
    checkpoint_every: int = 100
    valid_notes: int = 64
    eval_notes: int = 512
    stages: dict = field(default_factory=dict)

    def __post_init__(self):
        unknown = sorted(set(self.stages) - set(STAGES))
        if unknown:
            raise ValueError(f"unknown stages {unknown}: use {', '.join(STAGES)}")
        self.stages = {
            name: s if isinstance(s, StageConfig) else _make(StageConfig, s or {}, f"stages.{name}")
            for name, s in self.stages.items()
        }
        for name, s in self.stages.items():
            if s.loss not in ("spectral", "waveform"):
                raise ValueError(f"stages.{name}.loss must be spectral or waveform, got {s.loss!r}")
            if s.sampling not in ("",) + SAMPLINGS:
                raise ValueError(f"stages.{name}.sampling must be one of {', '.join(SAMPLINGS)}, got {s.sampling!r}")
            if s.drum_gain_db and name != "end_to_end":
                raise ValueError(f"stages.{name}.drum_gain_db: only the end_to_end stage knows which notes are drums")
            if s.tail_gain_db < 0:
                raise ValueError(f"stages.{name}.tail_gain_db must be 0 or more (dB), got {s.tail_gain_db}")
            if s.note_weight not in ("none", "silence"):
                raise ValueError(f"stages.{name}.note_weight must be none or silence, got {s.note_weight!r}")
        if self.init not in ("default", "data"):
            raise ValueError(f"init must be default or data, got {self.init!r}")
        if self.sampling not in SAMPLINGS:
            raise ValueError(f"sampling must be one of {', '.join(SAMPLINGS)}, got {self.sampling!r}")
        if self.precision not in ("float32", "bfloat16"):
            raise ValueError(f"precision must be float32 or bfloat16, got {self.precision!r}")

    def stage_list(self) -> list[tuple[str, StageConfig]]:
        return [(name, self.stages[name]) for name in STAGES if name in self.stages]

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["stages"] = {k: dataclasses.asdict(v) for k, v in self.stages.items()}
        return d


def _make(cls, data: dict, where: str):
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown} (known: {', '.join(sorted(known))})")
    return cls(**data)


def load_recipe(path: str | Path) -> Recipe:
    path = Path(path)
    if not path.is_file():
        builtin = Path(__file__).parent / "configs" / f"{path.name.removesuffix('.yaml')}.yaml"
        if not builtin.is_file():
            raise FileNotFoundError(f"recipe {path} not found (built-in recipes: {', '.join(list_recipes())})")
        path = builtin
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a recipe is a YAML mapping")
    return _make(Recipe, data, str(path))


def list_recipes() -> list[str]:
    return sorted(p.stem for p in (Path(__file__).parent / "configs").glob("*.yaml"))
