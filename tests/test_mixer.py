"""The mixing kernel: what a voice pool sounds like, sample by sample, whatever the block and pass size."""

import math

import numpy as np
import pytest
from engine_fixtures import RATE, make_engine, note, rms, run_engine

from sing_synth import events as ev
from sing_synth import mixer
from sing_synth.bank import NoteBank
from sing_synth.mixer import Mixer
from sing_synth.voices import VoicePool

LENGTH = 20000


def setup(*notes: np.ndarray, max_block: int = 4096) -> tuple[VoicePool, Mixer, NoteBank]:
    bank = NoteBank(LENGTH, 4)
    for x in notes:
        bank.add(x)
    pool = VoicePool(4, RATE)
    return pool, Mixer(pool, max_block), bank


def voice(pool, bank, slot=1, ratio=1.0, gains=(0.5, 0.25), delay=0, layers=None) -> int:
    i, _ = pool.allocate(0, bank)
    pool.start(i, 0, 60, 0, delay=delay)
    slot0, w0, slot1, w1 = layers or (slot, 1.0, 0, 0.0)
    pool.set_layers(i, bank, slot0, w0, slot1, w1, ratio)
    pool.set_gain(i, *gains, immediate=True)
    return i


def signal(seed: int = 0, n: int = LENGTH) -> np.ndarray:
    return (0.5 * np.random.default_rng(seed).standard_normal(n)).astype(np.float32)


@pytest.mark.parametrize("frames", [300, mixer.SLICE_FRAMES + 100])  # one gather, or row slices
def test_a_voice_at_its_own_pitch_is_its_note_times_its_gains(frames):
    x = signal()
    pool, mix, bank = setup(x)
    voice(pool, bank)
    mix.render(bank, 0, frames)
    np.testing.assert_array_equal(mix.mix[0, :frames], 0.5 * x[:frames])
    np.testing.assert_array_equal(mix.mix[1, :frames], 0.25 * x[:frames])
    mix.mix[:] = 0.0
    mix.render(bank, 10, 10 + frames)  # the next stretch continues where the last one ended
    np.testing.assert_array_equal(mix.mix[0, 10 : 10 + frames], 0.5 * x[frames : 2 * frames])
    assert pool.pos[0] == 2 * frames


def test_a_re_pitched_voice_interpolates_linearly():
    x = signal()
    pool, mix, bank = setup(x)
    voice(pool, bank, ratio=0.75)
    mix.render(bank, 0, 1000)
    want = np.interp(np.arange(1000) * 0.75, np.arange(LENGTH), x)
    np.testing.assert_allclose(mix.mix[0, :1000], 0.5 * want, atol=1e-6)
    assert pool.pos[0] == 750.0


def test_two_layers_are_weighted():
    a, b = signal(1), signal(2)
    pool, mix, bank = setup(a, b)
    voice(pool, bank, layers=(1, 0.3, 2, 0.7), gains=(1.0, 1.0))
    mix.render(bank, 0, 500)
    np.testing.assert_allclose(mix.mix[0, :500], 0.3 * a[:500] + 0.7 * b[:500], atol=1e-6)


def test_a_start_and_a_release_take_effect_at_their_frame():
    x = signal()
    pool, mix, bank = setup(x)
    voice(pool, bank, delay=123, gains=(1.0, 1.0))
    mix.render(bank, 0, 512)
    assert not mix.mix[0, :123].any()
    np.testing.assert_array_equal(mix.mix[0, 123:512], x[: 512 - 123])
    assert pool.delay[0] == 0 and pool.pos[0] == 512 - 123
    mix.mix[:] = 0.0
    pool.release(0, at=200)
    mix.render(bank, 0, 512)
    played = x[389 : 389 + 512]
    np.testing.assert_array_equal(mix.mix[0, :200], played[:200])
    decay = np.exp(pool.logs[1] * (np.arange(312) + 1.0))  # -80 dB in 0.25 s, from frame 200
    np.testing.assert_allclose(mix.mix[0, 200:512], played[200:] * decay, rtol=1e-5, atol=1e-7)
    assert pool.level[0] == pytest.approx(math.exp(pool.logs[1] * 312))


def test_a_note_ends_with_a_fade_and_its_voice_stops():
    x = np.full(3000, 0.5, np.float32)
    pool, mix, bank = setup(x)
    voice(pool, bank, gains=(1.0, 1.0))
    mix.render(bank, 0, 4000)
    out = mix.mix[0]
    fade = pool.end_fade
    assert out[2999 - fade - 10 : 2999 - fade].tolist() == [0.5] * 10  # full level up to the last 10 ms
    assert np.all(np.diff(out[3000 - fade : 3000]) < 0) and out[2999] < 0.5 / fade + 1e-6  # a ramp down
    assert not out[3000:4000].any()
    assert pool.n == 0 and bank.users[1] == 0  # stopped: its slot is free to reuse


