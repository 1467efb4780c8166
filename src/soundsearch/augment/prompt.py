"""The paraphrasing prompt and the reading of a chat model's answer.

The prompt is the instruction of the paper's Table 1 (Primus et al., DCASE 2023, inspired by
WavCaps), followed by the caption in single quotes and the clip's keywords in square brackets. The
answer should be a numbered list; models also answer with ``1)``, ``(1)``, bullets, an introduction,
a closing remark, everything on one line, or too many / too few items. :func:`parse_response` finds
the items in all those forms, :func:`clean_variation` tidies one, :func:`check_variation` says what
is wrong with one (``None`` when it is fine), and :func:`select_variations` keeps the first ``n``
good ones.
"""

from __future__ import annotations

import hashlib
import re
import string

from soundsearch.errors import UserError

# Paper, Table 1 (the ``{n}`` is 5 there). ASCII quotes: the paper's typesetting shows curly ones.
PAPER_TEMPLATE = (
    "I will give a description of an audio recording and tags associated with the audio "
    "recording. Generate {n} audio captions describing the sound event. Each audio caption "
    "should be one sentence with less than 20 words. Use grammatical subject-verb-object "
    "sentences. Do not include names of cities, countries, and persons. Do not include the "
    "time. Do not include recording device names. Do not write introductions or explanations. "
    'Do not use "heard" or "recorded". Start each output sentence with its index. '
    "'{caption}' [{keywords}]"
)
TEMPLATE_FIELDS = frozenset({"n", "caption", "keywords"})
MAX_WORDS = 20  # "one sentence with less than 20 words"

# An item marker: "1.", "1)", "1:", "(1)", "[1]", optionally bold ("**1.**") or after "Caption".
_MARKER = re.compile(
    r"(?:^|(?<=\s))(?:\*\*|__)?(?:(?:caption|sentence)\s*)?"
    r"(?:\((\d{1,2})\)|\[(\d{1,2})\]|(\d{1,2})[.):](?!\d))(?:\*\*|__)?(?=\s|$)",
    re.IGNORECASE,
)
_BULLET = re.compile(r"^\s*(?:[-*\u2022\u2013\u2014+])\s+(.+?)\s*$", re.MULTILINE)
_QUOTES = "\"'\u201c\u201d\u2018\u2019`"
_SENTENCE_BREAK = re.compile(r"[.!?][\"')\u201d\u2019]*\s+\S")


def check_template(template: str) -> str:
    """``template`` if it formats with known fields only and has ``{caption}``; else UserError."""
    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    except ValueError as e:
        raise UserError(f"prompt template: {e} (write literal braces as {{{{ and }}}})") from e
    unknown = fields - TEMPLATE_FIELDS
    if unknown or "caption" not in fields:
        raise UserError(
            f"prompt template: fields {sorted(unknown) or ''} unknown or {{caption}} missing; "
            f"allowed fields are {sorted(TEMPLATE_FIELDS)}"
        )
    return template


def prompt_version(template: str, n: int) -> str:
    """Identify a prompt: answers cached under another version are never reused.

    Covers what decides the question asked (the template text and the number of variations). The
    model and temperature are stored with every answer but are not part of the version, so a run
    that switches to a newer model snapshot keeps what was already paid for.
    """
    digest = hashlib.sha256(f"{template}\x00{n}".encode()).hexdigest()
    return f"p{n}-{digest[:12]}"


def build_query(caption: str, keywords: tuple[str, ...] | list[str], n: int, template: str) -> str:
    """The user message for one caption: instruction, ``'caption'``, ``[keyword, keyword]``."""
    kw = ", ".join(k.strip() for k in keywords if k.strip())
    return template.format(n=n, caption=caption.strip(), keywords=kw)


def _numbered_items(text: str) -> list[str]:
    """Items after markers numbered 1, 2, 3, ... in order (markers out of sequence are text)."""
    accepted: list[re.Match[str]] = []
    for m in _MARKER.finditer(text):
        number = int(next(g for g in m.groups() if g is not None))
        if number == len(accepted) + 1:
            accepted.append(m)
    items = []
    for i, m in enumerate(accepted):
        end = accepted[i + 1].start() if i + 1 < len(accepted) else len(text)
        body = text[m.end() : end].strip()
        items.append(body.split("\n", 1)[0])  # whatever follows on later lines is not the item
    return items


def parse_response(text: str | None) -> list[str]:
    """Split a model's answer into candidate captions (uncleaned; maybe more or fewer than asked).

    Numbered items win; otherwise bullet lines; otherwise every line that is not an introduction
    (ending in ``:``), and a single remaining paragraph is split into sentences.
    """
    if not text or not text.strip():
        return []
    items = _numbered_items(text)
    if items:
        return items
    bullets = _BULLET.findall(text)
    if bullets:
        return bullets
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().endswith(":")]
    if len(lines) == 1:
        return [s for s in re.split(r"(?<=[.!?])\s+", lines[0]) if s]
    return lines


def clean_variation(text: str) -> str:
    """Strip markdown emphasis, surrounding quotes and redundant whitespace from one item."""
    s = " ".join(text.split())
    s = s.replace("**", "").replace("__", "")
    for _ in range(2):  # e.g. '"A dog barks."' or "'A dog barks'."
        s = s.strip()
        if len(s) >= 2 and s[0] in _QUOTES and s[-1] in _QUOTES:
            s = s[1:-1]
        elif len(s) >= 3 and s[0] in _QUOTES and s[-2] in _QUOTES and s[-1] in ".!?":
            s = s[1:-2] + s[-1]
    return s.strip()


def check_variation(text: str, max_words: int = MAX_WORDS) -> str | None:
    """Why ``text`` is no usable caption (``None`` if it is): empty, too long, several sentences."""
    if not text or not any(c.isalpha() for c in text):
        return "empty"
    words = len(text.split())
    if words >= max_words:
        return f"{words} words (must be fewer than {max_words})"
    if _SENTENCE_BREAK.search(text.rstrip(".!?\"' ")):
        return "more than one sentence"
    return None


def _key(text: str) -> str:
    return "".join(c for c in text.lower() if c.isalnum() or c == " ").strip()


def select_variations(
    response: str | None, n: int, max_words: int = MAX_WORDS
) -> tuple[list[str], list[str]]:
    """(the first ``n`` valid distinct variations, the reasons the other items were dropped)."""
    kept: list[str] = []
    seen: set[str] = set()
    problems: list[str] = []
    for raw in parse_response(response):
        text = clean_variation(raw)
        reason = check_variation(text, max_words)
        if reason is None and _key(text) in seen:
            reason = "duplicate"
        if reason is not None:
            problems.append(f"{reason}: {text[:60]!r}")
            continue
        if len(kept) < n:
            kept.append(text)
            seen.add(_key(text))
    if not kept and not problems:
        problems.append("no list items found in the answer")
    return kept, problems
