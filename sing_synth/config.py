"""The model's configuration (sizes, lengths), kept free of torch so that presets load fast."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

# Bounds of every size, far above the paper's (a preset that asks for more is corrupt, not big)
LIMITS = {
    "n_instruments": 100_000, "n_pitches": 128, "n_velocities": 16, "velocity_dim": 1024, "instrument_dim": 1024,
    "pitch_dim": 1024, "time_dim": 1024, "lstm_hidden": 8192, "lstm_layers": 16, "latent_dim": 8192,
    "channels": 16384, "context_size": 256, "kernel_size": 65536, "stride": 65536, "sample_rate": 192_000,
    "note_samples": 60 * 192_000, "pad": 60 * 192_000,
}  # fmt: skip
MAX_PARAMETERS = 1_000_000_000  # 4 GiB of float32 weights: 15 times the paper's model


@dataclass(frozen=True)
class SingConfig:
    """Every size of the model. Named sizes: :meth:`tiny`, :meth:`small`, :meth:`paper`."""

    n_instruments: int = 1006
    n_pitches: int = 128
    n_velocities: int = 5
    velocity_dim: int = 2
    instrument_dim: int = 16
    pitch_dim: int = 8
    time_dim: int = 4
    lstm_hidden: int = 1024
    lstm_layers: int = 3
    latent_dim: int = 128
    channels: int = 4096
    context_size: int = 9
    kernel_size: int = 1024
    stride: int = 256
    sample_rate: int = 16000
    note_samples: int = 64000
    pad: int = 2304

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"SingConfig.{field.name} must be a positive integer, got {value!r}")
            top = LIMITS[field.name]
            if value > top:
                raise ValueError(f"SingConfig.{field.name} is {value}, more than {top:,} (paper: {PAPER[field.name]:,})")
        if self.sample_rate < 1000:
            raise ValueError(f"SingConfig.sample_rate is {self.sample_rate}; use 1000-192000 Hz (paper: 16000)")
        if self.parameters > MAX_PARAMETERS:
            raise ValueError(
                f"SingConfig makes a model of {self.parameters:,} parameters, more than {MAX_PARAMETERS:,} "
                f"({MAX_PARAMETERS * 4 / 2**30:.0f} GiB in float32; the paper's has {SingConfig().parameters:,})"
            )
        if self.kernel_size % self.stride:
            raise ValueError("SingConfig.kernel_size must be a multiple of stride")
        if (self.note_samples + 2 * self.pad - self.kernel_size) % self.stride:
            raise ValueError("SingConfig: note_samples + 2 * pad - kernel_size must be a multiple of stride")
        if self.trim < 0:
            raise ValueError("SingConfig: pad is too small for the decoder's output length")

    # Derived lengths -------------------------------------------------------------------
    @property
    def padded_samples(self) -> int:
        """Length of a training waveform after padding (68,608 for the paper)."""
        return self.note_samples + 2 * self.pad

    @property
    def n_steps(self) -> int:
        """LSTM steps = encoder frames = rows of the time table (265 for the paper)."""
        return (self.padded_samples - self.kernel_size) // self.stride + 1

    @property
    def n_frames(self) -> int:
        """Frames after the unpadded context convolution (257 for the paper)."""
        return self.n_steps - self.context_size + 1

    @property
    def decoder_padding(self) -> int:
        return self.kernel_size - self.stride

    @property
    def decoder_samples(self) -> int:
        """Output length of the transposed convolution (65,024 for the paper)."""
        return (self.n_frames - 1) * self.stride + self.kernel_size - 2 * self.decoder_padding

    @property
    def parameters(self) -> int:
        """Number of parameters of the model (``Sing``) this configuration makes, counted without building it."""
        embeddings = (
            self.n_velocities * self.velocity_dim + self.n_instruments * self.instrument_dim
            + self.n_pitches * self.pitch_dim + self.n_steps * self.time_dim
        )
        h, inputs = self.lstm_hidden, self.velocity_dim + self.instrument_dim + self.pitch_dim + self.time_dim
        lstm = 4 * h * (inputs + h) + 8 * h + (self.lstm_layers - 1) * (4 * h * 2 * h + 8 * h)
        output = (h + 1) * self.latent_dim
        c = self.channels
        decoder = (self.latent_dim * self.context_size + 1) * c + 2 * (c + 1) * c + c * self.kernel_size + 1
        return embeddings + lstm + output + decoder

    @property
    def trim(self) -> int:
        """Samples removed from each side of the decoder's output (512 for the paper)."""
        return (self.decoder_samples - self.note_samples) // 2

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> SingConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown model configuration keys: {', '.join(unknown)}")
        return cls(**data)

    # Named sizes -----------------------------------------------------------------------
    @classmethod
    def paper(cls, n_instruments: int = 1006) -> SingConfig:
        """The paper's model: 3 x 1024 LSTM, 4096 decoder channels, 63.7 M parameters."""
        return cls(n_instruments=n_instruments)

    @classmethod
    def small(cls, n_instruments: int = 1006) -> SingConfig:
        """A CPU-sized model: 2 x 256 LSTM, 512 decoder channels."""
        return cls(n_instruments=n_instruments, lstm_hidden=256, lstm_layers=2, channels=512)

    @classmethod
    def tiny(cls, n_instruments: int = 4) -> SingConfig:
        """A model for tests: seconds to train, milliseconds to run."""
        return cls(
            n_instruments=n_instruments, lstm_hidden=32, lstm_layers=1, latent_dim=16, channels=32
        )

    @classmethod
    def named(cls, name: str, n_instruments: int) -> SingConfig:
        factories = {"tiny": cls.tiny, "small": cls.small, "paper": cls.paper}
        if name not in factories:
            raise ValueError(f"unknown model size {name!r}: use one of {', '.join(factories)}")
        return factories[name](n_instruments=n_instruments)


PAPER = dataclasses.asdict(SingConfig())  # the paper's sizes, for messages
