"""``sing-synth render``'s outputs: the dry engine without sends, loudness normalising, stems."""

from __future__ import annotations

import re

import mido
import numpy as np
import pytest
from engine_fixtures import HarmonicSource, one_thread, tiny_preset, weightless_preset, write_midi  # noqa: F401
from job_fixtures import leftovers, song_file

from sing_synth import cli, render
from sing_synth.audio_file import read_wav

M = mido.Message


def test_no_sends_and_no_buses_render_the_dry_engine_exactly(tmp_path, tiny_preset, one_thread, capsys):  # noqa: F811
    """``--no-reverb --no-chorus``, a song whose channels send nothing (CC91 = 0; CC93 is 0 by
    default) and ``--no-reverb`` alone all give the same bytes; the default render has a room."""
    song = song_file(tmp_path / "song.mid")
    mid = mido.MidiFile(song)
    mid.tracks[1].insert(0, M("control_change", channel=0, control=91, value=0, time=0))
    mid.tracks[2].insert(0, M("control_change", channel=1, control=91, value=0, time=0))
    mid.tracks[3].insert(0, M("control_change", channel=9, control=91, value=0, time=0))
    mid.save(tmp_path / "dry.mid")
    preset = ["--preset", str(tiny_preset.path)]
    outputs = {}
    for name, argv in {
        "no buses": [str(song), "--no-reverb", "--no-chorus"],
        "no sends": [str(tmp_path / "dry.mid")],
        "no reverb": [str(song), "--no-reverb"],
        "default": [str(song)],
    }.items():
        out = tmp_path / f"{name}.wav"
        assert cli.main(["render", *argv, *preset, "-o", str(out), "--format", "float"]) == 0
        outputs[name] = out.read_bytes()
    assert outputs["no sends"] == outputs["no buses"] == outputs["no reverb"]
    dry, wet = read_wav(tmp_path / "no buses.wav")[0], read_wav(tmp_path / "default.wav")[0]
    assert wet.shape == dry.shape  # this preset's noise notes sound until the tail's cap either way
    assert np.sqrt(np.mean((wet - dry) ** 2)) > 0.01 * np.sqrt(np.mean(dry**2))  # the reverb of CC91 40
    capsys.readouterr()
    assert cli.main(["render", str(song), *preset, "--room-size", "2"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == "sing-synth: error: room size 2 out of range; use 0-1 (default 0.5); change --room-size"
    assert not (tmp_path / "song.wav").exists()


def test_normalize_lands_on_the_target_and_says_so(tmp_path, tiny_preset, one_thread, capsys):  # noqa: F811
    """``--normalize -16``: the whole render measured (BS.1770) and scaled to -16 LUFS, within
    0.5 LU by pyloudnorm too, its true peak under the ceiling; the figures in the summary line."""
    pyloudnorm = pytest.importorskip("pyloudnorm")
    from sing_synth.loudness import Meter, db

    song = song_file(tmp_path / "song.mid")
    out = tmp_path / "loud.wav"
    argv = ["render", str(song), "--preset", str(tiny_preset.path), "-o", str(out), "--format", "pcm24"]
    assert cli.main([*argv, "--normalize", "-16", "--stems"]) == 0
    line = capsys.readouterr().out
    stems = sorted(p.name for p in tmp_path.glob("loud-ch*.wav"))
    assert len(stems) == 3 and stems[0].startswith("loud-ch01-") and stems[2].startswith("loud-ch10-")
    assert "3 stems beside it" in line
    x, rate = read_wav(out)
    assert pyloudnorm.Meter(rate).integrated_loudness(x.astype(np.float64)) == pytest.approx(-16.0, abs=0.5)
    meter = Meter(rate)
    meter.add(x)
    assert meter.loudness() == pytest.approx(-16.0, abs=0.5) and db(meter.true_peak) <= -1.0 + 0.05
    before, after = (float(v) for v in re.search(r"loudness (-?[\d.]+) -> (-?[\d.]+) LUFS", line).groups())
    assert after == pytest.approx(meter.loudness(), abs=0.05) and before < -20.0, line  # (this preset is quiet)
    assert "dBTP" in line and leftovers(tmp_path) == []  # the spilled float file is gone
    # the same render without --normalize is the same audio, louder (its peaks held by the limiter:
    # the tiny model's notes are dense noise, whose true peak stands 15 dB above its loudness)
    plain = render.render_file(song, tmp_path / "plain.wav", tiny_preset, fmt="float")
    y, _ = read_wav(plain.path)
    assert y.shape == x.shape and np.corrcoef(x[:, 0], y[:, 0])[0, 1] > 0.8
    assert "limiter up to" in line
    capsys.readouterr()
    assert cli.main([*argv, "--normalize", "-100"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.endswith("change --normalize") and "-70 to 0" in err, err


def stem_song(path):
    """Piano (channel 1), bass (2) whose pan and reverb send move while it plays, drums (10)."""
    piano = [M("program_change", channel=0, program=0, time=0), M("control_change", channel=0, control=93, value=90)]
    for k in range(4):
        piano += [M("note_on", channel=0, note=60 + 4 * k, velocity=90, time=0), M("note_off", channel=0, note=60 + 4 * k, time=240)]
    bass = [M("program_change", channel=1, program=1, time=0), M("note_on", channel=1, note=40, velocity=100, time=0),
            M("control_change", channel=1, control=10, value=20, time=200), M("control_change", channel=1, control=91, value=120, time=100),
            M("control_change", channel=1, control=7, value=60, time=100), M("note_off", channel=1, note=40, time=400)]
    drums = []
    for _ in range(4):
        drums += [M("note_on", channel=9, note=38, velocity=100, time=0), M("note_off", channel=9, note=38, time=240)]
    return write_midi(path, [piano, bass, drums])


def test_stems_add_up_to_the_mix(tmp_path):
    """--stems: one file per channel that sounds, named by channel and instrument, as long as the
    mix; at a gain where the limiter never bends the mix, they add up to it (1e-4)."""
    song = stem_song(tmp_path / "song.mid")
    preset = weightless_preset()
    res = render.render_file(song, tmp_path / "mix.wav", preset, source=HarmonicSource(), fmt="float", gain=0.3,
                             stems=True)
    assert sorted(p.name for p in res.stems.values()) == [
        "mix-ch01-soft-organ.wav", "mix-ch02-bright-saw.wav", "mix-ch10-test-kit.wav"
    ]  # fmt: skip
    mix, _ = read_wav(res.path)
    stems = [read_wav(p)[0] for p in res.stems.values()]
    assert all(s.shape == mix.shape for s in stems)  # sample-aligned
    assert np.max(np.abs(mix)) < 0.85  # below the limiter's knee
    assert np.max(np.abs(sum(stems) - mix)) <= 1e-4
    assert all(np.max(np.abs(s)) > 0.01 for s in stems)
    # the mix of a render with stems is the render without them, bit for bit
    alone = render.render_file(song, tmp_path / "alone.wav", preset, source=HarmonicSource(), fmt="float", gain=0.3)
    assert alone.path.read_bytes()[44:] == res.path.read_bytes()[44:] and alone.frames == res.frames
    # normalised, the stems get the same gain: they still add up to the mix
    loud = render.render_file(song, tmp_path / "n.wav", preset, source=HarmonicSource(), fmt="float", gain=0.3,
                              stems=True, normalize=-20.0)
    mix, _ = read_wav(loud.path)
    stems = [read_wav(p)[0] for p in loud.stems.values()]
    assert np.max(np.abs(sum(stems) - mix)) <= 1e-4 and loud.loudness.after_lufs == pytest.approx(-20.0, abs=0.1)
    assert leftovers(tmp_path) == []


def test_stems_of_a_channel_that_changes_instrument_and_a_silent_channel(tmp_path):
    tracks = [[M("program_change", channel=2, program=0, time=0), M("note_on", channel=2, note=60, velocity=90),
               M("note_off", channel=2, note=60, time=240), M("program_change", channel=2, program=1, time=0),
               M("note_on", channel=2, note=62, velocity=90), M("note_off", channel=2, note=62, time=240),
               M("control_change", channel=5, control=7, value=90, time=0)]]  # fmt: skip
    song = write_midi(tmp_path / "song.mid", tracks)
    res = render.render_file(song, tmp_path / "s.wav", weightless_preset(), source=HarmonicSource(), stems=True)
    assert [p.name for p in res.stems.values()] == ["s-ch03-soft-organ+bright-saw.wav"]
