"""Write the General MIDI demo files in examples/ deterministically (same bytes on every run).

The songs are made by ``sing_synth.testing.songs`` (the tests and benchmarks use them too):
``demo.mid`` (about a minute, five channels, drums, pedal, bends, tempo changes) and
``controllers.mid`` (program changes, the three pedals, RPN 0, pan, the all-off controllers).

    python examples/make_examples.py [output_dir]
"""

from __future__ import annotations

import sys
from pathlib import Path

from sing_synth.testing.songs import write_examples


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    write_examples(Path(argv[0]) if argv else Path(__file__).resolve().parent)
    return 0


if __name__ == "__main__":
    sys.exit(main())
