"""The reverb and chorus buses: what a send does to a note, through the real engine, and the
callback's contract (no allocation, block-size independence, silence when nothing is sent)."""


import numpy as np
import pytest
from engine_fixtures import RATE, assert_torch_free, block_allocations, make_engine, note, run_engine

from sing_synth import events as ev
from sing_synth.channels import Channel
from sing_synth.chorus import CHORUS_GAIN, CHORUS_MIN_DELAY, CHORUS_TAPS, Chorus
from sing_synth.effects import SETTINGS, Effects, EffectSettings
from sing_synth.errors import ConfigError
from sing_synth.reverb import Reverb

ON = EffectSettings()


def cc(t: float, channel: int, number: int, value: int) -> tuple:
    return (t, ev.CONTROL, channel, number, value)


def energy_db(x: np.ndarray) -> float:
    """Mean square in dB, floored at -200 dB (exact silence)."""
    return 10.0 * np.log10(max(float(np.mean(np.asarray(x, np.float64) ** 2)), 1e-20))


def correlation(x: np.ndarray) -> float:
    return float(np.corrcoef(x[:, 0], x[:, 1])[0, 1])


def test_a_reverb_send_leaves_a_reverberant_tail_after_the_note():
    events = note(0.0, 60, 100, 0.5)
    dry = run_engine(make_engine(), events, 3.0)
    wet = run_engine(make_engine(effects=ON), [cc(0.0, 0, ev.CC_REVERB, 100), *events], 3.0)
    loud = np.flatnonzero(np.max(np.abs(dry), axis=1) > 1e-4)  # the dry note ends below -80 dBFS
    end = (loud[-1] + 1) / RATE
    assert 0.6 < end < 1.0  # the key is released at 0.5 s
    window = slice(int((end + 0.3) * RATE), int((end + 1.0) * RATE))
    # dry: exact silence there (-200 dB); the tail must stand 20 dB above that and above -80 dBFS
    assert energy_db(wet[window]) >= max(energy_db(dry[window]), -100.0) + 20.0
    assert energy_db(wet[window]) > -80.0
    # it dies away: the engine says when nothing more can sound
    engine = make_engine(effects=ON)
    run_engine(engine, [cc(0.0, 0, ev.CC_REVERB, 100), *events], 3.0)
    assert engine.pool.n == 0 and engine.sounding
    out = np.zeros((RATE, 2), np.float32)
    for _ in range(40):
        engine.process(out)
    assert not engine.sounding and not out.any()


def test_no_send_and_no_bus_give_the_dry_engine_output_bit_for_bit():
    events = [*note(0.0, 60, 100, 0.5), *note(0.1, 67, 80, 0.6, channel=1), cc(0.2, 1, ev.CC_PAN, 20),
              cc(0.3, 0, ev.CC_VOLUME, 70), (0.35, ev.PITCH_BEND, 1, 9000, 0)]  # fmt: skip
    dry = run_engine(make_engine(), events, 2.0)
    zero = [cc(0.0, ch, ev.CC_REVERB, 0) for ch in (0, 1)]
    assert np.array_equal(run_engine(make_engine(effects=ON), zero + events, 2.0), dry)  # CC91 = 0 (CC93 is 0)
    assert np.array_equal(run_engine(make_engine(effects=EffectSettings(reverb=False)), events, 2.0), dry)
    assert np.array_equal(run_engine(make_engine(effects=EffectSettings.dry()), events, 2.0), dry)
    # the default send (40) is not silent
    assert not np.array_equal(run_engine(make_engine(effects=ON), events, 2.0), dry)


def test_chorus_widens_a_centred_mono_note():
    events = note(0.0, 60, 100, 1.5)
    dry = run_engine(make_engine(), events, 1.5)
    wet = run_engine(make_engine(effects=EffectSettings(reverb=False)), [cc(0.0, 0, ev.CC_CHORUS, 127), *events], 1.5)
    held = slice(int(0.2 * RATE), int(1.4 * RATE))
    assert np.array_equal(dry[held, 0], dry[held, 1]) and correlation(dry[held]) == pytest.approx(1.0)
    assert correlation(wet[held]) < 0.5
    # the chorus return is about as loud as the note (as FluidSynth's at CC93 127)
    assert -3.0 < energy_db(wet[held] - dry[held]) - energy_db(dry[held]) < 9.0


