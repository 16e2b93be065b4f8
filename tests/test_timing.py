"""The timing records: a row per block written while playing, with nothing faulted in or allocated then."""

import resource

import numpy as np
import pytest

from sing_synth import timing


@pytest.mark.skipif(not hasattr(resource, "RUSAGE_THREAD"), reason="needs getrusage(RUSAGE_THREAD)")
def test_recording_blocks_takes_no_page_fault(tmp_path):
    # the arrays are written a row at a time by the audio thread: their pages must exist beforehand
    tl = timing.Timeline(str(tmp_path / "t.npz"), seconds=600)
    rows = 40_000  # 3.5 minutes of 256-frame blocks: hundreds of pages of each array
    before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
    for i in range(rows):
        tl.begin()
        tl.block(float(i), 0.0, float(i) + 1e-4, False, 3, 1, float(i))
    faults = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before
    assert faults < 20, faults
    tl.save()
    rec = np.load(tmp_path / "t.npz")
    assert len(rec["block_start"]) == rows and rec["block_pa"][-1] == rows - 1 and rec["block_voices"].max() == 3
