"""The paper's pitch-completion split: each (instrument, pitch) pair, with all its velocities,
goes to exactly one of train / valid / test (80 / 10 / 10 %, seeded), recorded in a JSON file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

SPLITS = ("train", "valid", "test")


def make_split(pairs, seed: int = 42, valid: float = 0.1, test: float = 0.1) -> dict[str, list[tuple[int, int]]]:
    pairs = sorted({(int(i), int(p)) for i, p in pairs})
    order = np.random.default_rng(seed).permutation(len(pairs))
    n_valid, n_test = int(round(valid * len(pairs))), int(round(test * len(pairs)))
    chosen = [pairs[k] for k in order]
    return {
        "valid": sorted(chosen[:n_valid]),
        "test": sorted(chosen[n_valid : n_valid + n_test]),
        "train": sorted(chosen[n_valid + n_test :]),
    }


def save_split(split: dict, path: str | os.PathLike, seed: int) -> None:
    path = Path(path)
    data = {"seed": seed, **{k: [list(p) for p in split[k]] for k in SPLITS}}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, separators=(",", ":")))
    os.replace(tmp, path)


def load_split(path: str | os.PathLike) -> dict[str, list[tuple[int, int]]]:
    data = json.loads(Path(path).read_text())
    return {k: [tuple(p) for p in data[k]] for k in SPLITS}


def split_notes(split: dict, notes) -> dict[str, list[tuple[int, int, int]]]:
    """Every note (instrument, pitch, vclass) in the split its (instrument, pitch) pair belongs to."""
    where = {p: name for name in SPLITS for p in split[name]}
    out = {name: [] for name in SPLITS}
    for n in notes:
        name = where.get((n[0], n[1]))
        if name:
            out[name].append(tuple(n))
    return out
