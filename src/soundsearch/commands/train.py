"""``soundsearch train RECIPE --data kind:ROOT ...``: run one row of the paper's tables."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from soundsearch.errors import UserError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a dual encoder with a recipe (one per row of the paper's tables)",
        description="Train with a recipe: a packaged name (see --list) or a .toml file. "
        "Data roots come from --data; any recipe key can be overridden with --set key=value.",
    )
    p.add_argument("recipe", nargs="?", help="recipe name or .toml path")
    p.add_argument("--list", action="store_true", help="list the packaged recipes and exit")
    p.add_argument(
        "--data",
        action="append",
        default=[],
        metavar="KIND:ROOT",
        help="a data source root, e.g. clotho:/data/clotho, audiocaps:/data/ac, "
        "wavcaps:/data/wavcaps, pairs:my.csv (repeat for several)",
    )
    p.add_argument("--out", help="output folder (default runs/<recipe>)")
    p.add_argument("--resume", action="store_true", help="continue the interrupted run in --out")
    p.add_argument("--init-from", help="stage 2: start from this checkpoint (sets init_from)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a recipe key (dotted for nested: model.text.name=bert-base-uncased)",
    )
    p.add_argument(
        "--audio-encoder",
        help="audio tower (passt-n, passt-s, passt-l, passt-s20, "
        "passt-s30, cnn10, cnn14); sets model.audio_encoder and its AudioSet init",
    )
    p.add_argument("--devices", help="devices to use (e.g. 4 GPUs: --devices 4)")
    p.add_argument("--dry-run", action="store_true", help="print the resolved recipe and exit")
    p.set_defaults(func=run)


def _roots(items: list[str]) -> dict[str, str]:
    from soundsearch.data import parse_spec

    roots = {}
    for item in items:
        kind, _, _ = parse_spec(item)
        roots[kind] = item
    return roots


def run(args: argparse.Namespace) -> int:
    import json

    from soundsearch.recipe import config_to_dict, load_recipe, recipe_names

    if args.list:
        for name in recipe_names():
            print(f"{name:40s} {load_recipe(name).description}")
        return 0
    if not args.recipe:
        raise UserError("give a recipe (see soundsearch train --list)")
    overrides = list(args.overrides)
    if args.init_from:
        overrides.append(f"init_from={json.dumps(args.init_from)}")
    if args.audio_encoder:
        from soundsearch.encoders import AUDIO_ENCODERS

        if args.audio_encoder not in AUDIO_ENCODERS:
            raise UserError(
                f"unknown audio encoder {args.audio_encoder!r}; choose one of {', '.join(AUDIO_ENCODERS)}"
            )
        overrides[:0] = [
            f"model.audio_encoder={json.dumps(args.audio_encoder)}",
            "model.audio_overrides={}",
            f"audio_init={json.dumps(args.audio_encoder + '-audioset')}",
        ]
    if args.devices:
        overrides.append(f"devices={args.devices}")
    cfg = load_recipe(args.recipe, overrides)
    if args.dry_run:
        print(json.dumps(config_to_dict(cfg), indent=2))
        return 0
    from soundsearch.train import train

    out = Path(args.out or Path("runs") / cfg.name)
    done = train(
        cfg,
        _roots(args.data),
        out,
        resume=args.resume,
        progress=sys.stderr.isatty() and not args.quiet,
    )
    if done is not None:  # only the first process of a multi-GPU run reports
        best = out / "best.safetensors"
        print(f"done: {best if best.exists() else out}")
    return 0
