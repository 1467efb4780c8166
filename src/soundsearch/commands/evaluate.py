"""``soundsearch evaluate``: retrieval metrics of a checkpoint on a data split (DCASE protocol)."""

from __future__ import annotations

import argparse
import json

DESCRIPTION = """\
Embed every clip (all 10 s segments of the whole file, averaged) and every caption of a split,
then report text-to-audio metrics (DCASE: each caption has one relevant clip) and audio-to-text
metrics (CLAP convention: a clip's captions are relevant; R@k uses the best rank). Deterministic:
two runs give the same numbers. The paper's "test" numbers are ClothoV2 evaluation."""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="retrieval metrics (mAP@10, R@k) of a checkpoint on a split",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("checkpoint", help="checkpoint file or registry name")
    p.add_argument(
        "--data",
        required=True,
        metavar="SPEC",
        help="clotho:ROOT, audiocaps:CSV_DIR[:AUDIO_DIR], wavcaps:ROOT or pairs:FILE.csv",
    )
    p.add_argument("--split", default="evaluation", help="split to score (evaluation)")
    p.add_argument("--batch-size", type=int, default=16, help="audio segments per forward pass")
    p.add_argument("--text-batch-size", type=int, default=64, help="captions per forward pass")
    p.add_argument(
        "--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if present)"
    )
    p.add_argument("--workers", type=int, default=0, help="audio decoding processes (0)")
    p.add_argument(
        "--text-model", default=None, help="Hugging Face text model of a foreign checkpoint"
    )
    p.add_argument(
        "--skip-unreadable",
        action="store_true",
        help="leave out unreadable/missing audio (listed) instead of stopping",
    )
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--output", metavar="FILE", help="also write the results JSON to FILE")
    p.add_argument(
        "--submission",
        metavar="FILE",
        help="write the DCASE submission CSV (top 10 files per caption)",
    )
    p.add_argument(
        "--similarity", metavar="FILE", help="write the similarity matrix [captions, clips] (.npy)"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def _device(name: str | None) -> str:
    import torch

    return name or ("cuda" if torch.cuda.is_available() else "cpu")


def run(args: argparse.Namespace) -> int:
    from soundsearch.checkpoints import load_model
    from soundsearch.data import ReadStats, load_source
    from soundsearch.evaluate import evaluate

    policy = "skip" if args.skip_unreadable else "raise"
    stats = ReadStats()
    records = load_source(args.data, args.split, on_error="raise", on_missing=policy, stats=stats)
    model = load_model(args.checkpoint, device=_device(args.device), text_model=args.text_model)
    results = evaluate(
        model,
        records,
        args.batch_size,
        text_batch_size=args.text_batch_size,
        num_workers=args.workers,
        on_error=policy,
        json_path=args.output,
        submission_path=args.submission,
        similarity_path=args.similarity,
        progress=not args.no_progress,
    )
    results = {
        "checkpoint": args.checkpoint,
        "data": args.data,
        "split": args.split,
        **results,
        "missing_files": stats.missing_audio,  # records whose audio was not found (left out)
        "missing_examples": stats.missing_examples,
    }
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(format_table(results))
    return 0


def format_table(results: dict) -> str:
    """The metrics as a small table, in percent like the paper."""
    names = ("mAP@10", "R@1", "R@5", "R@10")
    lines = [
        f"{results['data']} {results['split']}: "
        + f"{results['n_audio']} clips, {results['n_captions']} captions",
        f"{'direction':<30}" + "".join(f"{n:>9}" for n in names) + f"{'med rank':>10}",
    ]
    for key, label in (
        ("text_to_audio", "text->audio (DCASE)"),
        ("audio_to_text", "audio->text (CLAP)"),
    ):
        m = results[key]
        row = f"{label:<30}" + "".join(f"{100 * m[n]:>9.2f}" for n in names)
        lines.append(row + f"{m['median_rank']:>10.1f}")
    if results.get("missing_files"):
        lines.append(f"{results['missing_files']} clips left out: audio not found")
    skipped = results.get("skipped_files") or {}
    if skipped:
        lines.append(f"{len(skipped)} unreadable files left out:")
        lines += [f"  {path}: {reason}" for path, reason in list(skipped.items())[:20]]
    return "\n".join(lines)
