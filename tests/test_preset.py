"""Presets: round trip, verification of weights and shapes, format version, instrument lookup."""

import shutil

import numpy as np
import pytest
import torch
import yaml
from engine_fixtures import tiny_preset  # noqa: F401  (a seeded tiny preset in a tmp dir)
from safetensors.torch import load_file, save_file

from sing_synth import preset as presets
from sing_synth import preset_write
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
    again = preset_write.save(tmp_path / "again", model, tiny_preset.instruments, name="again")
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


def edit_yaml(copy, change) -> None:
    data = yaml.safe_load((copy / "preset.yaml").read_text())
    change(data)
    (copy / "preset.yaml").write_text(yaml.safe_dump(data))


def set_key(*path, value=None, delete=False):
    def change(data):
        node = data
        for key in path[:-1]:
            node = node[key]
        if delete:
            del node[path[-1]]
        else:
            node[path[-1]] = value

    return change


@pytest.mark.parametrize(
    "change, message",
    [
        (set_key("model", "channels", value=1_000_000_000), "model.channels is 1000000000, more than 16,384"),
        (lambda d: d["model"].update(lstm_hidden=8192, lstm_layers=16),
         r"model makes a model of [0-9,]+ parameters, more than 1,000,000,000 \(4 GiB in float32"),
        (set_key("model", "lstm_layers", value="2"), "model.lstm_layers must be a positive integer, got .2."),
        (set_key("model", "depth", value=3), "unknown model configuration keys: depth"),
        (set_key("model", value=5), "model 5 is not a mapping"),
        (set_key("sample_rate", value=0), "sample_rate 0 is not the model's rate: use 16000"),
        (set_key("velocities", value=list("abcde")), r"velocities \['a', 'b', 'c', 'd', 'e'\] must be 5 increasing"),
        (set_key("velocities", value=[25, 50, 75, 100, 200]), "must be 5 increasing MIDI velocities 1-127"),
        (set_key("velocities", value=[25, 50]), "must be 5 increasing"),
        (set_key("instruments", value=5), "instruments 5 must be a non-empty list of instruments"),
        (set_key("instruments", value=[]), "instruments .* must be a non-empty list"),
        (set_key("instruments", 0, value=5), r"instruments\[0\] 5 is not a mapping"),
        (set_key("instruments", 1, "pitch_range", value=[200, -5]),
         r"instruments\[1\].pitch_range \[200, -5\] out of range: use \[low, high\] with 0 <= low <= high <= 127"),
        (set_key("instruments", 1, "id", value=0), r"instruments\[1\].id 0 is the id of instruments\[0\] too"),
        (set_key("instruments", 1, "id", value=4), r"instruments\[1\].id 4 is not an instrument of the model: use 0-3"),
        (set_key("instruments", 1, "id", value="1"), r"instruments\[1\].id '1' is not an instrument"),
        (set_key("instruments", 1, "name", value=None), r"instruments\[1\].name \(missing\) must be a non-empty"),
        (set_key("instruments", 1, "gm_program", value=300), "gm_program 300 out of range: use a General MIDI program"),
        (set_key("instruments", 3, "drum_kit", value="yes"), "drum_kit 'yes' must be true or false"),
        (set_key("instruments", 3, "colour", value="red"), r"instruments\[3\] field 'colour' is unknown"),
        (set_key("instruments", 1, "played_from", value=5), r"instruments\[1\].played_from 5 must be a list of \[first, last"),
        (set_key("instruments", 1, "played_from", value=[["a", 1, 2]]), r"played_from \['a', 1, 2\] is not a \[first, last, source\]"),
        (set_key("instruments", 1, "played_from", value=[[30, 28, 31]]), r"played_from \[30, 28, 31\] leaves the pitch range 28-96"),
        (set_key("instruments", 1, "played_from", value=[[20, 25, 31]]), r"leaves the pitch range 28-96"),
        (set_key("instruments", 1, "played_from", value=[[28, 30, 31], [30, 32, 33]]), r"\[30, 32, 33\] overlaps another run"),
        (set_key("instruments", 1, "played_from", value=[[28, 30, 31], [31, 31, 40]]),
         r"\[28, 30, 31\] plays from a key that is itself played from another"),
        (set_key("weights", "sha256", delete=True), r"weights.sha256 \(missing\) is missing: it is required"),
        (set_key("weights", "sha256", value="abc"), "weights.sha256 'abc' is not 64 hexadecimal digits"),
        (set_key("weights", value=None), r"weights.sha256 \(missing\) is missing"),
        (set_key("training", value=[1, 2]), r"training \[1, 2\] must be a mapping"),
        (set_key("name", value=5), "name 5 must be a non-empty string"),
    ],
)
def test_a_corrupt_preset_yaml_is_refused_with_the_field_and_its_range(copy, change, message):
    """Each of these once ended in a traceback, tried to allocate terabytes, or loaded unchecked."""
    edit_yaml(copy, change)
    with pytest.raises(PresetError, match=message) as info:
        presets.load(copy)
    assert "\n" not in str(info.value) and str(info.value).startswith("preset 'copy': ")


