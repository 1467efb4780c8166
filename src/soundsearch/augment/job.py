"""The augmentation run: every ClothoV2 caption -> the model's rephrasings -> cache -> output file.

:func:`run_augment` is resumable: captions whose answer is in the cache (same prompt version) are
not asked again; failed ones only with ``retry_failed``. Captions are asked by ``concurrency``
workers sharing one :class:`ChatClient`. A caption whose answers stay unusable after
``attempts`` asks, or whose requests keep failing, is recorded as failed and the run goes on;
only an endpoint that refuses everything (key, model, URL) stops it. At the end the output file
(REFERENCE.md section 6 records) is written atomically from the cache.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from soundsearch.augment.cache import CacheWriter, read_cache
from soundsearch.augment.client import ChatClient, RequestFailed, RetryPolicy
from soundsearch.augment.prompt import (
    MAX_WORDS,
    PAPER_TEMPLATE,
    build_query,
    check_template,
    prompt_version,
    select_variations,
)
from soundsearch.data.clotho import read_clotho
from soundsearch.data.gpt import write_variations

log = logging.getLogger(__name__)

OPENAI_BASE_URL = "https://api.openai.com/v1"


@dataclass(frozen=True)
class AugmentConfig:
    """Everything that decides what is asked, of whom, and how hard to try."""

    base_url: str = OPENAI_BASE_URL  # any OpenAI-compatible server: ".../v1"
    model: str = "gpt-3.5-turbo"  # the paper used GPT-3.5-turbo
    api_key: str | None = field(default=None, repr=False)  # never printed or logged
    api_key_env: str = "OPENAI_API_KEY"  # only named in error messages
    temperature: float | None = 1.0  # None: leave it to the server
    max_tokens: int | None = 400  # bound on one answer (5 short sentences need ~150)
    n_variations: int = 5
    template: str = PAPER_TEMPLATE
    max_words: int = MAX_WORDS
    concurrency: int = 4  # requests in flight
    requests_per_minute: float | None = None  # None: no pacing beyond concurrency
    timeout_s: float = 60.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    attempts: int = 3  # asks per caption when the answer does not validate

    @property
    def version(self) -> str:
        return prompt_version(self.template, self.n_variations)


@dataclass(frozen=True)
class CaptionItem:
    """One caption to rephrase. ``idx`` = row * 5 + caption number (ClothoV2_GPT convention)."""

    idx: int
    caption: str
    keywords: tuple[str, ...]
    path: str
    file_name: str


@dataclass
class AugmentSummary:
    """What a run did and cost; ``failures`` maps idx -> why."""

    selected: int = 0  # captions in scope (after --limit)
    cached: int = 0  # answered in an earlier run, not asked again
    asked: int = 0  # captions asked in this run
    ok: int = 0
    failed: int = 0
    requests: int = 0  # HTTP requests, retries included
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    elapsed_s: float = 0.0
    written: int = 0  # records in the output file
    failures: dict[int, str] = field(default_factory=dict)

    def count(self, rec: dict[str, Any]) -> None:
        """Account for one finished caption (its cache record)."""
        self.asked += 1
        self.requests += rec["requests"]
        for key in ("prompt_tokens", "completion_tokens", "total_tokens"):
            setattr(self, key, getattr(self, key) + rec["usage"].get(key, 0))
        if rec["status"] == "ok":
            self.ok += 1
        else:
            self.failed += 1
            self.failures[rec["idx"]] = rec["error"]


def clotho_items(root: str | os.PathLike, split: str = "development") -> list[CaptionItem]:
    """Every caption of a ClothoV2 split with its keywords, ordered by idx. Audio is not needed."""
    items = []
    for row, rec in enumerate(read_clotho(root, split, on_missing="keep")):
        row = int(rec.meta.get("row", row))  # the CSV row, also when bad rows were skipped
        name = rec.meta.get("file_name") or Path(rec.path).name
        for k, caption in enumerate(rec.captions):
            items.append(CaptionItem(row * 5 + k, caption, rec.keywords, str(rec.path), name))
    items.sort(key=lambda it: it.idx)
    return items


def _record(item: CaptionItem, cfg: AugmentConfig, query: str, **fields: Any) -> dict[str, Any]:
    """One cache line; ``fields`` holds response, variations, usage, status, error, attempts."""
    base = {
        "version": cfg.version,
        "idx": item.idx,
        "caption": item.caption,
        "keywords": list(item.keywords),
        "query": query,
        "model": cfg.model,
        "temperature": cfg.temperature,
        "time": round(time.time(), 3),
    }
    return base | fields


async def _ask_one(client: ChatClient, item: CaptionItem, cfg: AugmentConfig) -> dict[str, Any]:
    """Ask until ``n`` valid variations come back (at most ``attempts`` answers) -> cache record.

    One caption's trouble ends in a "failed" record; only :class:`EndpointError` escapes.
    """
    query = build_query(item.caption, item.keywords, cfg.n_variations, cfg.template)
    state: dict[str, Any] = {"response": None, "variations": [], "usage": {}, "requests": 0}
    error = "not asked"
    for attempt in range(1, max(1, cfg.attempts) + 1):
        state["attempts"] = attempt
        try:
            reply = await client.complete(query)
        except RequestFailed as e:
            state["requests"] += e.requests
            error = str(e)
            break
        state["requests"] += reply.requests
        for k, v in reply.usage.items():
            state["usage"][k] = state["usage"].get(k, 0) + v
        kept, problems = select_variations(reply.text, cfg.n_variations, cfg.max_words)
        state["response"], state["variations"] = reply.text, kept
        if len(kept) == cfg.n_variations:
            return _record(item, cfg, query, **state, status="ok", error=None)
        error = f"{len(kept)} of {cfg.n_variations} usable variations in answer {attempt} of "
        error += f"{cfg.attempts}" + (f" ({'; '.join(problems[:3])})" if problems else "")
        log.debug("idx %d: %s", item.idx, error)
    return _record(item, cfg, query, **state, status="failed", error=error)


async def _ask_all(
    todo: list[CaptionItem], cfg: AugmentConfig, cache: CacheWriter, summary: AugmentSummary, bar
) -> None:
    """Workers take captions in idx order; a caption counts once its line is in the cache."""
    queue: asyncio.Queue[CaptionItem] = asyncio.Queue()
    for item in todo:
        queue.put_nowait(item)

    async def worker(client: ChatClient) -> None:
        while not queue.empty():
            item = queue.get_nowait()
            rec = await _ask_one(client, item, cfg)
            cache.append(rec)
            summary.count(rec)
            if rec["status"] != "ok":
                log.warning("idx %d failed: %s", item.idx, rec["error"])
            bar.update(1)
            bar.set_postfix(ok=summary.ok, failed=summary.failed, tokens=summary.total_tokens)

    client = ChatClient(
        cfg.base_url,
        cfg.model,
        api_key=cfg.api_key,
        temperature=cfg.temperature,
        max_tokens=cfg.max_tokens,
        timeout_s=cfg.timeout_s,
        requests_per_minute=cfg.requests_per_minute,
        policy=cfg.retry,
        api_key_env=cfg.api_key_env,
    )
    async with client:
        try:
            async with asyncio.TaskGroup() as tg:
                for _ in range(max(1, min(cfg.concurrency, len(todo)))):
                    tg.create_task(worker(client))
        except ExceptionGroup as group:  # e.g. the endpoint refuses everything: say why, once
            first = group.exceptions[0]
            while isinstance(first, ExceptionGroup):
                first = first.exceptions[0]
            raise first from None


def _usable_cached(
    items: list[CaptionItem], cached: dict[int, dict[str, Any]], retry_failed: bool
) -> set[int]:
    """idx of items whose cached answer stands (same caption; ok, or failed and not retried)."""
    done, changed = set(), 0
    for it in items:
        rec = cached.get(it.idx)
        if rec is None:
            continue
        if rec.get("caption") != it.caption:
            changed += 1
        elif rec.get("status") == "ok" or not retry_failed:
            done.add(it.idx)
    if changed:
        log.warning("%d cached answers belong to a different caption text; asking again", changed)
    return done


def output_records(
    items: list[CaptionItem], cached: dict[int, dict[str, Any]]
) -> list[dict[str, Any]]:
    """REFERENCE.md section 6 records for the items with a good cached answer, by idx."""
    out = []
    for it in items:
        rec = cached.get(it.idx)
        if not rec or rec.get("status") != "ok" or rec.get("caption") != it.caption:
            continue
        out.append(
            {
                "idx": it.idx,
                "path": it.path,
                "file_name": it.file_name,
                "caption": it.caption,
                "keywords": list(it.keywords),
                "query": rec["query"],
                "response": rec["response"],
                "variations": list(rec["variations"]),
                "model": rec.get("model"),
                "version": rec.get("version"),
            }
        )
    return out


def pending_items(
    items: list[CaptionItem],
    cfg: AugmentConfig,
    cache_path: str | os.PathLike,
    retry_failed: bool = False,
) -> list[CaptionItem]:
    """The items a run would ask for now (read-only look at the cache, e.g. for a dry run)."""
    cached = read_cache(cache_path, cfg.version)
    done = _usable_cached(items, cached, retry_failed)
    return [it for it in items if it.idx not in done]


def default_cache_path(out: str | os.PathLike) -> Path:
    """Where the answers of a run writing ``out`` are cached unless told otherwise."""
    return Path(f"{out}.cache.jsonl")


def run_augment(
    items: list[CaptionItem],
    out: str | os.PathLike,
    cfg: AugmentConfig,
    cache_path: str | os.PathLike | None = None,
    retry_failed: bool = False,
    progress: bool = True,
) -> AugmentSummary:
    """Ask for every item not answered yet, then write ``out`` from the cache; return the summary.

    Interrupting (Ctrl-C) keeps every finished answer in the cache; ``out`` is then not written.
    """
    check_template(cfg.template)
    cache_path = Path(cache_path) if cache_path else default_cache_path(out)
    t0 = time.monotonic()
    summary = AugmentSummary(selected=len(items))
    with CacheWriter(cache_path) as cache:
        cached = read_cache(cache_path, cfg.version)
        done = _usable_cached(items, cached, retry_failed)
        todo = [it for it in items if it.idx not in done]
        summary.cached = len(items) - len(todo)
        log.info(
            "%d captions: %d answered before (cache %s), %d to ask of %s at %s",
            *(len(items), summary.cached, cache_path, len(todo), cfg.model, cfg.base_url),
        )
        if todo:
            disable = None if progress else True  # None: tqdm shows it on terminals only
            with tqdm(total=len(todo), desc="augment", unit="caption", disable=disable) as bar:
                asyncio.run(_ask_all(todo, cfg, cache, summary, bar))
        cached = read_cache(cache_path, cfg.version)
    records = output_records(items, cached)
    write_variations(out, records)  # atomic: complete or absent
    summary.written = len(records)
    summary.elapsed_s = time.monotonic() - t0
    for it in items:  # failures of earlier runs that were not retried still count as missing
        rec = cached.get(it.idx)
        if rec and rec.get("status") == "failed" and it.idx not in summary.failures:
            summary.failures[it.idx] = f"(earlier run) {rec.get('error')}"
    return summary
