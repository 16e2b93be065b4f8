"""The sing-synth trainer: corpora, splits, SING's three stages, evaluation and preset export."""
