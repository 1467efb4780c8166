"""``soundsearch search "TEXT"``: find indexed sounds by describing them."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from soundsearch.config import MODES, add_index_argument, fusion_settings, resolve_index_dir

if TYPE_CHECKING:
    from soundsearch.index.search import Response, Searcher


def add_ranking_arguments(p: argparse.ArgumentParser) -> None:
    """Options shared by search, similar and serve."""
    p.add_argument("-k", type=int, default=10, help="number of results (10)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument(
        "--weights",
        default=None,
        metavar="C=W,...",
        help="fusion weights, e.g. keyword=1,text=1,acoustic=2 (default 1 each; "
        "also $SOUNDSEARCH_WEIGHTS)",
    )
    p.add_argument("--rrf-k", type=int, default=None, help="reciprocal rank fusion constant (60)")
    p.add_argument("--device", default="cpu", help="device for the query models (cpu)")
    add_index_argument(p)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("search", help="find sounds by describing them")
    p.add_argument("query", help='what you are looking for, e.g. "a heavy wooden door creaking"')
    p.add_argument(
        "--mode",
        choices=MODES,
        default="hybrid",
        help="hybrid: all channels fused (default); metadata: names, folders and tags only; "
        "acoustic: the audio model only",
    )
    add_ranking_arguments(p)
    p.set_defaults(func=run)


def print_response(response: Response, as_json: bool) -> None:
    """The shared output of search and similar."""
    if as_json:
        print(json.dumps(response.to_dict(), ensure_ascii=False, indent=1))
        return
    for note in response.notes:
        print(f"note: {note}")
    if not response.results:
        print("no results")
        return
    for r in response.results:
        m, s = divmod(r.time, 60)
        print(f"{r.rank:3d}  {r.score:8.4f}  {int(m):2d}:{s:04.1f}  {r.path}")


def open_searcher(args: argparse.Namespace) -> Searcher:
    from soundsearch.index.search import Searcher
    from soundsearch.index.store import Store

    store = Store(resolve_index_dir(args.index))
    return Searcher(store, fusion_settings(args.weights, args.rrf_k), device=args.device)


def run(args: argparse.Namespace) -> int:
    searcher = open_searcher(args)
    try:
        print_response(searcher.search(args.query, k=args.k, mode=args.mode), args.json)
    finally:
        searcher.store.close()
    return 0
