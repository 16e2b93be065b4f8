"""The tuning map (train/tune.py): which keys the model plays out of tune, and the keys that play them."""

from __future__ import annotations

import shutil

import numpy as np
from train_fixtures import needs_fonts

from sing_synth import dsp
from sing_synth import preset as presets
from sing_synth.channels import InstrumentMap
from train.tune import Key, choose, judged, runs


def test_a_key_out_of_tune_is_played_from_the_nearest_key_in_tune_at_every_class():
    good, bad = Key(5, 5, 5), Key(5, 1, 1)
    keys = {
        30: bad, 31: bad, 32: bad,  # the low end: from 33
        33: good,
        34: Key(5, 3, 3),  # in tune at 3 of 5 judged classes: it stays
        35: Key(4, 4, 4),  # in tune wherever judged but not at every class: no source, and it stays
        36: Key(0, 0, 0),  # no class judged: it stays
        37: bad,  # 33 and 41 are 4 away: the higher one
        38: bad,  # from 41 (three semitones) rather than 33 (five)
        41: good,
        70: bad,  # nothing in tune within reach
    }  # fmt: skip
    assert choose(keys, classes=5, reach=12) == {30: 33, 31: 33, 32: 33, 37: 41, 38: 41}
    assert choose(keys, classes=5, reach=40)[70] == 41
    assert choose({30: bad, 31: bad}, classes=5) == {}  # nothing in tune: nothing to play from
    a4 = 440.0
    assert judged(a4, 0.0, 69, 50) and judged(0.0, 466.2, 69, 50)  # a recording in tune; none, but a pitch made
    assert not judged(0.0, 0.0, 69, 50) and not judged(110.0, 466.2, 69, 50)  # no pitch at all; the recording's elsewhere
    assert runs({30: 33, 31: 33, 32: 33, 37: 41, 38: 41, 40: 41}) == [[30, 32, 33], [37, 38, 41], [40, 40, 41]]


@needs_fonts
def test_the_shipped_model_s_lowest_keys_are_in_tune_as_played(tmp_path):
    """The bundled preset's grand piano, measured anew: its notes below the 30s are a buzz at the
    decoder's frame rate; played from the map's source they are in tune by Praat's tracker, an
    estimator independent of the one the map was made with."""
    import parselmouth  # noqa: F401  (the trainer's extra: `pip install -e '.[train]'`)

    from sing_synth.renderer import NoteRenderer
    from train.breakdown import praat_f0
    from train.tune import tune

    copy = tmp_path / "sing-gm"
    shutil.copytree(presets.resolve(presets.DEFAULT_PRESET), copy)
    summary = tune(copy, instruments=[0])  # FluidR3_GM: Yamaha Grand Piano, keys 24-96
    p = presets.load(copy)
    grand = p.instruments[0]
    assert summary["instruments"] == 1 and summary["keys"] == 73 and summary["keys_played_from_another"] > 0
    shipped = presets.load(presets.DEFAULT_PRESET)
    assert [i.played_from for i in p.instruments[1:]] == [i.played_from for i in shipped.instruments[1:]]  # only 0 measured
    assert grand.played_from == shipped.instruments[0].played_from  # the shipped map is what tune makes
    imap = InstrumentMap(p)
    renderer = NoteRenderer(p, device="cpu", batch_size=32)
    low = [26, 28, 30]
    sources = [imap.source_pitch(grand.id, k) for k in low]
    assert all(src > k for (src, _), k in zip(sources, low))
    own = renderer.render_model_rate([(grand.id, k, 3) for k in low])
    made = renderer.render_model_rate([(grand.id, src, 3) for src, _ in sources])
    played = [dsp.repitch(w, k - src) for w, k, (src, _) in zip(made, low, sources)]

    def cents(wav, key):
        f0 = praat_f0(wav, p.sample_rate)
        return round(dsp.cents(f0, dsp.midi_to_hz(key))) if f0 else None

    as_played = [cents(w, k) for w, k in zip(played, low)]
    assert all(c is not None and abs(c) <= 50 for c in as_played), as_played
    assert sum(c is not None and abs(c) <= 50 for c in (cents(w, k) for w, k in zip(own, low))) < len(low)
    assert np.isfinite(np.concatenate(played)).all()
