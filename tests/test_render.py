"""``sing-synth render``: MIDI files to WAV/FLAC through the engine, end to end.

Two kinds of note sources: a tiny untrained SING preset through the NoteRenderer (the real
CLI path, seeded) and ``HarmonicSource`` (real pitched tones) where timing is measured.
"""

from __future__ import annotations

import os
import wave

import mido
import numpy as np
import pytest
from engine_fixtures import RATE, HarmonicSource, one_thread, tiny_preset, weightless_preset, write_midi  # noqa: F401
from job_fixtures import leftovers, parse, song_file

from sing_synth import cli, commands, render
from sing_synth.audio_file import read_wav
from sing_synth.effects import EffectSettings
from sing_synth.errors import ConfigError, InstrumentError, MidiFileError, SingError
from sing_synth.testing import songs

M = mido.Message


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
