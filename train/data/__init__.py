"""Corpora of 4 s, 16 kHz mono notes labelled (instrument, pitch, velocity class)."""

from __future__ import annotations

from pathlib import Path

# Where the evaluation and the calibration keep a corpus's probe (playable pitches and levels),
# the trainer's own for runs under train/runs/ (it is fingerprinted by the fonts, so runs elsewhere
# share it safely).
CORPUS_CACHE = Path(__file__).resolve().parent.parent / "runs" / ".corpus-cache"


def make_corpus(spec: dict, cache_dir=None):
    """Build the corpus a recipe's ``data`` section describes (``kind``: soundfont or nsynth)."""
    spec = dict(spec)
    kind = spec.pop("kind", "soundfont")
    if kind == "soundfont":
        from .soundfont import DEBIAN_FONTS, SoundFontCorpus

        fonts = spec.pop("fonts", None) or DEBIAN_FONTS
        return SoundFontCorpus(fonts, cache_dir=cache_dir, **spec)
    if kind == "nsynth":
        from .nsynth import NSynthCorpus

        return NSynthCorpus(spec.pop("roots"), **spec)
    raise ValueError(f"unknown corpus kind {kind!r}: use soundfont or nsynth")


def preset_corpus(preset, use: str = "evaluate"):
    """``(corpus, split)`` a preset was trained on: its recipe's data and its ``split.json``."""
    from ..config import Recipe
    from .splits import load_split

    split_path = preset.path / "split.json"
    if not split_path.is_file():
        raise FileNotFoundError(f"{split_path} not found: {use} an exported preset (it carries its split)")
    recipe = Recipe(**preset.training["recipe"])
    return make_corpus(recipe.data, cache_dir=CORPUS_CACHE), load_split(split_path)
