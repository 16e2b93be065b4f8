"""``sing-synth render``: MIDI files to WAV/FLAC through the engine, end to end.

Two kinds of note sources: a tiny untrained SING preset through the NoteRenderer (the real
CLI path, seeded) and ``HarmonicSource`` (real pitched tones) where timing is measured.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import wave

import mido
import numpy as np
import pytest
from engine_fixtures import RATE, HarmonicSource, one_thread, tiny_preset, weightless_preset, write_midi  # noqa: F401

from sing_synth import cli, commands, render
from sing_synth.audio_file import read_wav
from sing_synth.effects import EffectSettings
from sing_synth.errors import ConfigError, InstrumentError, MidiFileError, SingError
from sing_synth.testing import songs

M = mido.Message


def song_file(path, seconds_per_note: float = 0.25, channels=(0, 1, 9)):
    """A short three-channel song: piano, strings (program 48), drums, with a pedal and a bend."""
    tracks = [
        [mido.MetaMessage("set_tempo", tempo=500000, time=0), mido.MetaMessage("set_tempo", tempo=400000, time=960)]
    ]
    for ch in channels:
        msgs = [M("program_change", channel=ch, program={0: 0, 1: 48}.get(ch, 0), time=0)]
        if ch == 0:
            msgs.append(M("control_change", channel=0, control=64, value=127, time=0))
        for k in range(6):
            pitch = 38 if ch == 9 else 48 + 12 * ch + 2 * k
            msgs += [M("note_on", channel=ch, note=pitch, velocity=40 + 15 * k, time=0)]
            if ch == 1 and k == 3:
                msgs.append(M("pitchwheel", channel=1, pitch=4000, time=60))
            msgs.append(M("note_off", channel=ch, note=pitch, time=int(480 * seconds_per_note / 0.5)))
        tracks.append(msgs)
    return write_midi(path, tracks)


def parse(argv):
    """``sing-synth render ARGV`` parsed by the command line's parser, the model on the CPU."""
    return cli.get_parser().parse_args(["render", *argv, "--model-device", "cpu"])


def leftovers(directory):
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


