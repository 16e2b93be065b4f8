"""The note renderer: batches, devices, output rate, resampling, velocity blending."""

import os

import numpy as np
import pytest
from engine_fixtures import one_thread, tiny_preset  # noqa: F401

from sing_synth.errors import ConfigError, InstrumentError
from sing_synth.renderer import NoteRenderer, pick_device


def test_batches_give_the_same_notes(tiny_preset, one_thread):  # noqa: F811
    notes = [(0, 60, 0), (1, 61, 1), (2, 40, 2), (3, 36, 4), (0, 72, 3)]
    a = NoteRenderer(tiny_preset, device="cpu", batch_size=2).render_model_rate(notes)
    b = NoteRenderer(tiny_preset, device="cpu", batch_size=16).render_model_rate(notes)
    assert a.shape == (5, 64000)
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_output_rate_and_bfloat16(tiny_preset, one_thread):  # noqa: F811
    r = NoteRenderer(tiny_preset, device="cpu", output_rate=44100)
    out = r.render([(0, 60, 2)])
    assert out.shape == (1, 176400) == (1, r.note_samples)
    bf = NoteRenderer(tiny_preset, device="cpu", precision="bfloat16").render_model_rate([(0, 60, 2)])
    ref = NoteRenderer(tiny_preset, device="cpu").render_model_rate([(0, 60, 2)])
    assert bf.dtype == np.float32 and np.abs(bf - ref).max() < 0.05 * np.abs(ref).max() + 1e-4


def test_bad_requests(tiny_preset):  # noqa: F811
    r = NoteRenderer(tiny_preset, device="cpu")
    with pytest.raises(InstrumentError):
        r.render([(9, 60, 0)])
    with pytest.raises(ConfigError, match="pitch 128"):
        r.render([(0, 128, 0)])
    with pytest.raises(ConfigError, match="float16 is for CUDA only"):
        NoteRenderer(tiny_preset, device="cpu", precision="float16")
    with pytest.raises(ConfigError, match="unknown device"):
        pick_device("tpu")


def test_free_cores_counts_busy_cores_and_honours_omp_num_threads(monkeypatch):
    from sing_synth.renderer import free_cores

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    idle = free_cores()
    assert idle == (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())
    monkeypatch.setattr(os, "getloadavg", lambda: (1000.0, 0.0, 0.0))
    assert free_cores() == 1  # never below one thread
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert free_cores() == 1
