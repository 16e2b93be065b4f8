"""Presets: round trip, verification of weights and shapes, format version, instrument lookup."""

import shutil

import numpy as np
import pytest
import torch
import yaml
from engine_fixtures import tiny_preset  # noqa: F401  (a seeded tiny preset in a tmp dir)
from safetensors.torch import load_file, save_file

from sing_synth import preset as presets
from sing_synth.errors import InstrumentError, PresetError
from sing_synth.model import Sing, SingConfig
from sing_synth.renderer import NoteRenderer


@pytest.fixture
def copy(tmp_path, tiny_preset):  # noqa: F811
    dest = tmp_path / "copy"
    shutil.copytree(tiny_preset.path, dest)
    return dest


def test_round_trip_renders_identical_audio(tmp_path, tiny_preset):  # noqa: F811
    model = tiny_preset.load_model()
    again = presets.save(tmp_path / "again", model, tiny_preset.instruments, name="again")
    loaded = presets.load(again)
    assert loaded.config == tiny_preset.config and loaded.instruments == tiny_preset.instruments
    notes = [(0, 60, 2), (3, 38, 4)]
    a = NoteRenderer(tiny_preset, device="cpu").render_model_rate(notes)
    b = NoteRenderer(loaded, device="cpu").render_model_rate(notes)
    assert np.array_equal(a, b) and np.abs(a).max() > 0


def test_altered_weights_are_refused(copy):
    state = load_file(str(copy / "weights.safetensors"))
    state["decoder.synthesis.bias"] += 1e-3
    save_file(state, str(copy / "weights.safetensors"))
    with pytest.raises(PresetError, match="sha256 .* does not match preset.yaml"):
        presets.load(copy).load_model()


def test_mismatched_shape_is_refused(copy):
    data = yaml.safe_load((copy / "preset.yaml").read_text())
    state = {k: v.float() for k, v in Sing(SingConfig.tiny(4)).state_dict().items()}
    state["generator.pitch.weight"] = torch.zeros(128, 9)
    save_file(state, str(copy / "weights.safetensors"))
    data["weights"]["sha256"] = presets.sha256_file(copy / "weights.safetensors")
    (copy / "preset.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(PresetError, match=r"generator.pitch.weight has shape \[128, 9\] but the configuration needs \[128, 8\]"):
        presets.load(copy).load_model()


def test_missing_tensor_and_bad_yaml_and_version(copy):
    data = yaml.safe_load((copy / "preset.yaml").read_text())
    data["version"] = 99
    (copy / "preset.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(PresetError, match="format version 99; this sing-synth reads version 1"):
        presets.load(copy)
    (copy / "preset.yaml").write_text("format: [unclosed\n")
    with pytest.raises(PresetError, match="not valid YAML"):
        presets.load(copy)
    with pytest.raises(PresetError, match="no preset 'nope'"):
        presets.load("nope")


def test_yaml_never_executes_code(copy):
    (copy / "preset.yaml").write_text("!!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(PresetError, match="not valid YAML"):
        presets.load(copy)


def test_instrument_lookup(tiny_preset):  # noqa: F811
    p = tiny_preset
    assert p.instrument(2).name == "tiny bass" and p.instrument("2").name == "tiny bass"
    assert p.instrument("Tiny Strings").id == 1  # exact, case-insensitive
    assert p.instrument("kit").id == 3  # unique substring
    with pytest.raises(InstrumentError, match="ambiguous: 0 tiny piano; 1 tiny strings; 2 tiny bass"):
        p.instrument("tiny")
    with pytest.raises(InstrumentError, match="no instrument named 'tiny pianno'.*closest: 0 tiny piano"):
        p.instrument("tiny pianno")
    with pytest.raises(InstrumentError, match=r"no instrument 412 .*ids 0-3"):
        p.instrument(412)
    assert p.gm_instrument(48).id == 1 and p.gm_instrument(0, drums=True).id == 3
    assert p.gm_instrument(33, bank=5).id == 2  # unknown bank falls back to bank 0
