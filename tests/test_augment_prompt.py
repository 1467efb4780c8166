"""Caption augmentation, offline parts: the paper's prompt, reading answers, Retry-After, pacing,
the JSONL cache. The HTTP side is tested against a real local server in test_augment.py."""

from __future__ import annotations

import asyncio
import email.utils
import itertools
import json
import logging
import time

import pytest

from soundsearch.augment import (
    PAPER_TEMPLATE,
    RateLimiter,
    RetryPolicy,
    build_query,
    check_template,
    check_variation,
    clean_variation,
    parse_response,
    parse_retry_after,
    prompt_version,
    read_cache,
    select_variations,
)
from soundsearch.augment.cache import CacheWriter
from soundsearch.errors import UserError

FIVE = [
    "A dog barks in the yard.",
    "A dog is barking loudly outside.",
    "Barking comes from a dog nearby.",
    "A canine barks twice in a row.",
    "The dog barks while cars pass.",
]

# Paper, Table 1: the instruction followed by the caption in quotes and the keywords in brackets.
TABLE1_QUERY = (
    "I will give a description of an audio recording and tags associated with the audio recording. "
    "Generate 5 audio captions describing the sound event. Each audio caption should be one "
    "sentence with less than 20 words. Use grammatical subject-verb-object sentences. Do not "
    "include names of cities, countries, and persons. Do not include the time. Do not include "
    'recording device names. Do not write introductions or explanations. Do not use "heard" or '
    '"recorded". Start each output sentence with its index. '
    "'A person is making noise by tapping their fingernails on a solid surface.' [dull, metal]"
)
TABLE1_RESPONSE = (
    "1. The sound of nails tapping on a metal surface is heard. 2. Fingernails are producing a "
    "dull sound when tapped. 3. A person is tapping their nails on a solid, metal surface. 4. The "
    "noise of someone tapping their fingernails is audible. 5. Nails are rhythmically tapping on a "
    "hard metal object."
)


def test_query_is_the_papers_table1_prompt():
    caption = "A person is making noise by tapping their fingernails on a solid surface."
    assert build_query(caption, ("dull", "metal"), 5, PAPER_TEMPLATE) == TABLE1_QUERY
    three = build_query("A dog barks.", (" dog ", "", "bark"), 3, PAPER_TEMPLATE)
    assert "Generate 3 audio captions" in three and three.endswith("'A dog barks.' [dog, bark]")


def test_table1_response_parses_into_its_five_captions():
    kept, problems = select_variations(TABLE1_RESPONSE, 5)
    assert problems == []
    assert kept[0] == "The sound of nails tapping on a metal surface is heard."
    assert kept[2] == "A person is tapping their nails on a solid, metal surface."
    assert kept[4] == "Nails are rhythmically tapping on a hard metal object."


def _numbered(fmt: str, items: list[str], sep: str = "\n") -> str:
    return sep.join(fmt.format(i=i, s=s) for i, s in enumerate(items, 1))


@pytest.mark.parametrize(
    "text",
    [
        _numbered("{i}. {s}", FIVE),
        _numbered("{i}) {s}", FIVE),
        _numbered("({i}) {s}", FIVE),
        _numbered("{i}: {s}", FIVE),
        _numbered("[{i}] {s}", FIVE),
        _numbered("**{i}.** {s}", FIVE),
        _numbered("{i}. {s}", FIVE, sep=" "),  # all on one line
        _numbered("  {i}.  {s}  ", FIVE, sep="\n\n"),  # indented, blank lines between
        _numbered('{i}. "{s}"', FIVE),  # quoted items
        _numbered("Caption {i}: {s}", FIVE),
        _numbered("- {s}", FIVE),
        _numbered("* {s}", FIVE),
        _numbered("\u2022 {s}", FIVE),
        "Sure! Here are five captions:\n\n" + _numbered("{i}. {s}", FIVE) + "\n\nHope this helps!",
        "\n".join(FIVE),  # a bare list of lines
        " ".join(FIVE),  # one paragraph of sentences
    ],
)
def test_list_forms_all_parse_to_the_same_five(text):
    kept, problems = select_variations(text, 5)
    assert kept == FIVE, problems


def test_more_items_than_asked_keeps_the_first_n():
    text = _numbered("{i}. {s}", FIVE + ["A sixth caption is here.", "A seventh one too."])
    kept, _ = select_variations(text, 5)
    assert kept == FIVE


def test_fewer_items_than_asked_are_reported_short():
    kept, _ = select_variations(_numbered("{i}. {s}", FIVE[:4]), 5)
    assert kept == FIVE[:4]


def test_numbers_inside_an_item_do_not_split_it():
    text = "1. A clock strikes 3. times loudly.\n2. A bell rings 2) times.\n3. Birds sing."
    assert parse_response(text) == [
        "A clock strikes 3. times loudly.",
        "A bell rings 2) times.",
        "Birds sing.",
    ]


def test_bad_items_are_dropped_with_reasons():
    long = "A very long caption " + "that keeps going " * 6 + "forever."
    text = _numbered(
        "{i}. {s}",
        [FIVE[0], long, "Two sentences here. Another one.", "a dog barks in the yard", "", FIVE[1]],
    )
    kept, problems = select_variations(text, 5)
    assert kept == [FIVE[0], FIVE[1]]
    joined = " | ".join(problems)
    assert "words (must be fewer than 20)" in joined
    assert "more than one sentence" in joined
    assert "duplicate" in joined  # same words as FIVE[0], other case and punctuation


