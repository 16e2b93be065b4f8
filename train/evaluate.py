"""Evaluate a preset on its held-out test pitches, as in the paper, against a sampler baseline.

On a seeded subset of train and test notes: the paper's table (spectral L1, waveform MSE), and
the breakdown of :mod:`train.breakdown` (L1, level against the real note, pitch accuracy by two
estimators, silent notes) by family, octave band and velocity class, for the model beside the
baseline. The baseline is what a sampler does: the nearest *training* pitch of the same
instrument and velocity, re-pitched by resampling. "As played" is the instrument as the engine
plays it: a key that the preset's tuning map (``train/tune.py``) plays from another key is that
key's note re-pitched, the other keys the model's own notes. A drum-kit section renders, for every kit,
each General MIDI key 35-81 that sounds in the real kit and compares the peaks. Writes
``report.md``, ``report.json``, ``spectrograms.png`` and ``embeddings.png``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from sing_synth import dsp, preset_write
from sing_synth import preset as presets
from sing_synth.channels import InstrumentMap
from sing_synth.losses import log_power_spectrogram
from sing_synth.renderer import NoteRenderer

from . import breakdown as bd
from .config import Recipe
from .data import preset_corpus
from .data.splits import split_notes


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


def played_notes(preset, renderer, notes, gen: np.ndarray) -> np.ndarray:
    """The notes as the engine plays them: where the tuning map plays a key from another, that
    key's generated note re-pitched (by resampling, as the baseline), else the model's note. The
    source is the engine's own rule (``InstrumentMap.source_pitch``)."""
    imap = InstrumentMap(preset)
    sources = [(imap.source_pitch(i, p) or (p, 1.0))[0] for i, p, _ in notes]
    moved = [(k, i, p, v, src) for k, ((i, p, v), src) in enumerate(zip(notes, sources)) if src != p]
    if not moved:
        return gen
    out = gen.copy()
    made = renderer.render_model_rate([(i, src, v) for _, i, _, v, src in moved])
    for (k, _, p, _, src), wav in zip(moved, made):
        out[k] = dsp.repitch(wav, p - src)
    return out


SHOWN = (  # what the spectrogram figure shows: the failures that averages hide, and a reference
    ("the lowest band", lambda fam, p: fam not in bd.UNPITCHED and p < 36),
    ("a piano in the middle", lambda fam, p: fam == "piano" and 48 <= p < 72),
    ("the top band", lambda fam, p: fam not in bd.UNPITCHED and p >= 84),
    ("a drum kit", lambda fam, p: fam == "drums"),
)


def shown_notes(notes, families) -> list[int]:
    """Indices of one test note for each row of ``SHOWN`` (the first that fits; evenly spaced
    notes stand in for a row nothing fits)."""
    picks = []
    for _, fits in SHOWN:
        k = next((k for k, (i, p, _) in enumerate(notes) if fits(families[i], p) and k not in picks), None)
        picks.append(k)
    spare = iter(k for k in np.linspace(0, len(notes) - 1, len(SHOWN)).astype(int) if k not in picks)
    return [k if k is not None else next(spare) for k in picks]


def plot_spectrograms(path: Path, notes, real, gen, played, base, names) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(notes), 4, figsize=(16, 2.4 * len(notes)), squeeze=False)
    for row, k in enumerate(range(len(notes))):
        columns = (("real", real[k]), ("SING", gen[k]), ("SING as played", played[k]), ("re-pitch baseline", base[k]))
        for col, (title, wav) in enumerate(columns):
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