def test_sends_follow_cc91_and_cc93_and_scale_with_volume():
    events = note(0.0, 60, 100, 1.0)
    held = slice(int(0.3 * RATE), int(0.9 * RATE))
    dry = run_engine(make_engine(), events, 1.0)

    def reverb_return(*controls):
        wet = run_engine(make_engine(effects=EffectSettings(chorus=False)), [*controls, *events], 1.0)
        return energy_db(wet[held] - dry[held]) - energy_db(dry[held])

    default, full = reverb_return(), reverb_return(cc(0.0, 0, ev.CC_REVERB, 127))
    assert -30.0 < default < -22.0  # GM's default send 40: about FluidSynth's return
    assert full - default == pytest.approx(20 * np.log10(127 / 40), abs=0.5)  # linear in CC91
    # a send change while the note sounds takes effect (ramped, like a volume change)
    later = reverb_return(cc(0.1, 0, ev.CC_REVERB, 127))
    assert later == pytest.approx(full, abs=1.0)


def test_cc121_keeps_the_sends_and_a_gm_or_gs_reset_restores_them():
    c = Channel(0)
    assert (c.reverb, c.chorus) == (40, 0)  # General MIDI's defaults
    c.set_controller(ev.CC_REVERB, 90)
    c.set_controller(ev.CC_CHORUS, 70)
    c.reset_controllers()  # CC121: RP-015 leaves the effect controllers alone
    assert (c.reverb, c.chorus) == (90, 70)
    c.reset_all()
    assert (c.reverb, c.chorus) == (40, 0)
    engine = make_engine(effects=ON)
    run_engine(engine, [cc(0.0, 3, ev.CC_REVERB, 0), cc(0.0, 3, ev.CC_CHORUS, 99), cc(0.01, 3, 121, 0)], 0.05)
    assert (engine.channels[3].reverb, engine.channels[3].chorus) == (0, 99)
    gs_reset = [0xF0, 0x41, 0x10, 0x42, 0x12, 0x40, 0x00, 0x7F, 0x00, 0x41, 0xF7]
    reset = ev.from_bytes(gs_reset)
    assert reset is not None and reset.kind == ev.RESET
    run_engine(engine, [(0.0, reset.kind, 0, 0, 0)], 0.05)
    assert (engine.channels[3].reverb, engine.channels[3].chorus) == (40, 0)


@pytest.mark.parametrize(
    "data, reset",
    [
        ([0xF0, 0x7E, 0x7F, 0x09, 0x01, 0xF7], True),  # GM System On
        ([0xF0, 0x7E, 0x10, 0x09, 0x03, 0xF7], True),  # GM2 System On, device 0x10
        ([0xF0, 0x43, 0x10, 0x4C, 0x00, 0x00, 0x7E, 0x00, 0xF7], True),  # XG System On
        ([0xF0, 0x7E, 0x7F, 0x09, 0x02, 0xF7], False),  # GM System Off
        ([0xF0, 0x41, 0x10, 0x42, 0x12, 0x40, 0x00, 0x7F, 0x00, 0x41], False),  # no F7: incomplete
        ([0xF0, 0x43, 0x12, 0x00, 0x07, 0xF7], False),  # some other sysex
        ([0xF0, 0x7E, 0x7F, 0x09, 0x01] + [0] * 65536 + [0xF7], False),  # a dump: refused by its length
    ],
)
def test_reset_sysex_messages(data, reset):
    event = ev.from_bytes(data)
    assert (event is not None and event.kind == ev.RESET) == reset


def test_the_output_does_not_depend_on_the_block_size():
    """The same signal in blocks of 37, 128, 256 or 8192 frames: the same samples, to float rounding
    (the chorus's LFO runs on while the bus is idle, the reverb's combs work in chunks of their own;
    its allpasses solve a block at once, summing in another order)."""
    rng = np.random.default_rng(1)
    n = 3 * RATE
    sends = np.zeros((1, 2, n), np.float32)
    sends[0, :, 100:4000] = 0.3 * rng.standard_normal((2, 3900))
    sends[0, :, 70000:71000] = 0.2 * rng.standard_normal((2, 1000))  # after both buses went idle once
    outs = []
    for block in (37, 128, 256, 8192):
        fx = Effects(ON, RATE, max(block, 64))
        out = np.zeros((1, 2, n), np.float32)
        for a in range(0, n, block):
            fx.process(sends[:, :, a : a + block], out[:, :, a : a + block])
        outs.append(out)
    assert np.max(np.abs(outs[0])) > 0.01
    for out in outs[1:]:
        assert np.max(np.abs(out - outs[0])) <= 1e-6


