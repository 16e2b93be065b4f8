"""The voice pool alone: the active voices first, queries, stealing, envelope, gain and bend changes."""

import numpy as np
import pytest

from sing_synth.bank import NoteBank
from sing_synth.voices import DECAY, FADE, FADING, HELD, NO_CHANGE, RELEASED, STEADY, SUSTAINED, VoicePool

RATE = 48000


def bank_with(notes: int = 4, length: int = 1000) -> NoteBank:
    bank = NoteBank(length, notes)
    for k in range(notes):
        bank.add(np.full(length, 0.1 * (k + 1), np.float32))
    return bank


def play(pool: VoicePool, bank: NoteBank, key: int, channel: int = 0, now: int = 0, slot: int = 1) -> tuple[int, bool]:
    i, stolen = pool.allocate(now, bank)
    pool.start(i, channel, key, now)
    pool.set_layers(i, bank, slot, 1.0, 0, 0.0, 1.0)
    pool.set_gain(i, 0.5, 0.5, immediate=True)
    return i, stolen


def test_the_active_voices_stay_first_and_their_slots_are_counted():
    pool, bank = VoicePool(4, RATE), bank_with()
    for key, slot in ((60, 1), (62, 2), (64, 3)):
        play(pool, bank, key, slot=slot)
    assert pool.n == 3 and bank.users[1:4].tolist() == [1, 1, 1]
    pool.stop(0, bank)  # the last voice takes the place of the stopped one
    assert pool.n == 2 and pool.key[:2].tolist() == [64, 62] and pool.slot[:2, 0].tolist() == [3, 2]
    assert bank.users[1:4].tolist() == [0, 1, 1]
    pool.stop(5, bank)  # not an active voice: nothing happens
    assert pool.n == 2


def test_queries():
    pool, bank = VoicePool(8, RATE), bank_with()
    for key, channel in ((60, 0), (62, 0), (60, 1), (64, 1)):
        play(pool, bank, key, channel)
    assert pool.voices(channel=0).tolist() == [0, 1] and pool.voices(key=60).tolist() == [0, 2]
    assert pool.voices(channel=1, key=60).tolist() == [2] and pool.voices(channel=2).tolist() == []
    pool.release(1)
    pool.fade_out(3)
    assert pool.voices(state=RELEASED).tolist() == [1] and pool.voices(state=HELD).tolist() == [0, 2]
    assert pool.keys() == [60, 60, 62] and pool.sounding() == 3  # a fading voice no longer counts


def test_stealing_takes_released_then_sustained_then_the_oldest_never_the_newest():
    pool, bank = VoicePool(3, RATE), bank_with()
    for k, key in enumerate((60, 62, 64)):
        play(pool, bank, key, now=100 * k)
    assert pool.victim(1000) == 0  # the oldest
    pool.state[1] = SUSTAINED
    assert pool.victim(1000) == 1  # sustained before held
    pool.release(0)
    assert pool.victim(1000) == 0  # released before sustained
    pool.state[:2] = HELD
    pool.release(2)
    assert pool.victim(1000) == 0  # never the newest, released or not
    i, stolen = play(pool, bank, 66, now=1000)
    assert stolen and pool.state[0] == FADING and pool.sounding() == 3 and pool.n == 4
    assert pool.victim(2000) != i  # never the voice that just started
    single = VoicePool(1, RATE)
    play(single, bank, 60)
    assert single.victim(10) == 0  # with one voice, the newest is the only one to take


def test_a_full_pool_cuts_its_quietest_fading_voice():
    pool, bank = VoicePool(1, RATE), bank_with()
    assert pool.size == 5  # polyphony plus room for stolen voices to fade out
    for key in range(60, 65):
        play(pool, bank, key)
    assert pool.n == 5 and pool.fading == 4
    pool.level[:5] = [0.9, 0.1, 0.8, 0.7, 1.0]
    i, stolen = pool.allocate(0, bank)
    assert stolen and i == 4 and pool.n == 4 and 61 not in pool.key[:4].tolist()  # level 0.1 went


