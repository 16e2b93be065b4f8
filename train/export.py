"""Export a training run as a preset directory, with its provenance and learning curve."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
from pathlib import Path

import torch
import yaml

from sing_synth import preset_write
from sing_synth.model import Sing, SingConfig

from .config import Recipe
from .data import make_corpus
from .data.splits import make_split, save_split
from .solver import CHECKPOINT


def code_revision() -> str:
    root = Path(__file__).resolve().parent.parent
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True).stdout.strip()
        return rev + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def hardware() -> dict:
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu": cpu, "cores": os.cpu_count(), "gpu": gpu, "torch": str(torch.__version__), "python": platform.python_version()}


def read_log(run_dir: Path) -> list[dict]:
    path = run_dir / "log.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def plot_curve(log: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stages = list(dict.fromkeys(e["stage"] for e in log))
    fig, axes = plt.subplots(1, len(stages), figsize=(4.5 * len(stages), 3.5), squeeze=False)
    for ax, stage in zip(axes[0], stages):
        rows = [e for e in log if e["stage"] == stage]
        ax.plot([e["step"] for e in rows], [e["train_loss"] for e in rows], label="train (segments)")
        ax.plot([e["step"] for e in rows], [e["valid"] for e in rows], label="valid (whole notes)")
        ax.set_title(stage)
        ax.set_xlabel("step")
        ax.set_ylabel("latent MSE" if stage == "sequence" else "spectral L1")
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def export(run_dir, output, command: str = "") -> Path:
    run_dir, output = Path(run_dir), Path(output)
    ckpt_path = run_dir / CHECKPOINT
    if not ckpt_path.is_file():
        raise FileNotFoundError(f"{ckpt_path} not found: train first (python -m train fit RECIPE)")
    recipe = Recipe(**yaml.safe_load((run_dir / "recipe.yaml").read_text()))
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    config = SingConfig.from_dict(ckpt["config"])
    stages = recipe.stage_list()
    if ckpt["stage_index"] < len(stages) and ckpt["stage_index"] < 2:
        raise ValueError(f"{run_dir}: the sequence generator is not trained yet (stage {stages[ckpt['stage_index']][0]})")
    model = Sing(config)
    model.load_state_dict(ckpt["model"])
    corpus = make_corpus(recipe.data, cache_dir=run_dir.parent / ".corpus-cache")
    instruments = [i for i in corpus.instruments if i.pitch_range[1] >= i.pitch_range[0]]
    done = {name: cfg.steps for name, cfg in stages[: ckpt["stage_index"]]}
    if ckpt["stage_index"] < len(stages):
        done[stages[ckpt["stage_index"]][0]] = ckpt["step"]
    log = read_log(run_dir)
    training = {
        "corpus": corpus.describe(),
        "recipe": recipe.to_dict(),
        "command": command,
        "steps_done": done,
        "complete": ckpt["stage_index"] >= len(stages),
        "wall_time_s": {k: round(v, 1) for k, v in ckpt.get("elapsed", {}).items()},
        "started_from": [{"run": h["run"], "wall_time_s": {k: round(v, 1) for k, v in h["elapsed"].items()}}
                         for h in ckpt.get("history", [])],
        "hardware": hardware(),
        "code_revision": code_revision(),
        "final_valid": {e["stage"]: e["valid"] for e in log},
    }
    output.mkdir(parents=True, exist_ok=True)
    # metrics describe these weights only: `python -m train evaluate --update-preset` adds them
    preset_write.save(output, model, instruments, name=recipe.name, description=recipe.description.strip(), training=training)
    if (run_dir / "split.json").is_file():
        shutil.copyfile(run_dir / "split.json", output / "split.json")
    else:  # a committed run holds no split (it is not committed twice): the same seed over the same data makes it
        save_split(make_split(corpus.pairs(), recipe.split_seed, recipe.valid, recipe.test), output / "split.json",
                   recipe.split_seed)
    if log:
        plot_curve(log, output / "learning_curve.png")
    return output