def test_lanes_are_independent_copies():
    """Several lanes (the stems) process at once exactly as one lane each."""
    rng = np.random.default_rng(2)
    sends = (0.2 * rng.standard_normal((3, 2, 6000))).astype(np.float32)
    sends[1] = 0.0  # a silent lane stays silent
    together = np.zeros((3, 2, 6000), np.float32)
    Effects(ON, RATE, 512, lanes=3).process(sends, together)
    for lane in range(3):
        alone = np.zeros((1, 2, 6000), np.float32)
        Effects(ON, RATE, 512).process(sends[lane : lane + 1], alone)
        np.testing.assert_allclose(together[lane], alone[0], atol=1e-6)
    assert not together[1].any()


def freeverb_reference(x: np.ndarray, rate: int, room: float, damping: float, level: float) -> np.ndarray:
    """The reverb's design, sample by sample in float64 (slow): per side eight damped combs
    y[t] = x[t] + f (1 - d) y[t - D] + f d y[t - D - 1] whose delayed samples are summed, then four
    allpasses b[t] = u[t] + g b[t - A] putting out b[t - A] - u[t]; (2, frames)."""
    from sing_synth.reverb import ALLPASS_FEEDBACK, ALLPASSES, COMBS, REVERB_GAIN, SPREAD, _delays

    combs, allpasses = _delays(COMBS, rate) + _delays(COMBS, rate, SPREAD), _delays(ALLPASSES, rate)
    f, d = 0.7 + 0.28 * room, 0.5 * damping
    n, out = len(x), np.zeros((2, len(x)))
    for side in (0, 1):
        u = np.zeros(n)
        for delay in combs[8 * side : 8 * side + 8]:
            y = np.zeros(n + delay + 1)  # y[t] at t + delay + 1: zeros before the start
            for t in range(n):
                u[t] += y[t + 1]
                y[t + delay + 1] = x[t] + f * (1 - d) * y[t + 1] + f * d * y[t]
        for delay in allpasses:
            b = np.zeros(n + delay)  # b[t] at t + delay
            for t in range(n):
                b[t + delay] = u[t] + ALLPASS_FEEDBACK * b[t]
                u[t] = b[t] - u[t]
        out[side] = level * REVERB_GAIN * u
    return out


@pytest.mark.parametrize("block", [50, 700, 5000])
def test_the_reverb_is_its_design_sample_by_sample(block):
    """Chunks, segments and the allpasses' pieces solved at once give the samples of the plain
    recursions (float32 against float64)."""
    rate, n = 8000, 5000
    x = np.zeros((1, n), np.float32)
    x[0, :600] = np.random.default_rng(3).standard_normal(600)
    reverb = Reverb(rate, 0.6, 0.4, 0.8, block)
    out = np.zeros((1, 2, n), np.float32)
    for a in range(0, n, block):
        reverb.process(x[:, a : a + block], out[:, :, a : a + block])
    want = freeverb_reference(x[0].astype(np.float64), rate, 0.6, 0.4, 0.8)
    assert np.max(np.abs(want)) > 1e-3
    np.testing.assert_allclose(out[0], want, rtol=0, atol=1e-6 * np.max(np.abs(want)))


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 96000, 192000])
def test_every_rate_gives_a_tail_of_about_the_same_length(rate):
    """Delays are scaled to the rate: the reverb decays at the same pace in seconds."""
    reverb = Reverb(rate, 0.5, 0.4, 0.5, 2 * rate)
    x = np.zeros((1, 2 * rate), np.float32)
    x[0, :100] = 1.0
    out = np.zeros((1, 2, 2 * rate), np.float32)
    reverb.process(x, out)
    e = np.mean(out[0] ** 2, axis=0)
    early, late = e[int(0.1 * rate) : int(0.3 * rate)].mean(), e[int(0.9 * rate) : int(1.1 * rate)].mean()
    assert 30.0 < 10 * np.log10(early / late) < 70.0  # about 50 dB in 0.8 s at room size 0.5


