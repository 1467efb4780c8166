"""``soundsearch models``: the named checkpoints, what is cached locally, download, convert."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "models",
        help="list, download and convert checkpoints",
        description="Without an action: list the named checkpoints and which are cached.",
    )
    acts = p.add_subparsers(dest="action", metavar="ACTION")
    acts.add_parser("list", help="list the named checkpoints (default)")
    d = acts.add_parser("download", help="download a named checkpoint into the cache (resumable)")
    d.add_argument("name")
    c = acts.add_parser(
        "convert", help="convert any checkpoint to soundsearch's .safetensors format"
    )
    c.add_argument("source", help="path or name of a retrieval checkpoint")
    c.add_argument("out", help="output .safetensors file")
    c.add_argument("--text-model", help="Hugging Face text model of a foreign checkpoint")
    i = acts.add_parser("info", help="show a checkpoint's configuration and identity")
    i.add_argument("source")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def _list(as_json: bool) -> int:
    from soundsearch import hub

    rows = []
    for e in hub.REGISTRY.values():
        path = hub.local_path(e.name)
        rows.append(
            {
                "name": e.name,
                "present": path.is_file(),
                "path": str(path),
                "layout": e.layout,
                "audio_encoder": e.audio_encoder,
                "text_model": e.text_model,
                "size": e.size_hint,
                "description": e.description,
                "urls": list(e.urls),
            }
        )
    if as_json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"cache: {hub.cache_dir()}")
    for r in rows:
        mark = "present" if r["present"] else "-"
        print(f"{r['name']:22s} {mark:8s} {r['size']:>7s}  {r['description']}")
    return 0


def run(args: argparse.Namespace) -> int:
    action = args.action or "list"
    if action == "list":
        return _list(args.json)
    if action == "download":
        from soundsearch import hub

        print(hub.download(args.name, progress=not args.quiet))
        return 0
    from soundsearch.checkpoints import load_model, model_identity, save_model

    if action == "convert":
        model = load_model(args.source, text_model=args.text_model)
        print(save_model(model, args.out, extra={"converted_from": str(args.source)}))
        return 0
    model = load_model(args.source)
    info = {
        "source": str(args.source),
        "identity": model_identity(model),
        "config": model.config.to_dict(),
        "extra": getattr(model, "checkpoint_extra", {}),
    }
    print(json.dumps(info, indent=2, default=str))
    return 0