def test_release_and_fade_out_start_decays_at_their_frame():
    pool, bank = VoicePool(4, RATE), bank_with()
    play(pool, bank, 60)
    play(pool, bank, 62)
    assert pool.steady(np.array([0, 1]))
    pool.release(0, at=17)
    assert (pool.state[0], pool.kind[0], pool.env_at[0], pool.decays) == (RELEASED, DECAY, 17, True)
    assert not pool.steady(np.array([0])) and pool.steady(np.array([1]))
    pool.fade_out(0)
    pool.fade_out(0)
    assert (pool.state[0], pool.kind[0], pool.fading) == (FADING, FADE, 1)  # counted once
    pool.release(0)
    assert pool.state[0] == FADING  # a fading voice is not released again
    assert pool.kind[1] == STEADY and pool.logs[DECAY] == pytest.approx(np.log(1e-4) / (0.25 * RATE))


def test_a_voice_takes_one_envelope_change_per_stretch():
    """A voice starting inside the next stretch may be released in it (its start and its decay are
    apart); a voice decaying from the stretch's start may change its decay there (a released note
    retriggered fades out); a voice with a change pending there takes no second one."""
    pool, bank = VoicePool(4, RATE), bank_with()
    i, _ = pool.allocate(0, bank)
    pool.start(i, 0, 60, 0, delay=30)
    assert pool.starts and pool.steady(np.array([i]))
    pool.release(i, at=50)
    assert not pool.steady(np.array([i])) and pool.env_at[i] == 50 and pool.kind0[i] == 0
    j, _ = play(pool, bank, 62)
    pool.release(j)  # decaying from the start of the stretch
    assert pool.steady(np.array([j]))
    pool.fade_out(j, at=40)
    assert not pool.steady(np.array([j])) and pool.kind0[j] == 1 and pool.kind[j] == 2  # release, then fade


def test_gain_changes_ramp_unless_immediate():
    pool, bank = VoicePool(4, RATE), bank_with()
    i, _ = play(pool, bank, 60)
    pool.ramps = False
    pool.set_gain(i, 0.5, 0.5)
    assert not pool.ramps and pool.ramp_left[i] == 0  # no change, no ramp
    pool.set_gain(i, 0.2, 0.6)
    assert pool.ramps and pool.ramp_left[i] == pool.ramp == int(0.005 * RATE)
    assert pool.gain[i].tolist() == [0.5, 0.5] and pool.target[i].tolist() == [0.2, 0.6]
    pool.set_gain(i, 0.1, 0.1, immediate=True)
    assert pool.gain[i].tolist() == [0.1, 0.1] and pool.ramp_left[i] == 0


def test_a_bend_inside_a_stretch_waits_for_its_frame():
    pool = VoicePool(4, RATE)
    assert pool.set_bend(3, 1.5, at=100)
    assert not pool.set_bend(3, 1.2, at=200)  # one change per channel and stretch
    assert pool.factor[3] == 1.0 and pool.next_factor[3] == 1.5 and pool.pending == [3]
    pool.advance_bends(64)
    assert pool.kink[3] == 36 and pool.factor[3] == 1.0
    pool.advance_bends(64)
    assert pool.factor[3] == 1.5 and pool.kink[3] == NO_CHANGE and pool.pending == []
    pool.set_bend(3, 2.0, at=10)
    pool.set_bend(3, 0.5)  # at once: a pending change is dropped
    assert pool.factor[3] == 0.5 and pool.pending == [] and pool.kink[3] == NO_CHANGE


def test_layers_loop_only_when_allowed_and_alike():
    pool, bank = VoicePool(4, RATE), bank_with()
    bank.loop_end[1:3], bank.loop_len[1:3] = 800, 200
    i, _ = pool.allocate(0, bank)
    pool.start(i, 0, 60, 0)
    pool.set_layers(i, bank, 1, 0.3, 2, 0.7, 1.0)
    assert (pool.loop_end[i], pool.loop_len[i], pool.last[i]) == (800, 200, 999)
    assert pool.weight[i].tolist() == [0.3, 0.7] and bank.users[1:3].tolist() == [1, 1]
    j, _ = pool.allocate(0, bank)
    pool.start(j, 9, 36, 0)
    pool.set_layers(j, bank, 1, 1.0, 0, 0.0, 1.0, loop=False)  # a drum never loops
    assert pool.loop_len[j] == 0 and pool.loop_end[j] > 1e29
    bank.loop_len[3] = 100
    k, _ = pool.allocate(0, bank)
    pool.start(k, 0, 62, 0)
    pool.set_layers(k, bank, 1, 0.5, 3, 0.5, 1.0)  # layers whose loops differ: no loop
    assert pool.loop_len[k] == 0
