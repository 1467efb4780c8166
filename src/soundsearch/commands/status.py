"""``soundsearch status``: what the index holds, which model made it, and which files failed."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from soundsearch.config import add_index_argument, resolve_index_dir

if TYPE_CHECKING:
    from soundsearch.index.store import Store


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("status", help="show the index: counts, model, errors")
    add_index_argument(p)
    p.add_argument("--errors", type=int, default=20, metavar="N", help="list N errors (20)")
    p.add_argument("--all-errors", action="store_true", help="list every error")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def collect(store: Store, limit: int | None) -> dict:
    """The status as a dict (also served by the HTTP API)."""
    counts = store.counts()
    return {
        "index": str(store.dir),
        "roots": store.roots(),
        **counts,
        "errors_by_kind": store.error_kinds(),
        "acoustic_model": store.get_meta("acoustic_model_spec"),
        "acoustic_model_identity": store.get_meta("acoustic_model_identity"),
        "text_model_identity": store.get_meta("text_model_identity"),
        "size_bytes": store.size_bytes(),
        "error_list": store.errors(limit),
    }


def run(args: argparse.Namespace) -> int:
    from soundsearch.index.store import Store

    store = Store(resolve_index_dir(args.index))
    try:
        st = collect(store, None if args.all_errors else max(0, args.errors))
    finally:
        store.close()
    if args.json:
        print(json.dumps(st, ensure_ascii=False, indent=1))
        return 0
    hours = st["seconds"] / 3600
    print(f"index     {st['index']} ({st['size_bytes'] / 1e6:.1f} MB)")
    print(f"folders   {', '.join(st['roots']) or '(none)'}")
    print(f"files     {st['files']} ({hours:.2f} h of audio), {st['segments']} segments")
    model = st["acoustic_model"]
    ident = st["acoustic_model_identity"]
    print(f"acoustic  {f'{model} ({ident})' if model else 'none (metadata only)'}")
    print(f"text      {st['text_model_identity'] or '-'}")
    kinds = ", ".join(f"{k}: {n}" for k, n in st["errors_by_kind"].items())
    print(f"errors    {st['errors']}" + (f" ({kinds})" if kinds else ""))
    for e in st["error_list"]:
        print(f"  [{e['kind']}] {e['path']}: {e['reason']}")
    shown = len(st["error_list"])
    if shown < st["errors"]:
        print(f"  ... {st['errors'] - shown} more (--all-errors)")
    return 0
