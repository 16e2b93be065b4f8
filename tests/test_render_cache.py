"""``sing-synth render`` and the note cache on disk: notes reused across processes and from live
play, damaged entries rendered again, ``--no-cache``."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
from engine_fixtures import one_thread, tiny_preset  # noqa: F401
from job_fixtures import parse, song_file

from sing_synth import commands, render

RENDER_AND_REPORT = """
import json, sys
from sing_synth import cli
code = cli.main(sys.argv[1:])
print(json.dumps({"code": code, "torch": "torch" in sys.modules}))
"""


def render_in_a_process(*argv):
    """``sing-synth render ARGV`` in a new interpreter: its exit code, stdout, and whether it imported torch."""
    import json

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
