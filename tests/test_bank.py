"""The note bank: slots, zero padding, growth, and slot reuse only once no voice plays it."""

import numpy as np
import pytest
from engine_fixtures import make_engine, note, run_engine

from sing_synth import events as ev
from sing_synth.bank import NoteBank


def test_notes_round_trip_and_are_followed_by_zeros():
    bank = NoteBank(8, 3)
    a = bank.add(np.arange(1, 6, dtype=np.float32))
    assert a == 1 and bank.note(a).tolist() == [1, 2, 3, 4, 5]
    assert not bank.data[a, 5:].any() and bank.data.shape[1] == 10  # padded: reading past the end gives 0
    assert not bank.note(a).flags.writeable
    assert not bank.data[0].any()  # slot 0 is silence
    with pytest.raises(ValueError, match="8-sample notes"):
        bank.add(np.zeros(9, np.float32))


@pytest.mark.skipif(not hasattr(__import__("resource"), "RUSAGE_THREAD"), reason="needs getrusage(RUSAGE_THREAD)")
def test_the_silent_row_is_mapped_when_the_bank_is_made():
    # every voice's unused layer reads slot 0 as it plays: reading it must not fault pages in (in
    # the audio thread), as an untouched row of np.zeros would, one page at a time
    import resource

    bank = NoteBank(192_000, 4)  # a 4 s note at 48 kHz: 188 pages
    before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
    total = 0.0
    for start in range(0, bank.stride, 1024):  # one page at a time, as a voice reads
        total += float(bank.data[0, start])
    assert total == 0.0
    assert resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before < 10


def test_a_full_fixed_bank_refuses_and_reuses_retired_slots():
    bank = NoteBank(4, 2)
    assert [bank.add(np.ones(4)), bank.add(np.ones(4))] == [1, 2]
    assert bank.add(np.ones(4)) == -1
    bank.retire(1)
    assert bank.add(np.full(4, 7.0)) == 1  # no engine attached yet: reusable at once
    assert bank.note(1).tolist() == [7, 7, 7, 7]


def test_a_retired_slot_waits_for_its_voices_and_two_blocks():
    bank = NoteBank(4, 1)
    slot = bank.add(np.ones(4))
    bank.attached = True
    bank.users[slot] = 1  # a voice plays it
    bank.retire(slot)
    bank.epoch += 5
    assert bank.add(np.zeros(4)) == -1  # still played
    bank.users[slot] = 0
    assert bank.add(np.zeros(4)) == 1
    bank.retire(1)
    bank.epoch += 1
    assert bank.free_slots == 0  # a lookup made just before retiring may not have registered yet
    bank.epoch += 1
    assert bank.free_slots == 1


def test_growable_bank_keeps_slots_when_it_grows():
    bank = NoteBank(4, 1, growable=True)
    a = bank.add(np.ones(4))
    b = bank.add(np.full(9, 2.0))  # longer and one more: the bank grows both ways
    assert (a, b) == (1, 2) and bank.capacity >= 2 and bank.length >= 9
    assert bank.note(a).tolist() == [1.0] * 4 and bank.note(b).tolist() == [2.0] * 9


def test_voices_register_the_slots_they_play():
    engine = make_engine()  # HarmonicSource: a DictNoteSource that makes its notes on first use
    source = engine.source
    engine.push(ev.NOTE_ON, 0, 60, 100, 0)
    engine.process(np.zeros((256, 2), np.float32))
    bank = source.bank
    playing = [int(s) for s in engine.pool.slot[: engine.pool.n].ravel() if s > 0]
    assert playing and all(bank.users[s] == 1 for s in playing) and bank.epoch == 1
    run_engine(engine, [(0.0, ev.NOTE_OFF, 0, 60, 0)], 1.0)
    assert engine.pool.n == 0 and not bank.users.any()


def test_events_at_more_samples_than_splits_all_apply():
    engine = make_engine(max_splits=4)
    events = [e for k in range(12) for e in note(k * 10 / 48000, 48 + k, 100, 0.5)]
    out = run_engine(engine, events, 0.3, block=512)
    assert engine.notes_played == 12 and engine.pool.keys() == list(range(48, 60))
    assert np.abs(out[:2000]).max() > 0.01


def test_a_sustaining_note_gets_a_loop_with_its_crossfade_baked_in():
    rate = 8000
    n = 4 * rate
    t = np.arange(n) / rate
    rng = np.random.default_rng(1)
    steady = (0.3 * rng.standard_normal(n)).astype(np.float32)
    bank = NoteBank(n, 2)
    slot = bank.add(steady)
    assert bank.set_loop(slot, 69, rate)
    end, length = int(bank.loop_end[slot]), int(bank.loop_len[slot])
    start = end - length
    period = rate / 440.0
    assert abs(length / period - round(length / period)) * period <= 0.5  # whole periods, to the sample
    assert 0 < start < end < n
    x = bank.data[slot]
    changed = np.flatnonzero(x[:n] != steady)
    xfade = len(changed) + 1  # its first sample has weight 0
    assert changed[0] == end - xfade + 1 and changed[-1] == end - 1  # only the samples before the loop end
    # they fade into the samples before the loop start: the jump back lands where the fade arrived
    u = np.arange(xfade) / xfade
    want = steady[end - xfade : end] + u * (steady[start - xfade : start] - steady[end - xfade : end])
    np.testing.assert_allclose(x[end - xfade : end], want, atol=1e-6)
    assert abs(x[end - 1] - steady[start - 1]) <= 2 * np.abs(steady).max() / xfade
    # a decaying note is not looped and left as it is
    decaying = (steady * np.exp(-t / 0.3)).astype(np.float32)
    slot2 = bank.add(decaying)
    assert not bank.set_loop(slot2, 69, rate) and bank.loop_len[slot2] == 0
    np.testing.assert_array_equal(bank.data[slot2, :n], decaying)