def test_gain_changes_ramp_to_their_target():
    x = np.full(LENGTH, 0.5, np.float32)
    pool, mix, bank = setup(x)
    voice(pool, bank, gains=(1.0, 1.0))
    pool.set_gain(0, 0.0, 1.0)
    mix.render(bank, 0, 1000)
    steps = pool.ramp
    k = np.arange(1, 1001)
    np.testing.assert_allclose(mix.mix[0, :1000], 0.5 * (1.0 - np.minimum(k / steps, 1.0)), atol=1e-6)
    assert pool.gain[0].tolist() == [0.0, 1.0] and pool.ramp_left[0] == 0


@pytest.mark.parametrize("chunk", [mixer.MAX_CHUNK, 100])
def test_same_audio_whatever_the_block_size(chunk, monkeypatch):
    """Block sizes and the pool's pass length (events inside later passes of a block) change nothing."""
    monkeypatch.setattr(mixer, "MAX_CHUNK", chunk)
    events = note(0.01, 60, 90, 0.3) + note(0.1, 64, 70, 0.5) + [(0.2, ev.PITCH_BEND, 0, 12000, 0)]
    events += [(0.25, ev.CONTROL, 0, ev.CC_PAN, 20), (0.3, ev.CONTROL, 0, ev.CC_VOLUME, 70)]
    events += note(0.35, 67, 100, 0.2) + note(0.36, 60, 80, 0.1)  # a retrigger and notes inside one block
    events += [(0.4, ev.PITCH_BEND, 0, 9000, 0), (0.4005, ev.PITCH_BEND, 0, 7000, 0)]  # two bends in one stretch
    events += [(0.45, ev.PITCH_BEND, 0, 10000, 0)] + note(0.4504, 62, 100, 0.2)  # a note starting after a bend
    events += note(0.5, 72, 100, 0.0008)  # on and off inside one stretch
    # a key held past the note's loop end (2.8 s): it loops, through blocks and a bend
    events += note(0.02, 55, 100, 4.3, channel=1) + [(3.0, ev.PITCH_BEND, 1, 6000, 0)]
    a = run_engine(make_engine(), events, 4.4, block=37)
    b = run_engine(make_engine(), events, 4.4, block=4096)
    c = run_engine(make_engine(max_block=8192), events, 4.4, block=8192)
    assert rms(a[int(4.1 * RATE) : int(4.3 * RATE)]) > 0.05  # past the 4 s note: looped
    np.testing.assert_allclose(a, b, atol=1e-5)  # voices end at -80 dB at a block edge
    np.testing.assert_allclose(a, c, atol=1e-5)


def test_envelopes_by_slices_and_by_one_gather_agree(monkeypatch):
    """Decaying voices multiply by slices of the envelope table when few, by one gather when many."""
    events = [e for k in range(10) for e in note(0.01 * k, 48 + 2 * k, 100, 0.2 + 0.005 * k)]
    events += [(0.1, ev.CONTROL, 0, ev.CC_ALL_SOUND_OFF, 0)] + note(0.12, 70, 90, 0.1)  # fades too
    outs = []
    for gather in (1, 1 << 40):  # every voice by slices; one gather from 5 decaying voices
        monkeypatch.setattr(mixer, "ENV_GATHER", gather)
        outs.append(run_engine(make_engine(), events, 0.6, block=256))
    assert rms(outs[0][int(0.2 * RATE) :]) > 0.01
    np.testing.assert_allclose(outs[0], outs[1], atol=1e-6)




def test_the_mix_and_the_sends_from_one_product_match_two(monkeypatch):
    """Where the sends ramp as the gains do (expression, volume) or neither ramps, one (4, rows)
    product makes the mix and the sends; a pan change (the gains alone) or a CC91 change (the sends
    alone) takes one product each. The same output as one product each throughout."""
    from sing_synth import mix_gains
    from sing_synth.effects import EffectSettings

    events = [*note(0.0, 60, 100, 1.2), *note(0.05, 64, 70, 1.0, channel=1), *note(0.3, 67, 90, 0.8)]
    events += [(0.1 + 0.02 * k, ev.CONTROL, k % 2, ev.CC_EXPRESSION, 60 + 3 * k) for k in range(20)]
    events += [(0.25, ev.CONTROL, 1, ev.CC_PAN, 20), (0.5, ev.CONTROL, 0, ev.CC_REVERB, 90),
               (0.7, ev.CONTROL, 1, ev.CC_VOLUME, 80), (0.9, ev.CONTROL, 0, ev.CC_CHORUS, 60)]  # fmt: skip
    together = mix_gains._together
    taken = []
    monkeypatch.setattr(mix_gains, "_together", lambda *a: taken.append(together(*a)) or taken[-1])
    one = run_engine(make_engine(effects=EffectSettings()), events, 2.0, block=256)
    assert any(taken) and not all(taken)  # both ways were taken
    monkeypatch.setattr(mix_gains, "_together", lambda *a: False)
    two = run_engine(make_engine(effects=EffectSettings()), events, 2.0, block=256)
    assert rms(two) > 0.01
    np.testing.assert_allclose(one, two, rtol=0, atol=1e-6)
