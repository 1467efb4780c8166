"""``soundsearch serve``: the HTTP API and the web page for searching the index in a browser."""

from __future__ import annotations

import argparse
import logging

from soundsearch.config import add_index_argument, fusion_settings, resolve_index_dir

log = logging.getLogger(__name__)

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "serve",
        help="search in a web browser (HTTP API + web page)",
        description="Serve the web page and the JSON API (/api/search, /api/similar, "
        "/api/status, /api/audio/ID). Binds to 127.0.0.1 unless told otherwise: only this "
        "computer can connect. Audio is served only for indexed files.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (8000)")
    p.add_argument("--weights", default=None, metavar="C=W,...", help="fusion weights")
    p.add_argument("--rrf-k", type=int, default=None, help="reciprocal rank fusion constant (60)")
    p.add_argument("--device", default="cpu", help="device for the query models (cpu)")
    add_index_argument(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from soundsearch.server import create_app

    app = create_app(
        resolve_index_dir(args.index), fusion_settings(args.weights, args.rrf_k), args.device
    )
    import uvicorn

    if args.host not in LOOPBACK:
        print(
            f"warning: serving on {args.host}: other computers on the network can search the "
            "index and listen to its files"
        )
    shown = f"[{args.host}]" if ":" in args.host else args.host
    print(f"soundsearch: open http://{shown}:{args.port}/ in a browser (Ctrl-C stops)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