def test_settings_are_ranged_and_named():
    for name, (low, high, default, _, _) in SETTINGS.items():
        assert low <= default <= high and getattr(ON, name) == default
        for bad in (low - 1.0, high + 1.0, float("nan")):
            with pytest.raises(ConfigError) as info:
                EffectSettings(**{name: bad}).check()
            assert info.value.setting == name and f"{low:g}-{high:g}" in str(info.value)
    assert EffectSettings.dry().summary() == "none (dry)" and "CC91" in ON.summary()


def test_steady_state_effects_allocate_nothing_of_size():
    """The effects keep the callback's contract (the engine's own test, with both buses working and
    their delay lines moving their history to the front on the way)."""
    engine = make_engine(polyphony=52, effects=ON, max_block=256)
    held = [e for k in range(48) for e in note(0.0, 36 + k, 100, 60.0, channel=k % 3)]
    sends = [cc(0.0, ch, number, 100) for ch in range(3) for number in (ev.CC_REVERB, ev.CC_CHORUS)]
    out = np.zeros((256, 2), np.float32)
    run_engine(engine, sends + held, 0.3, block=256)
    engine.process(out)
    blocks = [[(ev.CONTROL, 0, ev.CC_EXPRESSION, 100 + k % 20, engine.frame + 256 * k + 100)] for k in range(400)]
    reverb, chorus = engine.effects.reverb, engine.effects.chorus
    peak, kept = block_allocations(engine, out, blocks)
    assert engine.active_voices == 48 and engine.effects.active
    assert 400 * 256 > max(reverb._clen, chorus._len)  # the delay lines moved their history
    assert peak < 16 * 1024
    assert kept < 1024


def test_the_effects_modules_do_not_import_torch():
    assert_torch_free("effects", "reverb", "chorus")


def test_chorus_taps_read_the_past_only():
    """Its shortest delay is 5 ms: an impulse comes back no sooner, and within 5 ms + the depth."""
    chorus = Chorus(RATE, 8.0, 0.3, 0.5, 512)
    x = np.zeros((1, RATE // 10), np.float32)
    x[0, 0] = 1.0
    out = np.zeros((1, 2, RATE // 10), np.float32)
    chorus.process(x, out)
    heard = np.flatnonzero(np.abs(out[0]).max(axis=0) > 0)
    assert heard[0] >= int(0.005 * RATE) and heard[-1] <= int(0.013 * RATE) + 1


@pytest.mark.parametrize("block", [300, 5000])
def test_the_chorus_is_its_design_sample_by_sample(block):
    """Tap k reads the send at t - 5 ms - depth (1 + sin(phase_k + omega t)) / 2, linearly
    interpolated (a sine per sample and tap, in float64), whatever the blocks and chunks."""
    rate, n, depth, lfo, level = 8000, 12000, 8.0, 2.0, 0.7
    x = np.random.default_rng(4).standard_normal(n).astype(np.float32)
    chorus = Chorus(rate, depth, lfo, level, block)
    out = np.zeros((1, 2, n), np.float32)
    for a in range(0, n, block):
        chorus.process(x[None, a : a + block], out[:, :, a : a + block])
    t = np.arange(n)
    padded = np.concatenate([np.zeros(n), x.astype(np.float64)])  # the delay line starts silent
    want = np.zeros((2, n))
    for tap in range(2 * CHORUS_TAPS):
        phase = np.radians(tap // 2 * 120.0 + tap % 2 * 90.0) + 2.0 * np.pi * lfo / rate * t
        at = t - CHORUS_MIN_DELAY * rate - 0.5 * depth * 1e-3 * rate * (1.0 + np.sin(phase))
        i = np.floor(at).astype(np.int64)
        frac = at - i
        want[tap % 2] += level * CHORUS_GAIN / CHORUS_TAPS * ((1.0 - frac) * padded[n + i] + frac * padded[n + i + 1])
    np.testing.assert_allclose(out[0], want, rtol=0, atol=1e-6 * np.max(np.abs(want)))
