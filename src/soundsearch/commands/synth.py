"""``soundsearch synth``: write a small synthetic data set in ClothoV2's layout."""

from __future__ import annotations

import argparse
from pathlib import Path

from soundsearch.errors import UserError

DESCRIPTION = """\
Write a synthetic audio-caption data set laid out exactly like ClothoV2 (captions and metadata
CSVs, development/validation/evaluation folders of WAV files), to try training and evaluation
without downloading anything: soundsearch evaluate MODEL --data clotho:OUT. Clips are short
sequences of beeps, noise bursts, chirps, knocks, hums and warbles (low or high, one to three of
each, quiet or loud), each with five captions that describe what is audible. Same seed, same files."""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "synth",
        help="write a small synthetic ClothoV2-style data set",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("out", type=Path, help="folder to write")
    p.add_argument("--clips", type=int, default=200, help="development clips (200)")
    p.add_argument("--val-clips", type=int, help="validation clips (default clips/4, at least 8)")
    p.add_argument("--eval-clips", type=int, help="evaluation clips (default clips/4, at least 8)")
    p.add_argument("--seed", type=int, default=0, help="random seed (0)")
    p.add_argument("--min-seconds", type=float, default=2.0, help="shortest clip (2.0 s)")
    p.add_argument("--max-seconds", type=float, default=6.0, help="longest clip (6.0 s)")
    p.add_argument("--sample-rate", type=int, default=32000, help="WAV sample rate (32000)")
    p.add_argument("--force", action="store_true", help="overwrite an existing data set in OUT")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from soundsearch.synth import SynthConfig, write_synth

    if any(args.out.glob("clotho_captions_*.csv")) and not args.force:
        raise UserError(f"{args.out} already holds a data set; use --force to overwrite it")
    for name in ("clips", "val_clips", "eval_clips"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1")
    if not 0 < args.min_seconds <= args.max_seconds:
        raise UserError("need 0 < --min-seconds <= --max-seconds")
    if args.sample_rate < 8000:
        raise UserError("--sample-rate must be at least 8000 Hz (the events reach 6 kHz)")
    cfg = SynthConfig(
        clips=args.clips,
        val_clips=args.val_clips,
        eval_clips=args.eval_clips,
        seed=args.seed,
        min_seconds=args.min_seconds,
        max_seconds=args.max_seconds,
        sample_rate=args.sample_rate,
    )
    summary = write_synth(args.out, cfg)
    clips = summary["clips"]
    print(
        f"wrote {sum(clips.values())} clips ({summary['seconds'] / 60:.1f} min of audio) to "
        f"{args.out}: " + ", ".join(f"{split} {n}" for split, n in clips.items())
    )
    print(f"use it as --data clotho:{args.out}")
    return 0
