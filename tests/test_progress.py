"""The progress display: rewritten in place on a terminal, a line every N seconds in a log."""

import io

from sing_synth import progress
from sing_synth.progress import Progress, bar_text


class Terminal(io.StringIO):
    def isatty(self):
        return True


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_a_terminal_line_is_rewritten_in_place(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(progress.time, "monotonic", clock)
    tty = Terminal()
    p = Progress(stream=tty)
    clock.now += 1
    p.show("step 1 of many")
    p.show("step 2 of many")  # within the redraw interval: skipped
    clock.now += 1
    p.show("step 3")  # shorter: the rest of the longer line is wiped
    p.done()
    assert tty.getvalue() == "\rstep 1 of many" + "\rstep 3" + " " * 8 + "\n"


def test_a_log_gets_a_line_every_period_and_forced_lines(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(progress.time, "monotonic", clock)
    log = io.StringIO()
    p = Progress(stream=log, every=30.0)
    for second in range(100):
        clock.now += 1
        p.show(f"second {second}")
    p.show("epoch done", force=True)
    p.done()
    assert log.getvalue().splitlines() == ["second 29", "second 59", "second 89", "epoch done"]


def test_disabled_and_cleared(monkeypatch):
    quiet, tty = io.StringIO(), Terminal()
    p = Progress(enabled=False, stream=quiet)
    p.show("nothing", force=True)
    p.done()
    assert quiet.getvalue() == ""
    p = Progress(stream=tty)
    p.bar("notes", 2, 2, "notes")  # the last step is drawn even within the redraw interval
    p.done(clear=True)
    assert tty.getvalue().endswith("\r") and "2/2 notes" in tty.getvalue() and "\n" not in tty.getvalue()


def test_bar_text():
    assert bar_text("mixing", 5, 10) == "mixing [" + "#" * 15 + "." * 15 + "]  50.0%"
    assert bar_text("notes of piano", 3, 365, "notes").endswith("] 3/365 notes")
    assert bar_text("empty", 0, 0) == "empty [" + "#" * 30 + "] 100.0%"