def test_weights_with_nan_are_refused_even_with_a_matching_hash(copy):
    state = load_file(str(copy / "weights.safetensors"))
    state["decoder.context.weight"][0, 0, 0] = float("nan")
    save_file(state, str(copy / "weights.safetensors"))
    edit_yaml(copy, set_key("weights", "sha256", value=presets.sha256_file(copy / "weights.safetensors")))
    with pytest.raises(PresetError, match="tensor decoder.context.weight holds NaN or infinite values"):
        presets.load(copy).load_model()


def test_binary_garbage_and_deep_nesting_are_not_yaml(copy):
    for text in (b"\xff\xfe\x00\x01garbage\x00", b"[" * 100_000, b"format: \x00"):
        (copy / "preset.yaml").write_bytes(text)
        with pytest.raises(PresetError):
            presets.load(copy)


def test_the_model_size_is_counted_without_building_it():
    for config in (SingConfig.tiny(4), SingConfig.small(669), SingConfig.paper()):
        with torch.device("meta"):
            assert config.parameters == sum(p.numel() for p in Sing(config).parameters())


def test_loading_a_model_leaves_the_meta_device_alone(tiny_preset):  # noqa: F811
    """A model's shapes are checked against a model built on the CPU (milliseconds): built on the
    "meta" device, its initialisation imported sympy and some 800 modules more, about 1 s of every
    cold render and cold start (bench/RESULTS.md, issue 13). In a new interpreter, as a render runs."""
    import subprocess
    import sys

    code = (
        "import sys\nfrom sing_synth import preset\n"
        f"preset.load({str(tiny_preset.path)!r}).load_model()\n"
        "print(sorted(m for m in ('sympy', 'mpmath', 'torch._dynamo') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_a_save_stopped_midway_leaves_nothing(tmp_path, tiny_preset, monkeypatch):  # noqa: F811
    """A learn or export job stopped by a signal while it writes its preset: no temporary file, and
    no half preset where there was none."""
    import signal

    import sing_synth.preset_write as module
    from sing_synth.signals import Stopped

    def stopped(*args):
        raise Stopped(signal.SIGTERM)  # what a SIGTERM raises inside the command line

    model = tiny_preset.load_model()
    shutil.copytree(tiny_preset.path, tmp_path / "old")
    monkeypatch.setattr(module, "sha256_file", stopped)  # after the weights, before the yaml
    with pytest.raises(Stopped):
        preset_write.save(tmp_path / "new", model, tiny_preset.instruments)
    assert not (tmp_path / "new").exists()
    with pytest.raises(Stopped):
        preset_write.save(tmp_path / "old", model, tiny_preset.instruments)
    assert sorted(p.name for p in (tmp_path / "old").iterdir()) == ["preset.yaml", "weights.safetensors"]


def test_a_preset_parsed_before_is_read_back_as_json_and_still_validated(copy, note_cache_dir):
    """libyaml is slow on a big instrument table: the parsed document is kept as JSON in the cache
    directory, keyed by the yaml's bytes; a changed yaml is parsed again, a damaged JSON ignored."""
    first = presets.load(copy)
    parsed = list((note_cache_dir / "presets").glob("*.json"))
    assert len(parsed) == 1
    assert presets.load(copy) == first  # from the JSON
    parsed[0].write_text("{not json")
    assert presets.load(copy) == first  # a damaged entry: parsed again (and written again)
    text = parsed[0].read_bytes()
    parsed[0].write_bytes(text.replace(b"tiny piano", b"tiny pianO"))  # damaged, and still JSON
    assert presets.load(copy) == first and parsed[0].read_bytes() == text
    data = yaml.safe_load((copy / "preset.yaml").read_text())
    data["instruments"][0]["name"] = "renamed piano"
    (copy / "preset.yaml").write_text(yaml.safe_dump(data))
    assert presets.load(copy).instruments[0].name == "renamed piano"
    assert len(list((note_cache_dir / "presets").glob("*.json"))) == 2
    data["version"] = 99  # the JSON of a refused document is kept, and refused again: it is validated each time
    (copy / "preset.yaml").write_text(yaml.safe_dump(data))
    for _ in range(2):
        with pytest.raises(PresetError, match="format version 99"):
            presets.load(copy)


def test_a_tuning_map_is_kept_by_load_and_set_instruments(copy):
    """``played_from`` (written by ``python -m train tune``) loads as runs and as a key -> source map,
    and ``set_instruments`` rewrites the table without touching the weights."""
    from dataclasses import replace

    p = presets.load(copy)
    table = [replace(i, played_from=((28, 31, 33), (40, 40, 41))) if i.id == 1 else i for i in p.instruments]
    preset_write.set_instruments(copy, table, {"tuning": {"cents": 50.0}})
    q = presets.load(copy)
    assert q.instruments[1].played_from == ((28, 31, 33), (40, 40, 41))
    assert q.instruments[1].sources() == {28: 33, 29: 33, 30: 33, 31: 33, 40: 41}
    assert q.instruments[0].played_from == () and "played_from" not in q.instruments[0].to_dict()
    assert q.training == {**p.training, "tuning": {"cents": 50.0}}
    assert q.sha256 == p.sha256 and q.load_model() is not None  # the weights are as they were
