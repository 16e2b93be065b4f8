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


def test_calibrated_gains_reach_notes_and_blends(tiny_preset, one_thread):  # noqa: F811
    import torch

    model = tiny_preset.load_model()
    with torch.no_grad():
        model.level_db[0, 60], model.level_db[1, 60] = 6.0, -6.0
    r = NoteRenderer(tiny_preset, device="cpu", model=model)
    plain = NoteRenderer(tiny_preset, device="cpu").render_model_rate([(0, 60, 2), (1, 60, 2)])
    got = r.render_model_rate([(0, 60, 2), (1, 60, 2)])
    np.testing.assert_allclose(got, plain * (10 ** (np.array([[6.0], [-6.0]]) / 20)), rtol=1e-5, atol=1e-7)
    r.add_blends({100: [(0, 1.0), (1, 0.0)], 101: [(0, 0.5), (1, 0.5)]})
    ends = r.render_model_rate([(100, 60, 2), (0, 60, 2)])
    np.testing.assert_array_equal(ends[0], ends[1])  # a blend's end is its instrument, gain and all
    mid = r.render_model_rate([(101, 60, 2)])[0]
    r.model.level_db.zero_()
    np.testing.assert_allclose(mid, r.render_model_rate([(101, 60, 2)])[0], rtol=1e-5, atol=1e-7)  # (6 - 6) / 2 = 0 dB


def test_a_preset_saved_before_the_calibration_loads_at_0_db(tmp_path, one_thread):  # noqa: F811
    from safetensors.torch import load_file, save_file

    from sing_synth import preset as presets
    from sing_synth.testing.presets import untrained_preset

    p = untrained_preset(tmp_path / "old")
    state = load_file(str(p.weights_path))
    del state["level_db"]
    save_file(state, str(p.weights_path))
    text = (p.path / presets.YAML_FILE).read_text().replace(p.sha256, presets.sha256_file(p.weights_path))
    (p.path / presets.YAML_FILE).write_text(text)
    model = presets.load(p.path).load_model()
    assert float(model.level_db.abs().max()) == 0.0