def test_empty_or_listless_answers_give_nothing():
    assert select_variations("", 5) == ([], ["no list items found in the answer"])
    assert select_variations(None, 5)[0] == []
    assert select_variations("Here are the captions:", 5)[0] == []


def test_clean_and_check_single_items():
    assert clean_variation('  **"A dog   barks."**  ') == "A dog barks."
    assert clean_variation("\u201cA dog barks\u201d.") == "A dog barks."
    assert check_variation("A dog barks.") is None
    assert check_variation("A dog barks! Loudly.") == "more than one sentence"
    assert check_variation("word " * 19) is None
    assert check_variation("word " * 20) == "20 words (must be fewer than 20)"
    assert check_variation("...") == "empty"


def test_prompt_version_changes_with_template_and_n_only():
    v = prompt_version(PAPER_TEMPLATE, 5)
    assert v == prompt_version(PAPER_TEMPLATE, 5)
    assert v != prompt_version(PAPER_TEMPLATE, 4)
    assert v != prompt_version(PAPER_TEMPLATE.replace("Do not include the time. ", ""), 5)


def test_template_fields_are_checked():
    assert check_template("Rephrase {caption} {n} times, keywords {keywords}.")
    with pytest.raises(UserError, match="unknown or"):
        check_template("Rephrase {caption} as {style}")
    with pytest.raises(UserError, match=r"\{caption\} missing"):
        check_template("Rephrase {keywords}")
    with pytest.raises(UserError, match="literal braces"):
        check_template("Rephrase {caption} {")


def test_retry_after_seconds_and_http_date():
    assert parse_retry_after("1") == 1.0
    assert parse_retry_after(" 2.5 ") == 2.5
    assert parse_retry_after("-3") == 0.0
    now = time.time()
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert parse_retry_after(date, now=now) == pytest.approx(30, abs=1.01)
    assert parse_retry_after(email.utils.formatdate(now - 30, usegmt=True), now=now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_backoff_grows_exponentially_with_jitter_and_cap():
    policy = RetryPolicy(backoff_s=1.0, max_backoff_s=10.0)
    for retry, (lo, hi) in enumerate([(0.5, 1.0), (1.0, 2.0), (2.0, 4.0), (4.0, 8.0), (5, 10)]):
        samples = [policy.backoff(retry) for _ in range(50)]
        assert all(lo <= s <= hi for s in samples)
        assert max(samples) - min(samples) > 0  # jittered, not a fixed delay


def test_rate_limiter_spaces_request_starts():
    async def starts(limiter: RateLimiter, n: int) -> list[float]:
        out: list[float] = []

        async def one() -> None:
            await limiter.wait()
            out.append(time.monotonic())

        await asyncio.gather(*(one() for _ in range(n)))
        return sorted(out)

    t = asyncio.run(starts(RateLimiter(requests_per_minute=1200), 5))  # 50 ms apart
    gaps = [b - a for a, b in itertools.pairwise(t)]
    assert min(gaps) >= 0.045 and t[-1] - t[0] < 0.5

    async def deferred() -> float:
        limiter = RateLimiter()
        limiter.defer(0.2)
        t0 = time.monotonic()
        await limiter.wait()
        return time.monotonic() - t0

    assert asyncio.run(deferred()) >= 0.19


def _line(idx: int, version: str = "v1", status: str = "ok") -> str:
    return json.dumps({"version": version, "idx": idx, "caption": f"c{idx}", "status": status})


def test_cache_keeps_the_newest_line_of_the_version(tmp_path):
    path = tmp_path / "cache.jsonl"
    lines = [_line(0, status="failed"), _line(1), _line(2, "v0"), _line(0)]
    path.write_text("\n".join(lines) + "\n")
    got = read_cache(path, "v1")
    assert sorted(got) == [0, 1] and got[0]["status"] == "ok"
    assert read_cache(tmp_path / "absent.jsonl", "v1") == {}


def test_cache_cuts_a_partly_written_last_line(tmp_path, caplog):
    path = tmp_path / "cache.jsonl"
    path.write_text(_line(0) + "\n" + _line(1)[:25])
    with caplog.at_level(logging.WARNING, logger="soundsearch"), CacheWriter(path) as cache:
        cache.append({"version": "v1", "idx": 2, "caption": "c2", "status": "ok"})
    assert "partly written last line" in caplog.text
    assert sorted(read_cache(path, "v1")) == [0, 2]
    assert all(json.loads(ln) for ln in path.read_text().splitlines())


def test_cache_completes_a_whole_last_line_without_newline(tmp_path):
    path = tmp_path / "cache.jsonl"
    path.write_text(_line(0) + "\n" + _line(1))
    with CacheWriter(path) as cache:
        cache.append(json.loads(_line(2)))
    assert sorted(read_cache(path, "v1")) == [0, 1, 2]


def test_cache_skips_a_malformed_middle_line_with_a_warning(tmp_path, caplog):
    path = tmp_path / "cache.jsonl"
    path.write_text(_line(0) + "\nnot json\n" + _line(1) + "\n")
    with caplog.at_level(logging.WARNING, logger="soundsearch"):
        assert sorted(read_cache(path, "v1")) == [0, 1]
    assert "cache.jsonl:2: not a cache record" in caplog.text


def test_cache_is_locked_against_a_second_run(tmp_path):
    path = tmp_path / "cache.jsonl"
    locked = pytest.raises(UserError, match="in use by another augment run")
    with CacheWriter(path), locked, CacheWriter(path):
        pass
    with CacheWriter(path):  # released again
        pass
