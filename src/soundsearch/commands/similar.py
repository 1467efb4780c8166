"""``soundsearch similar FILE``: find indexed sounds like an example sound (query by example)."""

from __future__ import annotations

import argparse

from soundsearch.commands.search import add_ranking_arguments, open_searcher, print_response


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "similar",
        help="find sounds like an example file",
        description="Rank indexed files by how similar they sound to FILE (indexed or not). "
        "Without an acoustic model in the index, files are ranked by metadata similarity "
        "(name, folders, tags) and the output says so.",
    )
    p.add_argument("file", metavar="FILE", help="an audio file, or the id of an indexed file")
    p.add_argument(
        "--mode",
        choices=("acoustic", "metadata", "hybrid"),
        default=None,
        help="acoustic (default when the index has a model), metadata, or hybrid (both fused)",
    )
    add_ranking_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    searcher = open_searcher(args)
    try:
        print_response(searcher.similar(args.file, k=args.k, mode=args.mode), args.json)
    finally:
        searcher.store.close()
    return 0
