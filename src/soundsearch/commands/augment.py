"""``soundsearch augment``: rephrase ClothoV2 captions with a chat model (ClothoV2_GPT)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from soundsearch.errors import UserError

DESCRIPTION = """\
Send every caption of a ClothoV2 split, with its keywords, to an OpenAI-compatible chat endpoint
(the paper's Table 1 prompt) and write five checked rephrasings per caption to OUT, the file the
fine-tuning stage reads. Answers are cached in OUT.cache.jsonl: an interrupted run resumes where it
stopped. The API key is read from the environment variable named by --api-key-env; local servers
(llama.cpp, vLLM, Ollama's /v1) need none."""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "augment",
        help="rephrase ClothoV2 captions with a chat model (ClothoV2_GPT)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _data_options(p.add_argument_group("data"))
    _endpoint_options(p.add_argument_group("model endpoint"))
    _prompt_options(p.add_argument_group("prompt and checks"))
    _pacing_options(p.add_argument_group("pacing and retries"))
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _data_options(data: argparse._ArgumentGroup) -> None:
    data.add_argument("--data", required=True, metavar="clotho:ROOT", help="ClothoV2 folder")
    data.add_argument("--split", default="development", help="ClothoV2 split (development)")
    data.add_argument("--out", required=True, type=Path, help="variations file to write (JSON)")
    data.add_argument("--cache", type=Path, help="answer cache (default: OUT.cache.jsonl)")
    data.add_argument("--limit", type=int, help="only the first N captions (to try things out)")


def _endpoint_options(model: argparse._ArgumentGroup) -> None:
    model.add_argument(
        "--base-url",
        default=None,
        help="OpenAI-compatible API root, e.g. "
        "http://127.0.0.1:8080/v1 (default: https://api.openai.com/v1)",
    )
    model.add_argument("--model", default="gpt-3.5-turbo", help="model name (gpt-3.5-turbo)")
    model.add_argument(
        "--api-key-env",
        default="OPENAI_API_KEY",
        metavar="NAME",
        help="environment variable holding the API key (OPENAI_API_KEY)",
    )
    model.add_argument(
        "--temperature",
        type=_temperature,
        default=1.0,
        help="sampling temperature (1.0); 'none': the server's default",
    )
    model.add_argument(
        "--max-tokens",
        type=int,
        default=400,
        help="longest answer (400 tokens); 0: do not send max_tokens",
    )


def _prompt_options(ask: argparse._ArgumentGroup) -> None:
    ask.add_argument("--variations", type=int, default=5, help="rephrasings per caption (5)")
    ask.add_argument("--prompt-file", type=Path, help="own template with {n} {caption} {keywords}")
    ask.add_argument(
        "--attempts", type=int, default=3, help="asks per caption while answers fail the checks (3)"
    )
    ask.add_argument("--retry-failed", action="store_true", help="ask again for failed captions")
    ask.add_argument("--dry-run", action="store_true", help="show what would be asked; ask nothing")


def _pacing_options(pace: argparse._ArgumentGroup) -> None:
    pace.add_argument("--concurrency", type=int, default=4, help="requests in flight (4)")
    pace.add_argument(
        "--rpm", type=float, default=0.0, help="at most this many requests per minute (0: no limit)"
    )
    pace.add_argument("--timeout", type=float, default=60.0, help="seconds per request (60)")
    pace.add_argument("--retries", type=int, default=5, help="retries of a failed request (5)")
    pace.add_argument(
        "--backoff",
        type=float,
        default=1.0,
        help="first retry delay in seconds; doubles each retry (1.0)",
    )


def _temperature(text: str) -> float | None:
    """A float, or none/default: leave temperature out of the request (some models reject it)."""
    if text.strip().lower() in ("none", "default"):
        return None
    return float(text)


def _clotho_root(spec: str) -> Path:
    kind, sep, rest = spec.partition(":")
    if sep and kind == "clotho":
        return Path(rest)
    if not sep or len(kind) == 1:  # a bare path (or a Windows drive letter)
        return Path(spec)
    raise UserError(
        f"--data {spec}: augmentation rephrases ClothoV2 captions (the paper's ClothoV2_GPT); "
        "give --data clotho:ROOT"
    )


def _config(args: argparse.Namespace):
    from soundsearch.augment import OPENAI_BASE_URL, AugmentConfig, RetryPolicy
    from soundsearch.augment.prompt import PAPER_TEMPLATE

    for name in ("variations", "attempts", "concurrency", "retries", "limit"):
        value = getattr(args, name)
        if value is not None and value < (0 if name == "retries" else 1):
            raise UserError(f"--{name.replace('_', '-')} must be positive (got {value})")
    base_url = args.base_url or OPENAI_BASE_URL
    api_key = os.environ.get(args.api_key_env) or None
    if api_key is None and base_url == OPENAI_BASE_URL and not args.dry_run:
        raise UserError(
            f"the environment variable {args.api_key_env} is not set: export your OpenAI API key"
            " there, name another variable with --api-key-env, or use --base-url for a local server"
        )
    template = PAPER_TEMPLATE
    if args.prompt_file:
        try:
            template = args.prompt_file.read_text(encoding="utf-8").strip()
        except OSError as e:
            raise UserError(f"--prompt-file {args.prompt_file}: {e.strerror}") from e
    return AugmentConfig(
        base_url=base_url,
        model=args.model,
        api_key=api_key,
        api_key_env=args.api_key_env,
        temperature=args.temperature,
        max_tokens=args.max_tokens or None,
        n_variations=args.variations,
        template=template,
        concurrency=args.concurrency,
        requests_per_minute=args.rpm or None,
        timeout_s=args.timeout,
        retry=RetryPolicy(retries=args.retries, backoff_s=args.backoff),
        attempts=args.attempts,
    )


def _print_summary(s, out: Path, cache: Path) -> None:
    print(
        f"augment: {s.selected} captions: {s.cached} answered before, {s.asked} asked "
        f"({s.ok} ok, {s.failed} failed, {s.requests} requests) in {s.elapsed_s:.1f} s"
    )
    print(
        f"tokens: {s.prompt_tokens} prompt + {s.completion_tokens} completion = "
        f"{s.total_tokens} total"
    )
    print(f"wrote {s.written} records to {out} (answers cached in {cache})")
    if s.failures:
        print(f"{len(s.failures)} captions without variations (rerun with --retry-failed):")
        for idx, why in list(s.failures.items())[:10]:
            print(f"  idx {idx}: {why}")
        if len(s.failures) > 10:
            print(f"  ... and {len(s.failures) - 10} more (see the cache file)")


def run(args: argparse.Namespace) -> int:
    from soundsearch.augment import (
        build_query,
        check_template,
        clotho_items,
        default_cache_path,
        pending_items,
        run_augment,
    )

    cfg = _config(args)
    check_template(cfg.template)
    items = clotho_items(_clotho_root(args.data), args.split)
    if args.limit:
        items = items[: args.limit]
    cache = args.cache or default_cache_path(args.out)
    if args.dry_run:
        todo = pending_items(items, cfg, cache, args.retry_failed)
        print(f"{len(items)} captions, {len(todo)} to ask of {cfg.model} at {cfg.base_url}")
        if todo:
            it = todo[0]
            print(f"first query (idx {it.idx}):")
            print(build_query(it.caption, it.keywords, cfg.n_variations, cfg.template))
        return 0
    summary = run_augment(items, args.out, cfg, cache, args.retry_failed, not args.no_progress)
    _print_summary(summary, args.out, cache)
    return 1 if summary.asked and not summary.ok else 0
