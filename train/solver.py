"""The training loop: stages in order, atomic checkpoints, resume, logs, progress, DDP.

A run directory holds ``recipe.yaml`` (resolved), ``split.json``, ``checkpoint.pt`` (the latest
only, written atomically) and ``log.jsonl`` (one line per logged epoch of ``log_every`` steps).
Batches are drawn from a generator seeded by (seed, stage, step, rank), so a resumed run
continues exactly where it stopped. Under ``torchrun`` each process trains on its own batches
and DistributedDataParallel averages the gradients (gloo on the CPU, NCCL on CUDA).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import signal
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from torch import distributed as dist
from torch.nn.parallel import DistributedDataParallel

from sing_synth.model import Encoder, Sing, SingConfig
from sing_synth.progress import Progress

from .config import STAGES, Recipe, load_recipe
from .data import make_corpus
from .data.splits import load_split, make_split, save_split, split_notes
from .init import grain_growth, widen_grain
from .stages import STAGES as STAGE_CLASSES
from .stages import loudest_frame

CHECKPOINT = "checkpoint.pt"


def model_config(recipe: Recipe, n_instruments: int) -> SingConfig:
    spec = dict(recipe.model)
    size = spec.pop("size", "small")
    base = SingConfig.named(size, n_instruments).to_dict()
    base.update(spec)
    return SingConfig.from_dict(base)


def fmt_time(s: float) -> str:
    s = int(max(s, 0))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class Trainer:
    """Trains one recipe in one run directory, resuming from its checkpoint when there is one."""

    def __init__(self, recipe: Recipe, run_dir: str | os.PathLike, corpus=None, quiet: bool = False):
        self.recipe = recipe
        self.run_dir = Path(run_dir)
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self._own_group = self.world > 1 and not dist.is_initialized()
        if self._own_group:
            dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        if torch.cuda.is_available():
            self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        else:
            self.device = torch.device("cpu")
        if recipe.threads:
            torch.set_num_threads(recipe.threads)
        self.main = self.rank == 0
        self.run_dir.mkdir(parents=True, exist_ok=True)
        # a new run from another run's final weights and split (else: None, this run's own or none)
        self.source = Path(recipe.start_from) if recipe.start_from and not (self.run_dir / CHECKPOINT).is_file() else None
        if self.source is not None:
            self._check_source()
        self.corpus = corpus if corpus is not None else make_corpus(recipe.data, cache_dir=self.run_dir.parent / ".corpus-cache")
        self.split = self._split()
        self.notes = split_notes(self.split, self.corpus.notes())
        if not self.notes["train"]:
            raise ValueError("the corpus has no training notes")
        n_instruments = max(i.id for i in self.corpus.instruments) + 1
        self.config = model_config(recipe, n_instruments)
        torch.manual_seed(recipe.seed)
        self.model = Sing(self.config).to(self.device)
        self.encoder = Encoder(self.config).to(self.device)
        self.stage_index, self.step, self.elapsed = 0, 0, {}
        self.opt_state = None
        self.history: list[dict] = []  # the runs this one started from, with their wall time per stage
        self.inherited = False
        self.progress = Progress(self.main and not quiet)
        self.stop_requested = False
        self._load_checkpoint()
        if self.main:
            tmp = self.run_dir / "recipe.yaml.tmp"
            tmp.write_text(yaml.safe_dump(recipe.to_dict(), sort_keys=False))
            os.replace(tmp, self.run_dir / "recipe.yaml")
        rng = np.random.default_rng(recipe.seed + 1)
        valid = self.notes["valid"] or self.notes["train"]
        pick = rng.choice(len(valid), size=min(recipe.valid_notes, len(valid)), replace=False)
        self.valid_notes = [valid[k] for k in sorted(pick)]
        self._valid_audio = None
        self._loudest: dict[tuple[int, int, int], float] = {}  # a note's loudest frame energy (loudest)

    # Data ---------------------------------------------------------------------------------
    def _split(self) -> dict:
        path = self.run_dir / "split.json"
        if path.is_file():
            return load_split(path)
        if self.source is not None:
            source = self.source / "split.json"
            if source.is_file():  # else the same seed over the same data makes the same split
                split = load_split(source)
                if self.main:
                    save_split(split, path, self.recipe.split_seed)
                return split
        split = make_split(self.corpus.pairs(), self.recipe.split_seed, self.recipe.valid, self.recipe.test)
        if self.main:
            save_split(split, path, self.recipe.split_seed)
        return split

    def padded(self, notes) -> torch.Tensor:
        wav = torch.from_numpy(self.corpus.load_batch(notes))
        pad = self.config.pad
        return torch.nn.functional.pad(wav, (pad, pad)).to(self.device)

    def loudest(self, notes, padded: torch.Tensor) -> torch.Tensor:
        """``(batch,)`` the energy of each note's loudest spectral frame (``tail_gain_db``), from
        ``padded`` (``padded(notes)``): a constant of the recording, computed once per note."""
        new = [k for k, n in enumerate(notes) if n not in self._loudest]
        if new:
            for k, e in zip(new, loudest_frame(padded[new]).tolist()):
                self._loudest[notes[k]] = e
        return torch.tensor([self._loudest[n] for n in notes], dtype=torch.float32, device=padded.device)

    def labels(self, notes):
        t = torch.tensor(notes, dtype=torch.long, device=self.device)
        return t[:, 2], t[:, 0], t[:, 1]

    def draw(self, rng, size: int, sampling: str = "") -> list[tuple[int, int, int]]:
        """``size`` training notes drawn with ``rng`` as ``sampling`` (default: the recipe's) says."""
        if (sampling or self.recipe.sampling) == "balanced":
            groups = self.train_groups
            return [groups[g][rng.integers(0, len(groups[g]))] for g in rng.integers(0, len(groups), size)]
        train = self.notes["train"]
        return [train[k] for k in rng.integers(0, len(train), size)]

    @property
    def train_groups(self) -> list[list[tuple[int, int, int]]]:
        """Training notes grouped for balanced sampling: the drum kits, then each octave band."""
        if getattr(self, "_groups", None) is None:
            groups: dict[str, list] = {}
            for n in self.notes["train"]:
                groups.setdefault(note_group(self.corpus.instruments[n[0]], n[1]), []).append(n)
            self._groups = [groups[k] for k in sorted(groups)]
        return self._groups

    # Checkpoints --------------------------------------------------------------------------
    def _check_source(self) -> None:
        """``start_from`` must name a finished run of the same data and split as this recipe."""
        src = self.source
        if not (src / CHECKPOINT).is_file() or not (src / "recipe.yaml").is_file():
            raise ValueError(f"start_from {src} is not a run directory (no {CHECKPOINT} or recipe.yaml): "
                             "name a trained run, e.g. train/runs/sing-gm")
        theirs = load_recipe(src / "recipe.yaml")
        for key in ("data", "split_seed", "valid", "test"):
            if getattr(theirs, key) != getattr(self.recipe, key):
                raise ValueError(f"start_from {src} was trained with another {key}: "
                                 f"copy its {key} into this recipe")
        try:  # the same model, or the same with a longer grain (init.widen_grain)
            grain_growth(model_config(theirs, 1), model_config(self.recipe, 1))
        except ValueError as exc:
            raise ValueError(f"start_from {src}: {exc}; copy its model into this recipe") from None

    def _load_checkpoint(self) -> None:
        path = self.run_dir / CHECKPOINT if self.source is None else self.source / CHECKPOINT
        if not path.is_file():
            return
        ckpt = torch.load(path, map_location=self.device, weights_only=True)
        if ckpt["config"] != self.config.to_dict():
            if self.source is None:
                raise ValueError(f"{path} was made with another model configuration: use a new run directory")
            theirs = SingConfig.from_dict(ckpt["config"])  # start_from with a longer grain (checked in __init__)
            ckpt["model"] = widen_grain(ckpt["model"], theirs, self.config)
            ckpt["encoder"] = widen_grain(ckpt["encoder"], theirs, self.config)
        self.model.load_state_dict(ckpt["model"])
        self.encoder.load_state_dict(ckpt["encoder"])
        self.history = list(ckpt.get("history", []))
        if self.source is not None:
            self.history.append({"run": str(self.recipe.start_from), "elapsed": dict(ckpt.get("elapsed", {}))})
            self.inherited = True
            return
        self.inherited = bool(self.history)
        self.stage_index, self.step = ckpt["stage_index"], ckpt["step"]
        self.elapsed = dict(ckpt.get("elapsed", {}))
        self.opt_state = ckpt.get("optimizer")

    def save_checkpoint(self, optimizer=None) -> None:
        if not self.main:
            return
        ckpt = {
            "config": self.config.to_dict(),
            "model": self.model.state_dict(),
            "encoder": self.encoder.state_dict(),
            "stage_index": self.stage_index,
            "step": self.step,
            "elapsed": self.elapsed,
            "history": self.history,
            "optimizer": optimizer.state_dict() if optimizer is not None else None,
        }
        tmp = self.run_dir / (CHECKPOINT + ".tmp")
        torch.save(ckpt, tmp)
        os.replace(tmp, self.run_dir / CHECKPOINT)

    def log(self, entry: dict) -> None:
        if self.main:
            with open(self.run_dir / "log.jsonl", "a") as f:
                f.write(json.dumps(entry) + "\n")

    # Validation ---------------------------------------------------------------------------
    def autocast(self):
        if self.recipe.precision == "bfloat16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def validate(self, stage) -> float:
        """The stage's validation metric, averaged over the validation notes."""
        self.model.eval()
        self.encoder.eval()
        total = 0.0
        with torch.no_grad(), self.autocast():
            for k in range(0, len(self.valid_notes), 16):
                notes = self.valid_notes[k : k + 16]
                total += float(stage.validate(notes, self.padded(notes))) * len(notes)
        self.model.train()
        self.encoder.train()
        return total / len(self.valid_notes)

    # Training -----------------------------------------------------------------------------
    def close(self) -> None:
        """Leave the process group this trainer joined (exiting without it, gloo's threads may abort)."""
        if self._own_group and dist.is_initialized():
            dist.destroy_process_group()
        self._own_group = False

    def _request_stop(self, *_):
        self.stop_requested = True

    def fit(self, max_minutes: float = 0.0, max_steps: int = 0) -> bool:
        """Train the remaining stages; returns True when every stage is complete.

        ``max_minutes`` / ``max_steps`` stop this call early (with a checkpoint) for budgets and tests.
        """
        deadline = time.monotonic() + max_minutes * 60 if max_minutes else math.inf
        self._steps_left = max_steps or math.inf
        old = {}
        if self.main:
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(ValueError):  # not in the main thread
                    old[sig] = signal.signal(sig, self._request_stop)
        try:
            stages = self.recipe.stage_list()
            while self.stage_index < len(stages):
                name, cfg = stages[self.stage_index]
                stage = STAGE_CLASSES[name](self, cfg, STAGES.index(name))
                if not self._run_stage(stage, deadline):
                    return False
                self.stage_index, self.step, self.opt_state = self.stage_index + 1, 0, None
                self.save_checkpoint()
                if self.stage_index < len(stages) and self._steps_left <= 0:
                    return False
            if self.world > 1:  # lets a test check that the ranks hold identical weights
                (self.run_dir / f"weights-rank{self.rank}.sha256").write_text(weights_digest(self.model) + "\n")
            return True
        finally:
            for sig, handler in old.items():
                signal.signal(sig, handler)
            self.progress.done()

    def _should_stop(self, deadline: float) -> bool:
        self._steps_left -= 1
        stop = self.stop_requested or time.monotonic() > deadline or self._steps_left <= 0
        if self.world > 1:
            flag = torch.tensor([1.0 if stop else 0.0])
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            stop = bool(flag.item())
        return stop

    def _run_stage(self, stage, deadline: float) -> bool:
        name, cfg = stage.name, stage.cfg
        for p in self.encoder.parameters():  # frozen after the autoencoder stage
            p.requires_grad_(stage.trains_encoder)
        module = stage.loss
        params = [p for p in module.parameters() if p.requires_grad]
        if self.world > 1:
            module = DistributedDataParallel(module)
        optimizer = torch.optim.Adam(params, lr=cfg.lr)
        if self.opt_state is not None:
            optimizer.load_state_dict(self.opt_state)
            self.opt_state = None
        elif self.step == 0 and not self.inherited:  # inherited weights are not initialised again
            stage.begin()
        self.model.train()
        self.encoder.train()
        losses, t0, notes_done = [], time.monotonic(), 0
        start_elapsed = self.elapsed.get(name, 0.0)
        revived = None
        while self.step < cfg.steps:
            if cfg.revive_every and self.step % cfg.revive_every == 0:
                revived = stage.revive(self.step)
            notes, rng = stage.batch(self.step)
            for group in optimizer.param_groups:
                group["lr"] = cfg.lr_at(self.step)
            loss = stage.step(module, params, optimizer, notes, rng)
            losses.append(loss)
            self.step += 1
            notes_done += len(notes) * self.world
            spent = time.monotonic() - t0
            self.elapsed[name] = start_elapsed + spent
            rate = notes_done / max(spent, 1e-9)
            eta = (cfg.steps - self.step) * cfg.batch * self.world / max(rate, 1e-9)
            self.progress.show(
                f"[{name}] step {self.step}/{cfg.steps} loss {np.mean(losses[-20:]):.4f} "
                f"{rate:.1f} notes/s ETA {fmt_time(eta)}"
            )
            last = self.step == cfg.steps
            if self.step % self.recipe.log_every == 0 or last:
                valid = self.validate(stage) if self.main else float("nan")
                entry = {"stage": name, "step": self.step, "epoch": math.ceil(self.step / self.recipe.log_every),
                         "train_loss": float(np.mean(losses)), "valid": valid, "lr": cfg.lr_at(self.step - 1), "under_weight": cfg.under_weight_at(self.step - 1), "notes_per_s": rate,
                         "elapsed_s": self.elapsed[name], "time": time.time()}
                if revived is not None:
                    entry["revived"], revived = revived, None
                self.log(entry)
                self.progress.show(
                    f"[{name}] epoch {entry['epoch']} step {self.step}/{cfg.steps} train {entry['train_loss']:.4f} "
                    f"valid {valid:.4f} {rate:.1f} notes/s ETA {fmt_time(eta)}", force=True)
                losses = []
            stop = self._should_stop(deadline)
            if self.step % self.recipe.checkpoint_every == 0 or last or stop:
                self.save_checkpoint(optimizer)
            if stop and not last:
                return False
        return True

    def data_init(self) -> None:
        """Data-dependent initialisation (train/init.py) on a batch of 64 training notes, same on every rank."""
        from .init import data_init

        rng = np.random.default_rng([self.recipe.seed, 99])
        train = self.notes["train"]
        padded = self.padded([train[k] for k in rng.integers(0, len(train), 64)])
        c = self.config
        data_init(self.encoder, self.model.decoder, padded, padded[:, c.pad : c.pad + c.note_samples])

    @staticmethod
    def clip(params, cfg) -> None:
        if cfg.clip_grad:
            torch.nn.utils.clip_grad_norm_(params, cfg.clip_grad)


def note_group(instrument, pitch: int) -> str:
    """"drums" for a drum kit's notes, else the octave band "024-035", ... of the pitch (the band
    of 84-95 also takes the pitches above, such as the corpus's top note 96)."""
    if instrument.drum_kit:
        return "drums"
    lo = 12 * (min(pitch, 95) // 12)
    return f"{lo:03d}-{lo + 11:03d}"


def weights_digest(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for key, value in sorted(model.state_dict().items()):
        h.update(key.encode())
        h.update(value.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()
