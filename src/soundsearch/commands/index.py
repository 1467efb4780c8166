"""``soundsearch index DIR...``: build or update the library index (incremental, resumable)."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from soundsearch.config import ENV_MODEL, add_index_argument, resolve_index_dir

if TYPE_CHECKING:
    from soundsearch.index.indexer import IndexReport

DESCRIPTION = """\
Index the sound files under the given folders (or, with no folder, every folder indexed before).
Only new or changed files are processed, deleted files are removed, and an interrupted run keeps
all it finished. Names, folders and embedded tags are always indexed (offline, no model needed);
with --model CHECKPOINT every 10 s segment is also embedded by the audio model, which lets you
search by what the sound is. The model is recorded in the index: later runs and searches reuse it."""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "index",
        help="build or update the index of a sound library",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("folders", nargs="*", metavar="DIR", help="folders to index")
    add_index_argument(p)
    p.add_argument(
        "--model",
        default=None,
        metavar="CKPT",
        help=f"acoustic model: checkpoint file or name, 'none' for metadata only "
        f"(default: ${ENV_MODEL}, else what the index recorded, else none)",
    )
    p.add_argument("--reindex", action="store_true", help="embed every file again (new model)")
    p.add_argument("--workers", type=int, default=None, help="decoding processes (CPU count)")
    p.add_argument("--batch-size", type=int, default=16, help="segments per inference batch (16)")
    p.add_argument("--commit-every", type=int, default=64, help="files per transaction (64)")
    p.add_argument("--device", default="cpu", help="inference device: cpu, cuda, cuda:1 (cpu)")
    p.add_argument(
        "--precision", choices=("auto", "fp32", "bf16"), default="auto",
        help="acoustic inference precision (auto: bf16 on GPU and on CPUs with native bf16, else fp32)",
    )  # fmt: skip
    p.add_argument(
        "--ann", choices=("none", "faiss"), default=None,
        help="approximate acoustic search with FAISS (for millions of segments; extra 'ann'); "
        "recorded in the index (default: keep its setting, initially none = exact)",
    )  # fmt: skip
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                   help="no progress bar, only warnings")  # fmt: skip
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import os

    from soundsearch.index.indexer import Indexer, IndexOptions
    from soundsearch.index.store import Store

    index_dir = resolve_index_dir(args.index)
    opts = IndexOptions(
        model=args.model if args.model is not None else os.environ.get(ENV_MODEL),
        reindex=args.reindex,
        batch_size=max(1, args.batch_size),
        commit_every=max(1, args.commit_every),
        device=args.device,
        precision=args.precision,
        progress=not (args.no_progress or getattr(args, "quiet", False)),
        ann=args.ann,
    )
    if args.workers is not None:
        opts.workers = max(0, args.workers)
    store = Store(index_dir, create=True)
    try:
        report = Indexer(store, opts).run(args.folders)
    finally:
        store.close()
    rate = report.processed / report.seconds if report.seconds else 0.0
    if args.json:
        print(json.dumps({"index": str(index_dir), **asdict(report), "files_per_s": rate}))
    else:
        _print_report(index_dir, report, rate)
    return 0


def _print_report(index_dir: Path, report: IndexReport, rate: float) -> None:
    print(f"index {index_dir}")
    print(
        f"  {report.found} files found: {report.new} new, {report.changed} changed, "
        f"{report.unchanged} unchanged, {report.touched} touched (same content), "
        f"{report.removed} removed"
    )
    if report.not_audio:
        print(
            f"  {report.not_audio} files are not audio (by extension): skipped, listed by `soundsearch status`"
        )
    if report.errors or report.known_errors:
        print(
            f"  {report.errors} new errors, {report.known_errors} earlier errors not retried "
            "(list them with `soundsearch status`)"
        )
    for root in report.missing_roots:
        print(f"  warning: {root} is missing; its files were kept")
    model = report.model or "none (metadata only; add --model CHECKPOINT to search by sound)"
    print(f"  acoustic model: {model}; {report.segments} segments embedded")
    print(f"  {report.seconds:.1f} s, {rate:.1f} files/s")
