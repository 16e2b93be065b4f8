"""Hostile MIDI files (issue 14): a seeded, bounded fuzz run through the reader and, for a sample,
the whole render; only the project's own one-line errors are allowed, nothing is left behind.
``bench/fuzz.py`` runs the same campaign over tens of thousands of files."""

from __future__ import annotations

from sing_synth.testing import fuzz


def test_mutated_midi_files_give_only_the_projects_own_errors(tmp_path):
    counts, problems = fuzz.campaign(300, seed=14, render_every=15, keep=tmp_path / "kept", limit=30.0)
    assert problems == [], "\n".join(problems[:5])
    assert counts["read"] + counts["salvaged"] + counts["refused"] == 300
    assert counts["read"] > 20 and counts["salvaged"] > 50 and counts["refused"] > 20  # every path is exercised
    assert counts["rendered"] + counts["render refused"] == 20 and counts["rendered"] > 8


def test_the_hand_built_nasties_each_read_or_refused_in_one_line():
    from sing_synth.errors import MidiFileError
    from sing_synth.smf import parse

    for name, data in fuzz.nasties().items():
        for lenient in (False, True):
            try:
                parse(data, lenient)
            except MidiFileError as exc:
                assert "\n" not in str(exc), name
