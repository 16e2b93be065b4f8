"""The command line: listings, single notes, and one-line errors with non-zero exits."""

import subprocess
import sys

import numpy as np
import pytest
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


@pytest.mark.parametrize(
    "argv, message",
    [
        (["note", "--instrument", "tuba"], "no instrument named 'tuba'"),
        (["note", "--instrument", "412"], "no instrument 412"),
        (["note", "--velocity", "0"], "velocity 0 out of range: use 1-127"),
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


def test_console_entry_point_runs():
    proc = subprocess.run([sys.executable, "-m", "sing_synth", "--version"], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.startswith("sing-synth ")
    proc = subprocess.run([sys.executable, "-m", "sing_synth", "render", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "--model-device" in proc.stdout and "song.mid" in proc.stdout
