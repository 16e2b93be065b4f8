"""The model's configuration (sizes, lengths), kept free of torch so that presets load fast."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


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