def plot_low_band(path: Path, notes, columns: dict, names, rate: int, max_hz: float = 800.0) -> None:
    """The lowest band's notes up close: 0-``max_hz`` with 4,096-point frames (4 Hz bins at 16 kHz),
    a dotted line at each note's fundamental, one row per note and a column per ``columns`` entry
    (title -> notes' audio)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(notes), len(columns), figsize=(4 * len(columns), 2.4 * len(notes)), squeeze=False)
    for row, (i, p, v) in enumerate(notes):
        for col, (title, wavs) in enumerate(columns.items()):
            ax = axes[row][col]
            ax.specgram(wavs[row][: 2 * rate], NFFT=4096, Fs=rate, noverlap=3584, cmap="magma", vmin=-120)
            ax.set_ylim(0, max_hz)
            ax.axhline(dsp.midi_to_hz(p), color="c", lw=0.6, ls=":")
            ax.set_title(f"{title}: {names[i][:28]} p{p} v{v}", fontsize=8)
            ax.tick_params(labelsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
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


GM_DRUM_KEYS = range(35, 82)  # General MIDI's percussion map: Acoustic Bass Drum .. Open Triangle
DRUM_VCLASS = 3  # velocity 100
DRUM_TOLERANCE_DB = 6.0


def drum_section(renderer, corpus, rate: int, train_pairs=()) -> dict:
    """Per kit: each GM key that sounds in the real kit, generated peak against the real peak;
    keys outside ``train_pairs`` (held out of training, and so of the level calibration) are
    also counted apart."""
    trained = {tuple(p) for p in train_pairs}
    kits = {}
    for inst in corpus.instruments:
        if not inst.drum_kit:
            continue
        keys = [p for p in corpus.pitches[inst.id] if p in GM_DRUM_KEYS]
        if not keys:
            continue
        notes = [(inst.id, p, DRUM_VCLASS) for p in keys]
        gen, real = renderer.render_model_rate(notes), corpus.load_batch(notes)
        diff = [bd.peak_db(g) - bd.peak_db(r) for g, r in zip(gen, real)]
        held = [(p, d) for p, d in zip(keys, diff) if (inst.id, p) not in trained]
        kits[inst.name] = {
            "keys": len(keys),
            "within_6db": int(sum(abs(d) <= DRUM_TOLERANCE_DB for d in diff)),
            "silent": int(sum(bd.peak_db(g) < bd.SILENT_PEAK_DB for g in gen)),
            "median_diff_db": float(np.median(diff)),
            "worst_diff_db": float(min(diff, key=lambda d: -abs(d))),
            "per_key_diff_db": {int(p): round(float(d), 1) for p, d in zip(keys, diff)},
            "held_out_keys": [int(p) for p, _ in held],
            "held_out_within_6db": int(sum(abs(d) <= DRUM_TOLERANCE_DB for _, d in held)),
        }
    return kits


def evaluate(preset_dir, notes: int | None = None, output=None, update_preset: bool = False, seed: int = 0,
             drums: bool = True) -> Path:
    preset = presets.load(preset_dir)
    corpus, split = preset_corpus(preset)
    recipe = Recipe(**preset.training["recipe"])
    by_split = split_notes(split, corpus.notes())
    n = notes or recipe.eval_notes
    rng = np.random.default_rng(seed)
    renderer = NoteRenderer(preset, device="auto", batch_size=32)
    rate = preset.sample_rate
    families = {i.id: i.family for i in corpus.instruments}
    report = {"preset": preset.name, "weights_sha256": preset.sha256, "notes_per_split": n, "seed": seed}
    shown, low_band = {}, {"notes": []}
    for name in ("train", "test"):
        pool = by_split[name]
        chosen = [pool[k] for k in sorted(rng.choice(len(pool), size=min(n, len(pool)), replace=False))]
        real = corpus.load_batch(chosen)
        gen = renderer.render_model_rate(chosen)
        sing = bd.measure(gen, real, chosen, families, rate)
        played = played_notes(preset, renderer, chosen, gen)
        report[name] = {"sing": bd.breakdown(sing), "played": bd.breakdown(bd.measure(played, real, chosen, families, rate))}
        if name == "test":
            base = baseline_notes(chosen, split["train"], corpus)
            report[name]["baseline"] = bd.breakdown(bd.measure(base, real, chosen, families, rate))
            pick = np.array(shown_notes(chosen, families))
            shown = {"notes": [chosen[k] for k in pick], "real": real[pick], "gen": gen[pick], "played": played[pick],
                     "base": base[pick]}
            low = [k for k, (i, p, _) in enumerate(chosen) if p < 36 and families[i] not in bd.UNPITCHED][:3]
            low_band = {"notes": [chosen[k] for k in low],
                        "columns": {"real": real[low], "SING": gen[low], "SING as played": played[low], "re-pitch baseline": base[low]}}
        report[name]["notes"] = bd.as_records(sing)
    if drums:
        report["drum_kits"] = drum_section(renderer, corpus, rate, split["train"])
    out = Path(output) if output else preset.path / "eval"
    out.mkdir(parents=True, exist_ok=True)
    names = {i.id: i.name for i in preset.instruments}
    plot_spectrograms(out / "spectrograms.png", shown["notes"], shown["real"], shown["gen"], shown["played"], shown["base"],
                      names)
    report["low_band_figure"] = bool(low_band["notes"])
    if low_band["notes"]:
        plot_low_band(out / "low_band.png", low_band["notes"], low_band["columns"], names, rate)
    plot_embeddings(out / "embeddings.png", renderer.model.float(), preset.instruments)
    (out / "report.json").write_text(json.dumps(report, indent=1))
    (out / "report.md").write_text(markdown(report))
    if update_preset:
        preset_write.set_metrics(preset.path, {
            "split": "pitch completion, 80/10/10 by (instrument, pitch)",
            "notes_per_split": n,
            "train": report["train"]["sing"]["overall"],
            "test": report["test"]["sing"]["overall"],
            "test_as_played": report["test"]["played"]["overall"],
            "test_baseline_repitch": report["test"]["baseline"]["overall"],
        })
    return out / "report.md"


def markdown(r: dict) -> str:
    def row(label, m):
        acc = "n/a" if m["pitch_accuracy"] is None else f"{100 * m['pitch_accuracy']:.1f}% of {m['pitched_notes']}"
        return f"| {label} | {m['spectral_l1']:.4f} | {m['waveform_mse']:.6f} | {acc} | {m['silent']} | {m['notes']} |"

    train, test, base = r["train"]["sing"], r["test"]["sing"], r["test"]["baseline"]
    played = {name: r[name].get("played") for name in ("train", "test")}
    lines = [
        f"# Evaluation of preset `{r['preset']}`",
        "",
        f"Weights sha256 `{r['weights_sha256'][:16]}...`; {r['notes_per_split']} seeded notes per split.",
        "Pitch accuracy: generated fundamental within 50 cents of the target, over pitched instruments'",
        "notes whose real recording the same estimator finds in tune (project: YIN-like autocorrelation;",
        "Praat: parselmouth's autocorrelation tracker). Level: generated RMS against the real note's, median.",
        "",
        "| model / split | spectral L1 | waveform MSE | pitch accuracy (project) | silent | notes |",
        "|---|---|---|---|---|---|",
        row("SING, train notes", train["overall"]),
        row("SING, test notes", test["overall"]),
        *[row(f"SING as played, {name} notes", played[name]["overall"]) for name in ("train", "test") if played[name]],
        row("re-pitch baseline, test notes", base["overall"]),
        "",
        "As played: the keys that the preset's tuning map plays from an in-tune key (`python -m train tune`)",
        "are that key's note re-pitched; the other notes are the model's own.",
        "",
        "Paper (NSynth, spectral loss): 0.039 train / 0.051 test spectral L1.",
        "",
    ]
    for grouping in bd.GROUPINGS:
        lines += [f"## By {grouping}, test notes", ""] + bd.group_table(grouping, test[grouping], base[grouping]) + [""]
        lines += [f"## By {grouping}, train notes", ""] + bd.group_table(grouping, train[grouping], None) + [""]
        for name in ("test", "train"):
            if played[name] and grouping != "velocity":
                lines += [f"## By {grouping}, {name} notes as played", ""]
                lines += bd.group_table(grouping, played[name][grouping], base[grouping] if name == "test" else None) + [""]
    kits = r.get("drum_kits")
    if kits:
        ok = sum(k["within_6db"] == k["keys"] for k in kits.values())
        keys, within = sum(k["keys"] for k in kits.values()), sum(k["within_6db"] for k in kits.values())
        held = sum(len(k.get("held_out_keys", ())) for k in kits.values())
        held_ok = sum(k.get("held_out_within_6db", 0) for k in kits.values())
        lines += [
            "## Drum kits (velocity 100, every GM key 35-81 the real kit sounds)",
            "",
            f"{ok} of {len(kits)} kits have every key within {DRUM_TOLERANCE_DB:.0f} dB of the real peak; "
            f"{within} of {keys} keys in all, {held_ok} of the {held} keys held out of training; "
            f"{sum(k['silent'] for k in kits.values())} keys silent.",
            "",
            "| kit | keys | within 6 dB | held out: within / keys | silent | median peak diff dB | worst dB |",
            "|---|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {name} | {k['keys']} | {k['within_6db']} | {k.get('held_out_within_6db', 0)} / {len(k.get('held_out_keys', ()))} | "
            f"{k['silent']} | {k['median_diff_db']:+.1f} | {k['worst_diff_db']:+.1f} |"
            for name, k in kits.items()
        ]
        lines.append("")
    lines += ["![spectrograms](spectrograms.png)", ""]
    if r.get("low_band_figure"):
        lines += ["The lowest band up close (0-800 Hz; dotted: the note's fundamental):", "", "![lowest band](low_band.png)", ""]
    lines += ["![embeddings](embeddings.png)", ""]
    return "\n".join(lines)
