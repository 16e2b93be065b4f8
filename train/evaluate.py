"""Evaluate a preset on its held-out test pitches, as in the paper, against a sampler baseline.

Metrics on a seeded subset of train and test notes: spectral L1 and waveform MSE (the paper's
table) and pitch accuracy (share of generated notes whose estimated fundamental is within 50
cents of the target, over pitched instruments' notes whose real recording has a reliable
fundamental). The baseline is what a sampler does: the nearest *training* pitch of the same
instrument and velocity, re-pitched by resampling. Writes ``report.md``, ``report.json``,
``spectrograms.png`` and ``embeddings.png``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import yaml

from sing_synth import dsp
from sing_synth import preset as presets
from sing_synth.losses import log_power_spectrogram, spectral_loss, waveform_mse
from sing_synth.renderer import NoteRenderer

from .config import Recipe
from .data import make_corpus
from .data.splits import load_split, split_notes

F0_SEGMENT = (4000, 20000)  # 0.25 s to 1.25 s: past the attack, before the release


def pitch_ok(wav: np.ndarray, pitch: int, rate: int) -> bool:
    f0 = dsp.estimate_f0(wav[F0_SEGMENT[0] : F0_SEGMENT[1]], rate)
    return f0 > 0 and abs(dsp.cents(f0, dsp.midi_to_hz(pitch))) <= 50


def baseline_notes(notes, train_pairs, corpus) -> np.ndarray:
    """Nearest training pitch of the same instrument (same velocity), re-pitched by resampling."""
    by_inst: dict[int, list[int]] = {}
    for i, p in train_pairs:
        by_inst.setdefault(i, []).append(p)
    out = np.zeros((len(notes), corpus.note_samples), dtype=np.float32)
    for k, (i, p, v) in enumerate(notes):
        cands = by_inst.get(i)
        if not cands:
            continue
        src = min(cands, key=lambda q: (abs(q - p), q))
        out[k] = dsp.repitch(corpus.load(i, src, v), p - src)
    return out


def metrics(gen: np.ndarray, real: np.ndarray, notes, corpus, rate: int) -> dict:
    g, r = torch.from_numpy(gen), torch.from_numpy(real)
    spec = torch.cat([spectral_loss(g[k : k + 64], r[k : k + 64], reduction="none") for k in range(0, len(g), 64)])
    mse = waveform_mse(g, r, reduction="none")
    hits, total = 0, 0
    for k, (i, p, _) in enumerate(notes):
        if corpus.pitched(i) and pitch_ok(real[k], p, rate):
            total += 1
            hits += pitch_ok(gen[k], p, rate)
    return {
        "spectral_l1": float(spec.mean()),
        "waveform_mse": float(mse.mean()),
        "pitch_accuracy": hits / total if total else None,
        "pitched_notes": total,
        "notes": len(notes),
    }


def plot_spectrograms(path: Path, notes, real, gen, base, names) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(notes), 3, figsize=(12, 2.4 * len(notes)), squeeze=False)
    for row, k in enumerate(range(len(notes))):
        for col, (title, wav) in enumerate((("real", real[k]), ("SING", gen[k]), ("re-pitch baseline", base[k]))):
            s = log_power_spectrogram(torch.from_numpy(wav)[None])[0].numpy()
            ax = axes[row][col]
            ax.imshow(s, origin="lower", aspect="auto", cmap="magma", vmin=0, vmax=max(float(s.max()), 1.0))
            i, p, v = notes[k]
            ax.set_title(f"{title}: {names[i][:28]} p{p} v{v}", fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_embeddings(path: Path, model, instruments) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ids = [i.id for i in instruments]
    emb = model.generator.instrument.weight.detach().float().numpy()[ids]
    emb = emb - emb.mean(0)
    _, _, vt = np.linalg.svd(emb, full_matrices=False)
    xy = emb @ vt[:2].T
    families = sorted({i.family for i in instruments})
    cmap = plt.get_cmap("tab20")
    fig, ax = plt.subplots(figsize=(8, 6))
    for n, fam in enumerate(families):
        sel = [k for k, i in enumerate(instruments) if i.family == fam]
        ax.scatter(xy[sel, 0], xy[sel, 1], s=10, color=cmap(n % 20), label=fam)
    ax.set_title("Instrument embeddings (PCA), coloured by family")
    ax.legend(fontsize=7, markerscale=2, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def evaluate(preset_dir, notes: int | None = None, output=None, update_preset: bool = False, seed: int = 0) -> Path:
    preset = presets.load(preset_dir)
    split_path = preset.path / "split.json"
    if not split_path.is_file():
        raise FileNotFoundError(f"{split_path} not found: evaluate an exported preset (it carries its split)")
    recipe = Recipe(**preset.training["recipe"])
    corpus = make_corpus(recipe.data, cache_dir=Path("runs") / ".corpus-cache")
    split = load_split(split_path)
    by_split = split_notes(split, corpus.notes())
    n = notes or recipe.eval_notes
    rng = np.random.default_rng(seed)
    renderer = NoteRenderer(preset, device="auto", batch_size=32)
    rate = preset.sample_rate
    report = {"preset": preset.name, "weights_sha256": preset.sha256, "notes_per_split": n, "seed": seed}
    shown = {}
    for name in ("train", "test"):
        pool = by_split[name]
        chosen = [pool[k] for k in sorted(rng.choice(len(pool), size=min(n, len(pool)), replace=False))]
        real = corpus.load_batch(chosen)
        gen = renderer.render_model_rate(chosen)
        base = baseline_notes(chosen, split["train"], corpus)
        report[name] = {"sing": metrics(gen, real, chosen, corpus, rate)}
        if name == "test":
            report[name]["baseline"] = metrics(base, real, chosen, corpus, rate)
            pick = np.linspace(0, len(chosen) - 1, 4).astype(int)
            shown = {"notes": [chosen[k] for k in pick], "real": real[pick], "gen": gen[pick], "base": base[pick]}
    out = Path(output) if output else preset.path / "eval"
    out.mkdir(parents=True, exist_ok=True)
    names = {i.id: i.name for i in preset.instruments}
    plot_spectrograms(out / "spectrograms.png", shown["notes"], shown["real"], shown["gen"], shown["base"], names)
    plot_embeddings(out / "embeddings.png", renderer.model.float(), preset.instruments)
    (out / "report.json").write_text(json.dumps(report, indent=2))
    (out / "report.md").write_text(markdown(report))
    if update_preset:
        data = yaml.safe_load((preset.path / presets.YAML_FILE).read_text())
        data["metrics"] = {
            "split": "pitch completion, 80/10/10 by (instrument, pitch)",
            "notes_per_split": n,
            "train": report["train"]["sing"],
            "test": report["test"]["sing"],
            "test_baseline_repitch": report["test"]["baseline"],
        }
        tmp = preset.path / (presets.YAML_FILE + ".tmp")
        tmp.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
        tmp.replace(preset.path / presets.YAML_FILE)
    return out / "report.md"


def markdown(r: dict) -> str:
    def row(label, m):
        acc = "n/a" if m["pitch_accuracy"] is None else f"{100 * m['pitch_accuracy']:.1f}% of {m['pitched_notes']}"
        return f"| {label} | {m['spectral_l1']:.4f} | {m['waveform_mse']:.6f} | {acc} | {m['notes']} |"

    lines = [
        f"# Evaluation of preset `{r['preset']}`",
        "",
        f"Weights sha256 `{r['weights_sha256'][:16]}...`; {r['notes_per_split']} seeded notes per split.",
        "Pitch accuracy: generated fundamental within 50 cents of the target, over pitched instruments'",
        "notes whose real recording has a reliable fundamental.",
        "",
        "| model / split | spectral L1 | waveform MSE | pitch accuracy | notes |",
        "|---|---|---|---|---|",
        row("SING, train notes", r["train"]["sing"]),
        row("SING, test notes", r["test"]["sing"]),
        row("re-pitch baseline, test notes", r["test"]["baseline"]),
        "",
        "Paper (NSynth, spectral loss): 0.039 train / 0.051 test spectral L1.",
        "",
        "![spectrograms](spectrograms.png)",
        "",
        "![embeddings](embeddings.png)",
        "",
    ]
    return "\n".join(lines)
