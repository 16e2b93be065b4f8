"""Writing presets: a whole preset directory (:func:`save`), or new metrics or a new instrument table
in its ``preset.yaml`` (the weights untouched). Every write goes to a temporary file first, then a
rename: a preset is there whole or not at all. Reading and checking is :mod:`sing_synth.preset`.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from .dsp import VELOCITY_CLASSES
from .preset import FORMAT, FORMAT_VERSION, WEIGHTS_FILE, YAML_FILE, Instrument, sha256_file


def save(
    directory: str | os.PathLike,
    model,
    instruments: list[Instrument],
    name: str | None = None,
    description: str = "",
    training: dict | None = None,
    metrics: dict | None = None,
    velocities=VELOCITY_CLASSES,
) -> Path:
    """Write a preset directory atomically (weights then yaml, each via a temporary file). On any
    failure or stop (an error, a signal) the temporary files are removed, and so is the directory
    when this call created it: a preset is there whole, or not at all."""
    from safetensors.torch import save_file

    directory = Path(directory)
    created = not directory.exists()
    directory.mkdir(parents=True, exist_ok=True)
    weights_tmp, yaml_tmp = directory / (WEIGHTS_FILE + ".tmp"), directory / (YAML_FILE + ".tmp")
    try:
        state = {k: v.detach().cpu().float().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(weights_tmp))
        os.replace(weights_tmp, directory / WEIGHTS_FILE)
        config = model.config
        data = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "name": name or directory.name,
            "description": description,
            "sample_rate": config.sample_rate,
            "velocities": list(velocities),
            "model": config.to_dict(),
            "weights": {"file": WEIGHTS_FILE, "sha256": sha256_file(directory / WEIGHTS_FILE)},
            "training": training or {},
            "metrics": metrics or {},
            "instruments": [i.to_dict() for i in instruments],
        }
        yaml_tmp.write_text(dump(data))
        os.replace(yaml_tmp, directory / YAML_FILE)
    except BaseException:
        weights_tmp.unlink(missing_ok=True)
        yaml_tmp.unlink(missing_ok=True)
        if created:
            shutil.rmtree(directory, ignore_errors=True)
        raise
    return directory


def set_metrics(directory: str | os.PathLike, metrics: dict) -> None:
    """Replace the ``metrics`` of the preset in ``directory`` (its yaml rewritten atomically; the
    weights, and so their sha256, untouched)."""
    _rewrite(directory, lambda data: data.update(metrics=metrics))


def set_instruments(directory: str | os.PathLike, instruments: list[Instrument], training: dict | None = None) -> None:
    """Replace the instrument table of the preset in ``directory`` and add ``training``'s entries to
    its ``training`` record (the yaml rewritten atomically, the weights untouched)."""

    def change(data: dict) -> None:
        data["training"] = {**(data.get("training") or {}), **(training or {})}
        data["instruments"] = [i.to_dict() for i in instruments]

    _rewrite(directory, change)


def _rewrite(directory: str | os.PathLike, change) -> None:
    """Rewrite the preset's yaml after ``change(data)``, atomically (a temporary file, then a rename)."""
    import yaml

    path = Path(directory) / YAML_FILE
    data = yaml.safe_load(path.read_text())
    change(data)
    tmp = path.with_name(YAML_FILE + ".tmp")
    try:
        tmp.write_text(dump(data))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def dump(data: dict) -> str:
    """``preset.yaml``'s text: safe YAML, keys in their order, lists of numbers on one line."""
    import yaml

    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=None, width=100)
