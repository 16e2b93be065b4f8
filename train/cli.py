"""Command line of the trainer: ``python -m train {fit,export,calibrate,tune,evaluate,diagnose} ...``.

``fit RECIPE`` trains (resuming from the run directory's checkpoint when there is one);
``export RUN_DIR`` writes a preset, calibrates its levels and tunes it; ``calibrate PRESET`` measures the
levels again; ``tune PRESET`` measures which keys are out of tune and which keys play them
(``train/tune.py``); ``evaluate PRESET`` writes the evaluation report;
``diagnose RUN_DIR`` prints what the run's checkpoint makes of validation notes, by group.
``python -m train RECIPE.yaml`` is short for ``fit``.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m train", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    fit = sub.add_parser("fit", help="train a recipe (resumes from the run's checkpoint)")
    fit.add_argument("recipe", help="recipe YAML file or built-in recipe name (tiny, sing-gm, paper)")
    fit.add_argument("--run-dir", help="run directory (default: runs/RECIPE_NAME)")
    fit.add_argument("--max-minutes", type=float, default=0.0, help="stop (with a checkpoint) after this long")
    fit.add_argument("--export", metavar="DIR", help="when every stage is done, export the preset to DIR")
    ex = sub.add_parser("export", help="export a run's model as a preset")
    ex.add_argument("run_dir")
    ex.add_argument("output", help="preset directory to write (e.g. presets/NAME)")
    ex.add_argument("--no-calibrate", action="store_true", help="leave every level gain at 0 dB")
    ex.add_argument("--no-tune", action="store_true", help="leave the tuning map out (every key plays its own note)")
    ca = sub.add_parser("calibrate", help="measure a preset's level gains on its training notes and store them")
    ca.add_argument("preset", help="preset directory (it must hold split.json, as exported presets do)")
    ca.add_argument("--per-band", type=int, default=2, help="melodic notes per instrument and octave band (default 2)")
    tu = sub.add_parser("tune", help="measure which keys a preset plays out of tune and store the keys that play them")
    tu.add_argument("preset", help="preset directory")
    tu.add_argument("--cents", type=float, default=50.0, help="a note is in tune within this many cents of its pitch (default 50)")
    tu.add_argument("--reach", type=int, default=24,
                    help="play a key from an in-tune key at most this many semitones away (default 24)")
    ev = sub.add_parser("evaluate", help="evaluate a preset on its held-out test pitches")
    ev.add_argument("preset", help="preset directory (it must hold split.json, as exported presets do)")
    ev.add_argument("--notes", type=int, default=None, help="notes per split to evaluate (default: the recipe's)")
    ev.add_argument("--output", help="report directory (default: PRESET/eval)")
    ev.add_argument("--update-preset", action="store_true", help="store the metrics in preset.yaml")
    dg = sub.add_parser("diagnose", help="what a run's checkpoint makes of validation notes, by group")
    dg.add_argument("run_dir")
    dg.add_argument("--per-group", type=int, default=24, help="validation notes per group (default 24)")
    dg.add_argument("--json", action="store_true", help="print the report as JSON")
    dg.add_argument("--f0-band", metavar="LOW-HIGH", default="",
                    help="instead: where the generated fundamentals of this pitch range land, note by note (e.g. 24-35)")
    return parser


def calibrate_preset(preset_dir, per_band: int = 2) -> None:
    from .calibrate import calibrate

    t0 = time.time()
    summary = calibrate(preset_dir, per_band=per_band, progress=print)
    def db(x):
        return "n/a" if x is None else f"{x:+.1f} dB"

    print(f"calibrated {preset_dir} in {time.time() - t0:.0f} s: median level before {db(summary['median_level_before_db'])} "
          f"(melodic RMS), drum peaks {db(summary['median_drum_peak_before_db'])}")


def tune_preset(preset_dir, cents: float = 50.0, reach: int = 24) -> None:
    from .tune import tune

    s = tune(preset_dir, cents=cents, reach=reach, progress=print)
    print(f"tuned {preset_dir} in {s['seconds']:.0f} s: {s['keys']} keys of {s['instruments']} pitched instruments, "
          f"{s['keys_judged']} judged; of those {s['keys_in_tune']} in tune, "
          f"{s['keys_played_from_another']} now played from an in-tune key, {s['keys_left_out_of_tune']} left out of tune "
          f"(no key in tune at every velocity within {reach} semitones)")


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] not in ("fit", "export", "calibrate", "tune", "evaluate", "diagnose", "-h", "--help"):
        argv.insert(0, "fit")
    args = get_parser().parse_args(argv)
    command = "python -m train " + shlex.join(argv)
    try:
        if args.command == "fit":
            from .config import load_recipe
            from .solver import Trainer

            recipe = load_recipe(args.recipe)
            trainer = Trainer(recipe, args.run_dir or f"runs/{recipe.name}")
            t0 = time.time()
            try:
                done = trainer.fit(max_minutes=args.max_minutes)
            finally:
                trainer.close()
            print(f"{'finished' if done else 'stopped'} after {time.time() - t0:.0f} s; run in {trainer.run_dir}")
            if done and args.export and trainer.main:
                from .export import export

                export(trainer.run_dir, args.export, command=command)
                calibrate_preset(args.export)
                tune_preset(args.export)
            return 0
        if args.command == "export":
            from .export import export

            print(export(args.run_dir, args.output, command=command))
            if not args.no_calibrate:
                calibrate_preset(args.output)
            if not args.no_tune:
                tune_preset(args.output)
            return 0
        if args.command == "calibrate":
            calibrate_preset(args.preset, args.per_band)
            return 0
        if args.command == "tune":
            tune_preset(args.preset, args.cents, args.reach)
            return 0
        if args.command == "diagnose":
            from .diagnose import main as diagnose

            print(diagnose(args.run_dir, args.per_group, args.json, args.f0_band))
            return 0
        from .evaluate import evaluate

        report = evaluate(args.preset, notes=args.notes, output=args.output, update_preset=args.update_preset)
        print(report)
        return 0
    except (FileNotFoundError, ValueError) as exc:
        print(f"python -m train: error: {exc}", file=sys.stderr)
        return 1
