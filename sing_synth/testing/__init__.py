"""What the tests (``tests/``) and the benchmarks (``bench/``) share, importable by both.

- :mod:`~sing_synth.testing.jack_server`: a private JACK dummy server, a MIDI sender and an
  audio recorder (JACK clients), ``sing-synth --virtual`` as a subprocess, onset detection.
- :mod:`~sing_synth.testing.songs`: deterministic General MIDI songs (the demo files too).
- :mod:`~sing_synth.testing.presets`: seeded untrained presets (tiny, or any size).

Nothing here runs on the instrument's own paths; each module imports what it needs when used
(JACK-Client, torch).
"""
