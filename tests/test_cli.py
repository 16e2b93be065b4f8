"""The command line: listings, single notes, and one-line errors with non-zero exits."""

import shutil
import subprocess
import sys

import numpy as np
import pytest
import yaml
from engine_fixtures import one_thread, tiny_preset  # noqa: F401

from sing_synth import cli, dsp
from sing_synth.audio_file import read_wav


@pytest.fixture
def preset_path(monkeypatch, tiny_preset):  # noqa: F811
    monkeypatch.setenv("SING_SYNTH_PRESETS", str(tiny_preset.path.parent))
    return str(tiny_preset.path)


def test_presets_lists_instrument_counts(preset_path, capsys):
    assert cli.main(["presets"]) == 0
    out = capsys.readouterr().out
    assert "tiny" in out and "4 instruments" in out and "1x32 LSTM" in out
    assert "no training provenance" in out and "no evaluation metrics" in out
    from sing_synth.model import Sing, SingConfig, count_parameters

    n = count_parameters(Sing(SingConfig.tiny(4)))
    assert f"{n / 1e6:.1f} M parameters" in out


def test_presets_shows_provenance_and_metrics(tmp_path, tiny_preset, monkeypatch, capsys):  # noqa: F811
    dest = tmp_path / "lib" / "trained"
    shutil.copytree(tiny_preset.path, dest)
    data = yaml.safe_load((dest / "preset.yaml").read_text())
    data["name"] = "trained"
    data["training"] = {"corpus": {"kind": "soundfont", "notes": 1200}, "wall_time_s": {"a": 1800, "b": 1800},
                        "hardware": {"cpu": "Test CPU", "cores": 2}, "code_revision": "0123456789abcdef",
                        "steps_done": {"autoencoder": 10, "end_to_end": 0}, "complete": False}
    data["metrics"] = {"train": {"spectral_l1": 0.05}, "test": {"spectral_l1": 0.0625},
                       "test_baseline_repitch": {"spectral_l1": 0.058}}
    (dest / "preset.yaml").write_text(yaml.safe_dump(data))
    monkeypatch.setenv("SING_SYNTH_PRESETS", str(dest.parent))
    assert cli.main(["presets"]) == 0
    out = capsys.readouterr().out
    assert "trained on soundfont corpus (1200 notes) in 1.0 h on Test CPU x2 cores; code 0123456789ab" in out
    assert "steps: autoencoder 10, end_to_end 0 (training not complete)" in out
    assert "spectral L1: train 0.0500; test 0.0625; test baseline repitch 0.0580" in out


