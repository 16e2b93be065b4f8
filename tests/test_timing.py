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


def test_the_soak_report_weighs_xrun_windows_against_the_machine_s_smaller_stalls():
    """bench/timing_report.py's ``coincidence``: the xrun windows holding a late reference wake-up,
    against the share of all windows of the run that hold one, and the binomial chance of as many."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("timing_report", Path(__file__).parent.parent / "bench" / "timing_report.py")
    report = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(report)
    # a 100 s run: a 2 ms wake-up every 10 s (at 5, 15, ... 95 s), 1 ms ones every second
    wake = np.array(sorted([(t + 0.5, 0.001) for t in range(100)] + [(t + 5.0, 0.002) for t in range(0, 100, 10)]))
    context = {"wakeups": wake, "xrun_seconds": np.array([[5.5, 1], [45.2, 1], [70.0, 1]])}
    windows = [(4.0, 5.5), (43.7, 45.2), (68.5, 70.0)]  # two hold a 2 ms wake-up, the third none
    lines = report.coincidence(context, windows, lags=(0.002,))
    share = 10 * 1.5 / 97.5  # about the share of the run's windows (2-99.5 s) that hold one of the ten
    p = 3 * share**2 * (1 - share) + share**3
    assert "in 2 of them" in lines[1], lines
    found_share = float(lines[1].split("% of all")[0].split()[-1]) / 100
    found_p = float(lines[1].split("p = ")[1])
    assert found_share == pytest.approx(share, abs=0.01) and found_p == pytest.approx(p, rel=0.1), lines
