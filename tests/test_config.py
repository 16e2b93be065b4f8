"""The model's configuration: validation, derived lengths, named sizes, and no torch to read it."""

import dataclasses
import subprocess
import sys

import pytest

from sing_synth.config import SingConfig


def test_configuration_is_validated():
    with pytest.raises(ValueError, match="positive integer"):
        SingConfig(channels=0)
    with pytest.raises(ValueError, match="positive integer"):
        SingConfig(lstm_layers=True)  # a bool is not a size
    with pytest.raises(ValueError, match="multiple of stride"):
        SingConfig(kernel_size=1000)
    with pytest.raises(ValueError, match="note_samples \\+ 2 \\* pad - kernel_size must be a multiple of stride"):
        SingConfig(note_samples=64001)
    with pytest.raises(ValueError, match="pad is too small"):
        SingConfig(pad=256)
    with pytest.raises(ValueError, match="unknown model configuration keys: colour"):
        SingConfig.from_dict({"colour": 1})
    with pytest.raises(ValueError, match="unknown model size"):
        SingConfig.named("huge", 10)
    with pytest.raises(dataclasses.FrozenInstanceError):
        SingConfig().channels = 8


def test_derived_lengths_follow_the_paper():
    c = SingConfig.paper()
    assert (c.padded_samples, c.n_steps, c.n_frames) == (68608, 265, 257)
    assert (c.decoder_padding, c.decoder_samples, c.trim) == (768, 65024, 512)
    assert c.decoder_samples - 2 * c.trim == c.note_samples
    short = SingConfig(note_samples=16128, pad=2304)  # about 1 s: the same arithmetic
    assert short.decoder_samples - 2 * short.trim == 16128 and short.n_steps == (16128 + 4608 - 1024) // 256 + 1


def test_named_sizes_and_round_trip():
    small, tiny = SingConfig.small(7), SingConfig.tiny()
    assert (small.n_instruments, small.lstm_layers, small.lstm_hidden, small.channels) == (7, 2, 256, 512)
    assert (tiny.n_instruments, tiny.lstm_hidden, tiny.latent_dim, tiny.channels) == (4, 32, 16, 32)
    assert SingConfig.paper() == SingConfig() and SingConfig.named("small", 7) == small
    assert SingConfig.from_dict(small.to_dict()) == small
    assert small.to_dict()["lstm_hidden"] == 256


def test_reading_a_configuration_does_not_import_torch():
    code = "import sys; from sing_synth.config import SingConfig; SingConfig.small(3); assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