def test_instruments_lists_and_filters(preset_path, capsys):
    assert cli.main(["instruments", "--preset", preset_path]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4 and "tiny kit" in lines[3] and "drum kit" in lines[3] and "35-81" in lines[3]
    assert cli.main(["instruments", "BASS", "--preset", "tiny"]) == 0
    assert capsys.readouterr().out.split() == ["2", "tiny", "bass", "bass", "24-72"]


def test_note_renders_a_wav(preset_path, tmp_path, one_thread, capsys):  # noqa: F811
    out = tmp_path / "n.wav"
    code = cli.main(["note", "--preset", preset_path, "--instrument", "strings", "--pitch", "60", "64",
                     "--velocity", "90", "--rate", "22050", "-o", str(out)])
    assert code == 0, capsys.readouterr().err
    audio, rate = read_wav(out)
    assert rate == 22050 and audio.shape[0] == 2 * 4 * 22050 and np.isfinite(audio).all()
    assert dsp.rms_db(audio) > -90


def test_note_plays_a_key_of_the_tuning_map_from_its_source(tiny_preset, tmp_path, one_thread, capsys):  # noqa: F811
    from dataclasses import replace

    from sing_synth import preset_write
    from sing_synth.renderer import NoteRenderer

    copy = tmp_path / "tuned"
    shutil.copytree(tiny_preset.path, copy)
    preset_write.set_instruments(copy, [replace(i, played_from=((28, 30, 33),)) if i.id == 1 else i
                                        for i in tiny_preset.instruments])
    out = tmp_path / "n.wav"
    argv = ["note", "--preset", str(copy), "--instrument", "strings", "--pitch", "30", "40", "--rate", "16000", "-o", str(out)]
    assert cli.main(argv) == 0
    assert "(30 from 33, re-pitched: the preset's tuning map)" in capsys.readouterr().out
    audio, _ = read_wav(out)
    n = 4 * 16000
    renderer = NoteRenderer(tiny_preset, device="cpu")
    source, own = renderer.render_velocity(1, 33, 100), renderer.render_velocity(1, 40, 100)
    assert np.abs(audio[:n, 0] - dsp.repitch(source, -3)).max() < 1e-4  # key 30: the note of 33, three semitones down
    assert np.abs(audio[n:, 0] - own).max() < 1e-4  # key 40: its own note


@pytest.mark.parametrize(
    "argv, message",
    [
        (["note", "--instrument", "tuba"], "no instrument named 'tuba'"),
        (["note", "--instrument", "412"], "no instrument 412"),
        (["note", "--velocity", "0"], "velocity 0 out of range: use 1-127"),
        (["note", "--pitch", "60", "200"], "pitch 200 out of range: use 0-127"),
        (["note", "--rate", "100"], "sample rate 100 out of range"),
        (["instruments", "--preset", "missing-preset"], "no preset 'missing-preset'"),
    ],
)
def test_errors_are_one_line_with_a_non_zero_exit(preset_path, tmp_path, capsys, argv, message):
    if "--preset" not in argv:
        argv = [*argv, "--preset", preset_path, "-o", str(tmp_path / "x.wav")]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("sing-synth: error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "x.wav").exists()


def test_play_is_the_default_command():
    argv = cli.with_default_command(["--midi-in", "Keystation", "--instrument", "412"])
    assert argv == ["play", "--midi-in", "Keystation", "--instrument", "412"]
    args = cli.get_parser().parse_args(argv)
    assert (args.command, args.midi_in, args.instrument, args.model_device, args.preset) == (
        "play", "Keystation", "412", "auto", None)
    assert cli.with_default_command(["render", "x.mid"])[0] == "render"
    assert cli.with_default_command(["--version"]) == ["--version"]


def test_one_meaning_per_flag():
    """--device is the audio output, --model-device where the model runs, in every command."""
    parser = cli.get_parser()
    play = parser.parse_args(["play", "--device", "2", "--model-device", "cpu"])
    assert (play.device, play.model_device) == ("2", "cpu")
    for command in (["render", "x.mid"], ["note"]):
        args = parser.parse_args([*command, "--model-device", "cuda:1", "--preset", "p"])
        assert (args.model_device, args.preset) == ("cuda:1", "p") and "device" not in vars(args)
        with pytest.raises(SystemExit):
            parser.parse_args([*command, "--device", "cpu"])


def test_library_errors_are_worded_with_this_commands_flags(capsys):
    from sing_synth.errors import ConfigError, PortError

    play = cli.get_parser().parse_args(["play"])
    missing = PortError("no MIDI input chosen: name one, or open a virtual input", "midi_in")
    assert cli.explain(missing, play) == (
        "no MIDI input chosen: name one, or open a virtual input; "
        "see `sing-synth ports`; choose one with --midi-in NAME, or open one with --virtual"
    )
    size = ConfigError("block size 5 out of range: use 16-8192 frames", "blocksize")
    assert cli.explain(size, play).endswith("; change --blocksize")
    gpu = ConfigError("device cuda requested but no CUDA GPU is available; use the CPU", "model_device")
    assert cli.explain(gpu, play).endswith("choose one with --model-device (auto, cpu, cuda, cuda:N)")
    render = cli.get_parser().parse_args(["render", "x.mid"])
    assert cli.explain(size, render) == str(size)  # render has no --blocksize: the message alone
    assert cli.explain(ConfigError("tail -1 must be a non-negative number of seconds"), render).endswith("seconds")
    assert cli.main(["play", "--blocksize", "5"]) == 1  # refused before anything opens
    err = capsys.readouterr().err
    assert err == "sing-synth: error: block size 5 out of range: use 16-8192 frames (e.g. 128 or 256); change --blocksize\n"
    assert cli.main(["play", "--latency", "soon"]) == 1
    assert "latency 'soon'" in capsys.readouterr().err


def test_console_entry_point_runs():
    proc = subprocess.run([sys.executable, "-m", "sing_synth", "--version"], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.startswith("sing-synth ")
    proc = subprocess.run([sys.executable, "-m", "sing_synth", "render", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "--model-device" in proc.stdout and "song.mid" in proc.stdout


def test_cache_shows_where_and_how_much_and_clears(preset_path, tiny_preset, tmp_path, capsys, monkeypatch):  # noqa: F811
    from sing_synth.disk_cache import DiskCache

    root = tmp_path / "notes"
    store = DiskCache(root).notes(tiny_preset, 48000)
    for p in range(3):
        store.write((0, 60 + p, 3), np.zeros(1000, np.float32))
    assert cli.main(["cache", "--cache-dir", str(root), "--cache-size", "1G"]) == 0
    out = capsys.readouterr().out
    assert f"note cache: {root}" in out and "11.8 KiB of at most 1.0 GiB" in out
    assert "tiny, 48000 Hz: 3 notes, 11.8 KiB" in out  # the preset named by its hash
    monkeypatch.setenv("SING_SYNTH_CACHE", str(root))
    assert cli.main(["cache", "clear"]) == 0
    assert "cleared" in capsys.readouterr().out and not list(root.rglob("*.note"))
    assert cli.main(["cache"]) == 0 and "empty" in capsys.readouterr().out
    assert cli.main(["cache", "--cache-size", "lots"]) == 1
    assert "cache size 'lots' is not a size" in capsys.readouterr().err


def test_unwritable_outputs_are_one_line_errors_before_any_work(preset_path, tmp_path, capsys):
    """``note -o /nonexistent/n.wav`` once rendered first and failed with a FileNotFoundError;
    ``render -o`` into a read-only directory with an OSError."""
    from test_audio_file import unwritable_directory

    from sing_synth.testing import songs

    assert cli.main(["note", "--preset", preset_path, "-o", "/nonexistent/n.wav"]) == 1
    assert capsys.readouterr().err == (
        "sing-synth: error: output directory /nonexistent does not exist; create it or choose another; "
        "choose another with -o\n"
    )
    song = tmp_path / "s.mid"
    songs.song(0.1).save(song)
    ro = unwritable_directory(tmp_path)
    assert cli.main(["render", str(song), "--preset", preset_path, "-o", str(ro / "s.wav")]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"sing-synth: error: cannot write in {ro} (") and err.count("\n") == 1
    assert err.endswith("choose another directory; choose another with -o\n")
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "read-only") == ["s.mid"]


def test_odd_provenance_and_a_corrupt_preset_never_crash_the_listing(tmp_path, tiny_preset, monkeypatch, capsys):  # noqa: F811
    lib = tmp_path / "lib"
    for name, change in (
        ("odd", lambda d: d.update(training={"corpus": "x", "wall_time_s": [1], "hardware": 3, "steps_done": 7},
                                   metrics={"test": 0.5})),
        ("broken", lambda d: d.update(instruments=5)),
    ):
        shutil.copytree(tiny_preset.path, lib / name)
        data = yaml.safe_load((lib / name / "preset.yaml").read_text())
        change(data)
        data["name"] = name
        (lib / name / "preset.yaml").write_text(yaml.safe_dump(data))
    monkeypatch.setenv("SING_SYNTH_PRESETS", str(lib))
    assert cli.main(["presets"]) == 0
    out = capsys.readouterr().out
    assert "trained on unknown corpus in 0.0 h on ?" in out and "no evaluation metrics" in out
    assert "broken: unusable (preset 'broken': instruments 5 must be a non-empty list of instruments" in out
    assert cli.main(["note", "--preset", "broken", "-o", str(tmp_path / "n.wav")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("sing-synth: error: preset 'broken': instruments 5 must be") and err.count("\n") == 1


@pytest.mark.parametrize(
    "argv, message",
    [
        (["play", "--virtual", "--cache-memory", "1e9"], "note memory of 1e+09 GiB out of range; give at least 0.001 GiB "
                                                          "and at most this machine's"),
        (["play", "--virtual", "--cache-memory", "nan"], "note memory of nan GiB out of range"),
        (["play", "--virtual", "--gain", "nan"], "gain nan out of range"),
        (["play", "--virtual", "--threads", "-1"], "-1 threads out of range; use 1-1024; change --threads"),
        (["play", "--virtual", "--rate", "5"], "sample rate 5 out of range; use 8000-192000"),
        (["play", "--virtual", "--model-device", "gpu"], "unknown model device 'gpu': use auto, cpu, cuda or cuda:N"),
        (["render", "x.mid", "--model-device", "cuda:-1"], "unknown model device 'cuda:-1'"),
        (["render", "x.mid", "--cache-memory", "-1"], "note memory of -1 GiB out of range"),
        (["note", "--model-device", "bogus"], "unknown model device 'bogus'"),
    ],
)
def test_out_of_range_values_are_refused_before_anything_starts(tmp_path, argv, message, capsys):
    """No port, device, preset or file is opened: the value alone is refused, in one line."""
    assert cli.main([*argv, "--preset", str(tmp_path / "no-preset")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("sing-synth: error: ") and message in err and err.count("\n") == 1
