"""The SING network: sizes, shapes, and the fast decoder against PyTorch's transposed convolution."""

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from sing_synth.model import Decoder, Encoder, Sing, SingConfig, count_parameters


def test_paper_configuration_has_the_papers_size():
    config = SingConfig.paper()
    assert (config.n_steps, config.n_frames, config.decoder_samples, config.trim) == (265, 257, 65024, 512)
    assert config.padded_samples == 68608
    n = count_parameters(Sing(config))
    assert n == 63_747_983  # the paper: 63.7 M parameters
    assert round(n / 1e6, 1) == 63.7


@pytest.mark.parametrize("batch", [1, 3])
def test_output_length_and_shape(batch):
    torch.manual_seed(0)
    config = SingConfig.tiny(n_instruments=5)
    model = Sing(config).eval()
    v, i, p = torch.zeros(batch, dtype=torch.long), torch.arange(batch) % 5, torch.full((batch,), 60)
    with torch.inference_mode():
        wav = model(v, i, p)
        latent, state = model.generator(v, i, p)
    assert wav.shape == (batch, 64000) and wav.dtype == torch.float32 and torch.isfinite(wav).all()
    assert latent.shape == (batch, config.n_steps, config.latent_dim)
    assert state[0].shape == (config.lstm_layers, batch, config.lstm_hidden)


def test_generator_state_carries_over_chunks():
    torch.manual_seed(0)
    config = SingConfig.tiny()
    gen = Sing(config).generator.eval()
    args = (torch.tensor([1]), torch.tensor([2]), torch.tensor([64]))
    with torch.no_grad():
        whole, _ = gen(*args)
        first, state = gen(*args, start=0, length=32)
        rest, _ = gen(*args, start=32, state=state)
    torch.testing.assert_close(torch.cat([first, rest], 1), whole)


def test_decoder_matches_windowed_conv_transpose():
    torch.manual_seed(0)
    config = SingConfig.tiny()
    dec = Decoder(config)
    z = torch.randn(2, config.n_steps, config.latent_dim)
    x = F.relu(dec.context(z.transpose(1, 2)))
    for conv in dec.rewrite:
        x = F.relu(conv(x))
    ref = F.conv_transpose1d(x, dec.synthesis.weight * dec.window, dec.synthesis.bias,
                             stride=config.stride, padding=config.decoder_padding)[:, 0]
    torch.testing.assert_close(dec(z), ref, atol=1e-6, rtol=1e-5)
    # the window is applied at every forward pass, the stored weight is not windowed
    assert not torch.allclose(dec.synthesis.weight[0, 0, :4], (dec.synthesis.weight * dec.window)[0, 0, :4])


def test_decoder_in_cpu_chunks_gives_the_same_samples():
    torch.manual_seed(0)
    config = SingConfig.tiny()
    dec = Decoder(config).eval()
    z = torch.randn(2 * dec.cpu_chunk + 3, config.n_steps, config.latent_dim)
    with torch.no_grad():
        chunked = dec(z)  # no autograd on the CPU: decoded cpu_chunk notes at a time
        whole = dec._decode(z)
        ref = F.conv_transpose1d(
            F.relu(dec.rewrite[1](F.relu(dec.rewrite[0](F.relu(dec.context(z.transpose(1, 2))))))),
            dec.synthesis.weight * dec.window, dec.synthesis.bias, stride=config.stride,
            padding=config.decoder_padding,
        )[:, 0]
    assert chunked.shape == (len(z), config.decoder_samples)
    torch.testing.assert_close(chunked, whole, atol=1e-6, rtol=1e-5)  # the same rows, up to BLAS blocking
    torch.testing.assert_close(chunked, ref, atol=1e-6, rtol=1e-5)


def test_encoder_mirrors_the_decoder():
    config = SingConfig.tiny()
    enc = Encoder(config)
    wav = torch.randn(2, config.padded_samples)
    latent = enc(wav)
    assert latent.shape == (2, config.n_steps, config.latent_dim)
    ref = F.conv1d(wav[:, None], enc.analysis.weight * enc.window, enc.analysis.bias, stride=config.stride)
    x = F.relu(ref)
    for conv in enc.rewrite:
        x = F.relu(conv(x))
    torch.testing.assert_close(latent, enc.output(x).transpose(1, 2), atol=1e-5, rtol=1e-4)


def test_level_gain_scales_a_note_and_a_blend_takes_its_parts_gains():
    from sing_synth.model import Sing

    torch.manual_seed(0)
    model = Sing(SingConfig.tiny(n_instruments=3)).eval()
    v, i, p = torch.tensor([2, 2]), torch.tensor([0, 1]), torch.tensor([60, 60])
    with torch.no_grad():
        plain = model(v, i, p)
        model.level_db[0, 60] = 20 * np.log10(2.0)
        model.level_db[1, 60] = -20 * np.log10(2.0)
        gained = model(v, i, p)
        emb = model.generator.instrument.weight[:2]
        as_embedding = model(v, emb, p)  # an embedding alone gets 0 dB unless told
    torch.testing.assert_close(gained[0], 2 * plain[0])
    torch.testing.assert_close(gained[1], 0.5 * plain[1])
    torch.testing.assert_close(as_embedding, plain)