def test_cli_render_with_a_tiny_preset(tmp_path, tiny_preset, one_thread, capsys):  # noqa: F811
    song = song_file(tmp_path / "song.mid")
    before = song.read_bytes()
    assert commands.cmd_render(parse([str(song), "--preset", str(tiny_preset.path)])) == 0
    out = tmp_path / "song.wav"  # the default: beside the input
    with wave.open(str(out)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (2, 2, 44100)
    x, rate = read_wav(out)
    assert rate == 44100 and np.max(np.abs(x)) > 1e-3
    assert song.read_bytes() == before and leftovers(tmp_path) == []
    assert "wrote" in capsys.readouterr().out
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask  # not the temporary file's 0600
    # the sound has died away at the end, and the file is not padded past that
    assert np.max(np.abs(x[-10:])) < 1e-3


def test_two_renders_are_bit_identical(tmp_path, tiny_preset, one_thread):  # noqa: F811
    song = song_file(tmp_path / "song.mid")
    a = render.render_file(song, tmp_path / "a.wav", tiny_preset, model_device="cpu")
    render.render_file(song, tmp_path / "b.wav", tiny_preset, model_device="cpu")
    assert (tmp_path / "a.wav").read_bytes() == (tmp_path / "b.wav").read_bytes()
    assert a.notes_rendered == a.notes_needed > 10 and a.stats["notes_played"] == 18
    # a warm note source renders nothing and gives the same bytes
    from sing_synth.note_source import DictNoteSource

    source = DictNoteSource()
    render.render_file(song, tmp_path / "c.wav", tiny_preset, source=source, model_device="cpu")
    warm = render.render_file(song, tmp_path / "d.wav", tiny_preset, source=source, renderer=object())
    assert warm.notes_rendered == 0
    assert (tmp_path / "d.wav").read_bytes() == (tmp_path / "a.wav").read_bytes()


@pytest.mark.parametrize(
    "name, fmt", [("x.wav", "pcm24"), ("x.wav", "float"), ("x.flac", "pcm16"), ("x.flac", "pcm24")]
)
def test_output_formats_hold_the_same_audio(tmp_path, name, fmt):
    if name.endswith(".flac"):
        pytest.importorskip("soundfile", reason="FLAC output needs the soundfile package")
    song = song_file(tmp_path / "song.mid")
    preset = weightless_preset()
    ref = render.render_file(song, tmp_path / "ref.wav", preset, source=HarmonicSource(), fmt="float")
    reference, _ = read_wav(ref.path)
    out = render.render_file(song, tmp_path / name, preset, source=HarmonicSource(), fmt=fmt).path
    if name.endswith(".flac"):
        import soundfile as sf

        x, rate = sf.read(out, dtype="float32")
        assert sf.info(out).subtype == {"pcm16": "PCM_16", "pcm24": "PCM_24"}[fmt]
    else:
        x, rate = read_wav(out)
    assert rate == RATE and x.shape == reference.shape
    step = 2.0 / (2**16 if fmt == "pcm16" else 2**24)
    assert np.max(np.abs(x - reference)) <= step


def test_a_note_at_time_t_starts_at_sample_round_t_times_rate(tmp_path):
    """Ticks chosen so that t * rate is not a whole number of samples."""
    preset = weightless_preset()
    for rate in (44100, 48000, 22050):
        ticks = 1237
        path = write_midi(
            tmp_path / "t.mid", [[M("note_on", note=69, velocity=127, time=ticks), M("note_off", note=69, time=100)]]
        )
        t = ticks / 480 * 0.5
        out = render.render_file(
            path, tmp_path / "t.wav", preset, source=HarmonicSource(rate), rate=rate, fmt="float"
        ).path
        x, _ = read_wav(out)
        assert int(np.nonzero(x[:, 0])[0][0]) == round(t * rate)


def test_the_file_ends_when_the_sound_has_died_away(tmp_path):
    preset = weightless_preset()
    # released at 0.5 s: -80 dB is reached 0.25 s later
    path = write_midi(
        tmp_path / "a.mid", [[M("note_on", note=60, velocity=100, time=0), M("note_off", note=60, time=480)]]
    )
    dry = EffectSettings.dry()
    res = render.render_file(path, tmp_path / "a.wav", preset, source=HarmonicSource(), fmt="float", effects=dry)
    assert 0.6 < res.duration < 0.8
    # with the reverb (on by default, CC91 40), the file goes on until its tail is below -80 dBFS too
    wet = render.render_file(path, tmp_path / "w.wav", preset, source=HarmonicSource(), fmt="float")
    x, _ = read_wav(wet.path)
    assert wet.duration > res.duration + 0.3 and np.max(np.abs(x[-RATE // 100 :])) < 3e-4  # -80 dBFS: 1e-4
    # a held sustaining note with the pedal never released: cut at the cap, with a fade
    msgs = [
        M("control_change", control=64, value=127, time=0),
        M("note_on", note=60, velocity=100, time=0),
        M("note_off", note=60, time=480),
    ]
    path = write_midi(tmp_path / "b.mid", [msgs])
    res = render.render_file(path, tmp_path / "b.wav", preset, source=HarmonicSource(), tail=2.0, fmt="float", effects=dry)
    assert res.duration == pytest.approx(2.5, abs=1 / RATE)
    x, _ = read_wav(res.path)
    assert x[-1, 0] == 0.0 and np.max(np.abs(x[-RATE // 500 :])) < 0.25 * np.max(np.abs(x[RATE : 2 * RATE]))


@pytest.mark.parametrize("kind", ["truncated", "random", "missing"])
def test_bad_input_gives_a_clean_error_and_no_output(tmp_path, kind):
    song = song_file(tmp_path / "song.mid")
    bad = tmp_path / "bad.mid"
    if kind == "truncated":
        bad.write_bytes(song.read_bytes()[:-7])
    elif kind == "random":
        bad.write_bytes(np.random.default_rng(3).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    with pytest.raises(MidiFileError) as info:
        commands.cmd_render(parse([str(bad), "-o", str(tmp_path / "out.wav"), "--preset", str(tmp_path)]))
    assert "\n" not in str(info.value)
    assert not (tmp_path / "out.wav").exists() and leftovers(tmp_path) == []


def test_lenient_renders_a_truncated_file(tmp_path):
    song = song_file(tmp_path / "song.mid", channels=(0,))
    bad = tmp_path / "bad.mid"
    bad.write_bytes(song.read_bytes()[:-9])
    res = render.render_file(bad, tmp_path / "out.wav", weightless_preset(), source=HarmonicSource(), lenient=True)
    assert res.path.exists() and any("truncated" in w for w in res.warnings)


def test_a_failed_render_leaves_no_partial_file(tmp_path):
    song = song_file(tmp_path / "song.mid")
    out = tmp_path / "out.wav"
    out.write_bytes(b"previous")

    class Broken:
        output_rate = RATE

        def render(self, notes):
            raise RuntimeError("model exploded")

    with pytest.raises(RuntimeError):
        render.render_file(song, out, weightless_preset(), renderer=Broken())
    assert out.read_bytes() == b"previous" and leftovers(tmp_path) == []

    class Interrupting(HarmonicSource):
        calls = 0

        def find(self, *key):
            Interrupting.calls += 1
            if Interrupting.calls > 5:
                raise KeyboardInterrupt
            return super().find(*key)

    source = Interrupting()
    source.add((0, 48, 0), np.zeros(10, np.float32))
    with pytest.raises(KeyboardInterrupt):
        render.render_file(song, out, weightless_preset(), source=source, renderer=object())
    assert out.read_bytes() == b"previous" and leftovers(tmp_path) == []


def test_bad_options_are_refused_before_anything_is_written(tmp_path):
    song = song_file(tmp_path / "song.mid")
    preset = weightless_preset()
    cases = [
        ({"out_path": song}, ConfigError, "is the input"),
        ({"out_path": tmp_path / "x.mp3"}, ConfigError, "unknown extension"),
        ({"out_path": tmp_path / "x.flac", "fmt": "float"}, ConfigError, "FLAC has no float"),
        ({"out_path": tmp_path / "no" / "x.wav"}, ConfigError, "does not exist"),
        ({"rate": 100}, ConfigError, "sample rate"),
        ({"polyphony": 0}, ConfigError, "polyphony"),
        ({"gain": float("nan")}, ConfigError, "gain"),
        ({"instrument": "tuba"}, InstrumentError, "tuba"),
        ({"threads": -1}, ConfigError, "-1 threads out of range; use 1-1024"),
        ({"batch_size": 0}, ConfigError, "batch size 0 out of range; use 1-1024"),
        ({"tail": 1e9}, ConfigError, "tail 1e[+]09 s out of range; use 0-600 seconds"),
        ({"max_length": -1}, ConfigError, "longest song -1 s out of range"),
    ]
    for kwargs, error, match in cases:
        kwargs.setdefault("out_path", tmp_path / "out.wav")
        with pytest.raises(error, match=match):
            render.render_file(song, preset=preset, source=HarmonicSource(), **kwargs)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["song.mid"]
    assert issubclass(ConfigError, SingError)


def test_drums_without_a_kit_warn_once_and_instrument_override(tmp_path, caplog):
    song = song_file(tmp_path / "song.mid")
    no_kit = weightless_preset([i for i in weightless_preset().instruments if not i.drum_kit])
    res = render.render_file(song, tmp_path / "o.wav", no_kit, source=HarmonicSource())
    assert res.stats["notes_skipped"] == 6
    assert sum("no drum kit" in r.getMessage() for r in caplog.records) == 1
    source = HarmonicSource()
    res = render.render_file(song, tmp_path / "p.wav", weightless_preset(), source=source, instrument="plucked")
    assert {k[0] for k in source.notes} == {2, 3}  # every melodic channel plays instrument 2, drums keep the kit


def test_the_cli_entry_point_renders(tmp_path, tiny_preset, one_thread, capsys):  # noqa: F811
    song = song_file(tmp_path / "song.mid")
    code = cli.main(["render", str(song), "-o", str(tmp_path / "o.wav"), "--preset", str(tiny_preset.path)])
    assert code == 0 and (tmp_path / "o.wav").exists()
    assert cli.main(["render", str(tmp_path / "missing.mid"), "--preset", str(tiny_preset.path)]) != 0
    # the model's device is --model-device: --device (the audio output of live play) is no render option
    with pytest.raises(SystemExit):
        cli.main(["render", str(song), "--device", "cpu"])
    capsys.readouterr()
    bad = tmp_path / "bad.mid"
    bad.write_bytes(song.read_bytes()[:-7])
    assert cli.main(["render", str(bad), "--preset", str(tiny_preset.path)]) == 1
    err = capsys.readouterr().err  # the library's fact, then the flag that changes it
    assert err.startswith("sing-synth: error: ") and err.rstrip().endswith("--lenient renders what can be read")


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


def test_progress_is_drawn_on_a_terminal_and_cleared(tmp_path):
    import io

    from sing_synth.progress import Progress

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    tty, pipe = Terminal(), io.StringIO()
    song = song_file(tmp_path / "song.mid")
    class Renderer:
        output_rate = RATE

        def render(self, keys):
            return [HarmonicSource().get(*k) for k in keys]

    for stream in (tty, pipe):
        source = HarmonicSource()
        source.missing = lambda keys: list(keys)[:3]  # three notes go through the (fake) renderer
        render.render_file(song, tmp_path / "o.wav", weightless_preset(), Renderer(), source=source,
                           progress=Progress(stream=stream))
    drawn = tty.getvalue()
    assert "rendering notes [" in drawn and "3/3 notes" in drawn and "mixing [" in drawn and "100.0%" in drawn
    assert drawn.endswith("\r") and "\n" not in drawn  # the line is cleared for what follows
    assert pipe.getvalue() == ""  # a log gets a line every 30 s: none in a short render


def test_a_song_past_the_longest_length_is_refused_up_front(tmp_path, tiny_preset, capsys):  # noqa: F811
    """A note after 10 hours: refused before any note is rendered, with the song's length and the flag."""
    path = write_midi(tmp_path / "late.mid", [[M("note_on", note=60, velocity=90, time=10 * 3600 * 2 * 480),
                                               M("note_off", note=60, time=480)]])
    argv = ["render", str(path), "-o", str(tmp_path / "late.wav"), "--preset", str(tiny_preset.path)]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert err == (
        "sing-synth: error: late.mid lasts 10:00:01 (to its last event), longer than the longest song rendered "
        "(4:00:00); a corrupt delta time can do this: check the file, or raise the limit if the song is really "
        "this long; change --max-length\n"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["late.mid"]
    assert cli.get_parser().parse_args(["render", "x.mid", "--max-length", "11h"]).max_length == 11 * 3600
    assert cli.get_parser().parse_args(["render", "x.mid", "--max-length", "90m"]).max_length == 5400
    with pytest.raises(SystemExit):
        cli.get_parser().parse_args(["render", "x.mid", "--max-length", "long"])


RENDER_AND_REPORT = """
import json, sys
from sing_synth import cli
code = cli.main(sys.argv[1:])
print(json.dumps({"code": code, "torch": "torch" in sys.modules}))
"""


def render_in_a_process(*argv):
    """``sing-synth render ARGV`` in a new interpreter: its exit code, stdout, and whether it imported torch."""
    import json
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", RENDER_AND_REPORT, "render", *map(str, argv)], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    *lines, last = proc.stdout.strip().splitlines()
    report = json.loads(last)
    assert report["code"] == 0, proc.stderr[-3000:]
    return "\n".join(lines), report["torch"]


def test_a_second_render_in_another_process_reuses_every_note_without_torch(tmp_path, tiny_preset, note_cache_dir):  # noqa: F811
    song = song_file(tmp_path / "song.mid")
    out, torch_imported = render_in_a_process(song, "-o", tmp_path / "a.wav", "--preset", tiny_preset.path,
                                              "--model-device", "cpu")
    needed = int(out.split(" of ")[1].split()[0])
    assert f"{needed} of {needed} notes rendered" in out and torch_imported
    assert len(list(note_cache_dir.rglob("*.note"))) == needed
    out, torch_imported = render_in_a_process(song, "-o", tmp_path / "b.wav", "--preset", tiny_preset.path)
    assert f"0 of {needed} notes rendered" in out and f"{needed} from the cache" in out
    assert not torch_imported  # nothing new: the model is never loaded
    assert (tmp_path / "a.wav").read_bytes() == (tmp_path / "b.wav").read_bytes()


def test_damaged_cache_entries_are_rendered_again(tmp_path, tiny_preset, one_thread, note_cache_dir):  # noqa: F811
    song = song_file(tmp_path / "song.mid")
    first = render.render_file(song, tmp_path / "a.wav", tiny_preset, model_device="cpu")
    files = sorted(note_cache_dir.rglob("*.note"))
    assert first.notes_rendered == first.notes_needed == len(files) and first.notes_loaded == 0
    files[0].write_bytes(files[0].read_bytes()[:-100])  # truncated
    data = bytearray(files[1].read_bytes())
    data[len(data) // 2] ^= 0x20  # a flipped bit in the samples
    files[1].write_bytes(bytes(data))
    again = render.render_file(song, tmp_path / "b.wav", tiny_preset, model_device="cpu")
    assert again.notes_rendered == 2 and again.notes_loaded == first.notes_needed - 2
    assert (tmp_path / "a.wav").read_bytes() == (tmp_path / "b.wav").read_bytes()
    assert len(list(note_cache_dir.rglob("*.note"))) == len(files)  # written again, whole


def test_no_cache_neither_reads_nor_writes_and_renders_the_same(tmp_path, tiny_preset, one_thread, note_cache_dir):  # noqa: F811
    song = song_file(tmp_path / "song.mid")
    cached = render.render_file(song, tmp_path / "a.wav", tiny_preset, model_device="cpu")
    assert cached.notes_rendered > 0 and list(note_cache_dir.rglob("*.note"))
    args = parse([str(song), "-o", str(tmp_path / "b.wav"), "--preset", str(tiny_preset.path), "--no-cache"])
    assert commands.disk_cache(args) is False
    bypass = render.render_file(song, tmp_path / "b.wav", tiny_preset, model_device="cpu", cache=False)
    assert bypass.notes_rendered == cached.notes_needed and bypass.notes_loaded == 0
    assert (tmp_path / "a.wav").read_bytes() == (tmp_path / "b.wav").read_bytes()
    elsewhere = tmp_path / "elsewhere"
    args = parse([str(song), "--cache-dir", str(elsewhere), "--cache-size", "1G", "--preset", str(tiny_preset.path)])
    assert commands.cmd_render(args) == 0
    assert len(list(elsewhere.rglob("*.note"))) == cached.notes_needed


def test_a_render_reuses_the_notes_live_play_cached(tmp_path, tiny_preset, one_thread):  # noqa: F811
    from sing_synth import midi_file
    from sing_synth.cache import NoteCache
    from sing_synth.cache_filler import CacheFiller
    from sing_synth.channels import InstrumentMap
    from sing_synth.renderer import NoteRenderer

    song = song_file(tmp_path / "song.mid")
    needed = midi_file.needed_notes(midi_file.read(song, 44100), InstrumentMap(tiny_preset))
    live = NoteCache(tiny_preset, 44100)  # the default directory, as the session uses
    filler = CacheFiller(live, NoteRenderer(tiny_preset, device="cpu", output_rate=44100)).start()
    try:
        filler.schedule(needed[:5])
        assert filler.wait(needed[:5], timeout=60)
    finally:
        filler.stop()
    res = render.render_file(song, tmp_path / "a.wav", tiny_preset, model_device="cpu")
    assert res.notes_loaded == 5 and res.notes_rendered == len(needed) - 5


def handles(pid: int, sig: int) -> bool:
    """Whether process ``pid`` has installed a handler for ``sig`` (Linux: SigCgt in /proc)."""
    with open(f"/proc/{pid}/status") as f:
        mask = next(line for line in f if line.startswith("SigCgt:")).split()[1]
    return bool(int(mask, 16) >> (sig - 1) & 1)


@pytest.mark.parametrize(
    "command, sig, when",
    [("render", signal.SIGTERM, "mixing"), ("render", signal.SIGHUP, "start"), ("note", signal.SIGTERM, "start"),
     ("learn", signal.SIGTERM, "start")],
)
def test_a_signal_stops_a_job_cleanly(tmp_path, tiny_preset, command, sig, when):  # noqa: F811
    """SIGTERM a few seconds into a long render once left its .part file behind: now SIGTERM and
    SIGHUP stop any job like Ctrl-C, with nothing left and the exit status 128 + signal."""
    out = tmp_path / "out"
    out.mkdir()
    if command == "render":
        song = tmp_path / "long.mid"
        songs.song(10).save(song)
        argv = ["render", str(song), "-o", str(out / "long.wav"), "--rate", "8000"]
    elif command == "note":
        argv = ["note", "--pitch", *map(str, range(30, 90)), "-o", str(out / "n.wav")]
    else:
        import soundfile

        (tmp_path / "rec").mkdir()
        t = np.arange(32000) / 16000
        soundfile.write(str(tmp_path / "rec" / "C4.wav"), 0.3 * np.sin(2 * np.pi * 261.63 * t), 16000)
        argv = ["learn", str(tmp_path / "rec"), "--name", "Sine", "-o", str(out / "mine")]
    proc = subprocess.Popen(
        [sys.executable, "-m", "sing_synth", *argv, "--preset", str(tiny_preset.path), "--model-device", "cpu"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if handles(proc.pid, sig) and (when == "start" or any(p.stat().st_size > 1000 for p in out.iterdir())):
                break
            time.sleep(0.005)
        assert proc.poll() is None, "the job ended before the signal"
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 128 + sig, err
    assert err.splitlines()[-1] == f"sing-synth: stopped by {signal.Signals(sig).name}" and "Traceback" not in err
    assert list(out.iterdir()) == []  # no .part file, no output


def test_a_directory_and_a_short_note_in_the_disk_cache_are_rendered_again(tmp_path, tiny_preset, one_thread, note_cache_dir):  # noqa: F811
    """A cache entry with a valid header and checksum but 1,000 samples was played as a 0.06 s note."""
    from sing_synth import note_file

    song = song_file(tmp_path / "song.mid")
    first = render.render_file(song, tmp_path / "a.wav", tiny_preset, model_device="cpu")
    files = sorted(note_cache_dir.rglob("*.note"))
    files[0].unlink()
    files[0].mkdir()
    note_file.write(files[1], np.zeros(1000, np.float32))
    again = render.render_file(song, tmp_path / "b.wav", tiny_preset, model_device="cpu")
    assert again.notes_rendered == 2 and again.notes_loaded == first.notes_needed - 2
    assert (tmp_path / "a.wav").read_bytes() == (tmp_path / "b.wav").read_bytes()


@pytest.mark.parametrize("effects", [EffectSettings.dry(), EffectSettings()], ids=["dry", "effects"])
@pytest.mark.parametrize("block, inline", [(256, True), (8192, False)])
def test_the_offline_engine_matches_the_block_by_block_engine(tmp_path, block, inline, effects):
    """Offline, a whole 8192-frame block is mixed per pass, and note-ons and -offs, retriggers of
    decaying notes, gain and pedal changes are applied inside it. The same song through the engine
    as live play runs it (256-frame blocks), and through an engine that renders the voices up to
    every event before applying it: the same samples, to 1e-6. Dry, and with the reverb and chorus
    buses (their sends mixed and ramped like the gains)."""
    from sing_synth import midi_file
    from sing_synth.engine import Engine
    from sing_synth.testing import songs

    path = tmp_path / "song.mid"
    songs.song(0.4, seed=3).save(path)  # drums, pedal, bends, expression swells, tempo changes
    preset = weightless_preset()
    res = render.render_file(
        path, tmp_path / "o.wav", preset, source=HarmonicSource(), fmt="float", gain=0.2, effects=effects
    )
    offline, _ = read_wav(res.path)
    events = midi_file.read(path, RATE).events
    engine = Engine(preset, HarmonicSource(), rate=RATE, gain=0.2, max_block=block, max_events=1 << 30,
                    max_splits=1 << 30, effects=effects)
    if not inline:
        engine.performer.inline = lambda *event: False  # every event at the render point: the voices split there
    out = np.zeros((len(offline), 2), np.float32)
    k = 0
    for start in range(0, len(out), block):
        stop = min(len(out), start + block)
        while k < len(events) and events[k, 0] < stop:
            assert engine.push(*(int(v) for v in events[k, 1:]), int(events[k, 0]))
            k += 1
        engine.process(out[start:stop])
    assert engine.limiter.level == 1.0  # (the limiter, which works per block, never engaged)
    assert np.max(np.abs(offline)) > 0.05 and engine.notes_played > 100
    assert np.max(np.abs(out - offline)) <= 1e-6
